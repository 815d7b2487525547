"""``codetron serve``: a Hugging Face model folder behind an OpenAI-compatible HTTP API.

Endpoints (JSON in, JSON out, the OpenAI wire format that vLLM, TGI and llama.cpp also speak):

- ``GET  /v1/models``            the one served model
- ``POST /v1/completions``       ``prompt`` (string or list of strings) -> ``choices[].text``
- ``POST /v1/chat/completions``  ``messages`` -> ``choices[].message.content``
- ``GET  /health``               200 once the model is loaded

Sampling fields: ``temperature`` (0 = greedy), ``top_p``, ``max_tokens``, ``stop`` (string or list; the
stop sequence is cut from the text, as OpenAI does), ``n`` and ``seed``. Errors come back as
``{"error": {"message", "type", "param", "code"}}`` with a 4xx/5xx status; ``stream: true`` is refused.

Chat template: the tokenizer's own ``chat_template`` when it has one (``--chat-template auto``),
else the **alpaca** fallback below, which for a single user message is exactly WizardCoder's
training prompt (``codetron.templates.ALPACA_PROMPT_NO_INPUT``), so a model fine-tuned with
``codetron preprocess instruct --template wizardcoder`` is prompted the way it was trained:

    [system text, or the Alpaca preamble]\\n\\n
    ### Instruction:\\n{user}\\n\\n### Response:{assistant}\\n\\n     (repeated per turn)
    ### Instruction:\\n{last user}\\n\\n### Response:

With the fallback, ``"\\n### Instruction:"`` is an implicit stop sequence so a base model does not
write the next turn itself.

Reproducibility: with ``seed`` set, choice ``i`` draws from its own ``torch.Generator`` seeded from
``(seed, i)``, so a request returns the same text whatever other requests run. Requests are decoded
one at a time under a lock (this server is for tests, small evaluations and data generation on a
converted checkpoint; for throughput serve the same folder with vLLM).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from codetron.errors import CodetronError
from codetron.templates import ALPACA_PREAMBLE, ALPACA_STOP

MAX_BODY_BYTES = 8 << 20
"""Largest request body accepted (413 above)."""


@dataclass(kw_only=True, slots=True)
class ServeConfig:
    """What is served and how."""

    model: str
    """Hugging Face model folder (config.json, weights, tokenizer files)."""
    model_name: str | None = None
    """Name reported by /v1/models and required in requests' ``model`` field (default: folder name)."""
    host: str = "127.0.0.1"
    """Interface to bind. The default is loopback only; binding others exposes the model to the network."""
    port: int = 8000
    """TCP port (0 picks a free one and prints it)."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1" or "auto"."""
    dtype: str = "auto"
    """"float32", "bfloat16", "float16" or "auto" (bf16 on GPU, fp32 on CPU)."""
    chat_template: str = "auto"
    """"auto" (the tokenizer's template, else alpaca), "alpaca", or a path to a Jinja template file."""
    max_tokens_limit: int = 4096
    """Largest ``max_tokens`` a request may ask for."""
    max_n: int = 16
    """Largest ``n`` (choices per request)."""
    default_max_tokens: int = 256
    """``max_tokens`` when a request leaves it out."""


class RequestError(Exception):
    """A client mistake: becomes a 4xx JSON error."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.kind = message, param, status, kind


@dataclass(slots=True)
class SamplingParams:
    """Validated sampling fields of one request."""

    max_tokens: int = 256
    """Tokens generated at most per choice."""
    temperature: float = 1.0
    """0 = greedy."""
    top_p: float = 1.0
    """Nucleus mass kept (sampling only)."""
    n: int = 1
    """Choices returned."""
    stop: list[str] = field(default_factory=list)
    """Stop sequences (cut from the returned text)."""
    seed: int | None = None
    """Base seed; None draws a random one."""


@dataclass(slots=True)
class Choice:
    text: str
    """Generated text, cut at the first stop sequence."""
    finish_reason: str
    """"stop" (EOS or a stop sequence) or "length" (max_tokens reached)."""
    tokens: int
    """Tokens generated."""


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of a request seeded with ``seed`` (a stable hash)."""
    digest = hashlib.sha256(f"{seed}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def alpaca_chat_prompt(messages: list[dict]) -> str:
    """The documented fallback chat template (see the module docstring)."""
    system = ALPACA_PREAMBLE
    parts: list[str] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            system = content
        elif role == "user":
            parts.append(f"### Instruction:\n{content}\n\n### Response:")
        else:  # assistant
            parts.append(f"{content}\n\n")
    return system + "\n\n" + "".join(parts)


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` cut at the earliest stop sequence, and whether one was found."""
    cut = -1
    for s in stop:
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    return (text, False) if cut == -1 else (text[:cut], True)


class Engine:
    """A loaded model + tokenizer that turns prompts into choices (thread-safe, one request at a time)."""

    def __init__(self, model_dir: str, device: str = "auto", dtype: str = "auto", chat_template: str = "auto"):
        from codetron.eval.generate import load_model

        self.model, self.tokenizer, self.device = load_model(model_dir, device, dtype)
        cfg = self.model.config
        self.context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        tok = self.tokenizer
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else cfg.eos_token_id
        self._lock = threading.Lock()
        self._template: str | None = None  # Jinja text, or None for the alpaca fallback
        if chat_template == "auto":
            self._template = getattr(tok, "chat_template", None) or None
        elif chat_template != "alpaca":
            path = Path(chat_template)
            if not path.is_file():
                raise CodetronError(f"--chat-template {chat_template}: not 'auto', 'alpaca' or a template file")
            self._template = path.read_text(encoding="utf-8")

    @property
    def template_name(self) -> str:
        return "alpaca" if self._template is None else "jinja"

    def chat_prompt(self, messages: list[dict]) -> tuple[str, list[str]]:
        """(prompt text, implicit stop sequences) for a chat."""
        if self._template is None:
            return alpaca_chat_prompt(messages), [ALPACA_STOP]
        try:
            text = self.tokenizer.apply_chat_template(messages, chat_template=self._template, tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as exc:  # a Jinja error is the request's (or template's) fault, not a crash
            raise RequestError(f"chat template failed: {str(exc).splitlines()[0]}", "messages") from None
        return text, []

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> list[Choice]:
        """``params.n`` choices continuing ``prompt_ids``."""
        if not prompt_ids:
            raise RequestError("prompt is empty (no tokens)", "prompt")
        if self.context and len(prompt_ids) + params.max_tokens > self.context:
            raise RequestError(
                f"this model's maximum context length is {self.context} tokens; the prompt has "
                f"{len(prompt_ids)} and max_tokens is {params.max_tokens}", "max_tokens")
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        with self._lock:
            return self._decode(prompt_ids, params, [choice_seed(seed, i) for i in range(params.n)])

    def _decode(self, prompt_ids: list[int], params: SamplingParams, seeds: list[int]) -> list[Choice]:
        """Incremental decoding with a KV cache; all ``n`` rows share the (unpadded) prompt."""
        import torch

        n = len(seeds)
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        ids = torch.tensor([prompt_ids] * n, dtype=torch.long, device=self.device)
        generated: list[list[int]] = [[] for _ in range(n)]
        texts = [""] * n
        reason = ["length"] * n
        done = [False] * n
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True)
            for _ in range(params.max_tokens):
                nxt = self._sample(out.logits[:, -1, :], gens, params)  # (n,)
                for r in range(n):
                    if done[r]:
                        continue
                    token = int(nxt[r])
                    if self.eos is not None and token == self.eos:
                        done[r], reason[r] = True, "stop"
                        continue
                    generated[r].append(token)
                    texts[r] = self.tokenizer.decode(generated[r], skip_special_tokens=True)
                    if params.stop and truncate_at_stop(texts[r], params.stop)[1]:
                        done[r], reason[r] = True, "stop"
                if all(done):
                    break
                out = self.model(input_ids=nxt[:, None].to(self.device), past_key_values=out.past_key_values,
                                 use_cache=True)
        choices = []
        for r in range(n):
            text, _ = truncate_at_stop(texts[r], params.stop)
            choices.append(Choice(text, reason[r], len(generated[r])))
        return choices

    @staticmethod
    def _sample(logits, gens, params: SamplingParams):
        """One token per row; row r draws only from ``gens[r]`` (so choices do not depend on each other)."""
        import torch

        if params.temperature == 0:
            return logits.argmax(dim=-1).cpu()
        probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # drop a token once the mass before it reaches top_p (the most likely token always stays)
            drop = (sorted_p.cumsum(-1) - sorted_p) >= params.top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
        return torch.stack([torch.multinomial(probs[r], 1, generator=g)[0] for r, g in enumerate(gens)])


# --------------------------------------------------------------------------------- request parsing


def _number(body: dict, name: str, default, lo: float, hi: float, integer: bool = False):
    value = body.get(name, default)
    if value is None:
        value = default
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise RequestError(f"'{name}' must be {'an integer' if integer else 'a number'}, got {value!r}", name)
    if not lo <= value <= hi:
        raise RequestError(f"'{name}' must be in [{lo}, {hi}], got {value}", name)
    return value


def parse_sampling(body: dict, cfg: ServeConfig, extra_stop: list[str] = ()) -> SamplingParams:
    """Validate the OpenAI sampling fields; raise RequestError naming the bad one."""
    if body.get("stream"):
        raise RequestError("'stream' is not supported by codetron serve; send stream=false", "stream")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 16:
        raise RequestError("'stop' must be a non-empty string or a list of up to 16 of them", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", "seed")
    return SamplingParams(
        max_tokens=_number(body, "max_tokens", cfg.default_max_tokens, 1, cfg.max_tokens_limit, integer=True),
        temperature=float(_number(body, "temperature", 1.0, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", 1.0, 1e-9, 1.0)),
        n=_number(body, "n", 1, 1, cfg.max_n, integer=True),
        stop=list(stop) + [s for s in extra_stop if s not in stop],
        seed=seed,
    )


def parse_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}].role must be system, user or assistant", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # the "parts" form: keep text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string", f"messages[{i}].content")
        out.append({"role": m["role"], "content": content})
    if out[-1]["role"] != "user":
        raise RequestError("the last message must come from the user", "messages")
    return out


# ------------------------------------------------------------------------------------------ server


class OpenAIHandler(BaseHTTPRequestHandler):
    """Routes the OpenAI endpoints to ``self.server.engine``. Subclass it to inject faults in tests."""

    server_version = "codetron-serve/1"
    protocol_version = "HTTP/1.1"

    # -- plumbing
    def log_message(self, fmt, *args):  # one line per request, only with --verbose
        if getattr(self.server, "verbose", False):
            sys.stderr.write(f"codetron serve: {self.address_string()} {fmt % args}\n")

    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str, kind: str = "invalid_request_error",
                        param: str | None = None, headers: dict | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "param": param, "code": status}},
                       headers)

    def read_json(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError("Content-Length header required", status=411)
        try:
            length = int(length)
        except ValueError:
            raise RequestError("bad Content-Length header") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(f"request body over {MAX_BODY_BYTES} bytes", status=413)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError("request body must be a JSON object")
        return body

    # -- routes
    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{
                "id": self.server.model_name, "object": "model", "created": self.server.created,
                "owned_by": "codetron", "max_model_len": self.server.engine.context}]})
        elif path in ("/health", ""):
            self.send_json(200, {"status": "ok", "model": self.server.model_name})
        else:
            self.send_error_json(404, f"no route GET {path}", "not_found_error")

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        routes = {"/v1/completions": self.completions, "/v1/chat/completions": self.chat_completions}
        try:
            route = routes.get(path)
            if route is None:
                # drain the body so that a keep-alive connection stays in sync
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raise RequestError(f"no route POST {path}", status=404, kind="not_found_error")
            body = self.read_json()
            model = body.get("model")
            if model not in (None, "", self.server.model_name):
                raise RequestError(f"model {model!r} is not served here; this server has "
                                   f"{self.server.model_name!r}", "model", status=404, kind="not_found_error")
            self.send_json(200, route(body))
        except RequestError as exc:
            self.send_error_json(exc.status, exc.message, exc.kind, exc.param)
        except Exception as exc:  # a bug or an out-of-memory: report it, keep serving
            sys.stderr.write(f"codetron serve: error on {path}: {type(exc).__name__}: {exc}\n")
            self.send_error_json(500, f"{type(exc).__name__}: {exc}", "server_error")

    def completions(self, body: dict) -> dict:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError("'prompt' must be a string or a non-empty list of strings", "prompt")
        params = parse_sampling(body, self.server.config)
        engine = self.server.engine
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for p in prompts:
            ids = engine.encode(p)
            prompt_tokens += len(ids)
            for c in engine.generate(ids, params):
                choices.append({"index": len(choices), "text": c.text, "logprobs": None,
                                "finish_reason": c.finish_reason})
                completion_tokens += c.tokens
        return {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
                "model": self.server.model_name, "choices": choices,
                "usage": _usage(prompt_tokens, completion_tokens)}

    def chat_completions(self, body: dict) -> dict:
        messages = parse_messages(body)
        engine = self.server.engine
        text, implicit_stop = engine.chat_prompt(messages)
        params = parse_sampling(body, self.server.config, implicit_stop)
        ids = engine.encode(text)
        choices = engine.generate(ids, params)
        return {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion",
                "created": int(time.time()), "model": self.server.model_name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                             "finish_reason": c.finish_reason} for i, c in enumerate(choices)],
                "usage": _usage(len(ids), sum(c.tokens for c in choices))}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class OpenAIServer(ThreadingHTTPServer):
    """A threading HTTP server holding one ``Engine``; ``serve_forever`` in a thread for tests."""

    daemon_threads = True

    def __init__(self, engine: Engine, config: ServeConfig, handler=OpenAIHandler, verbose: bool = False):
        self.engine, self.config, self.verbose = engine, config, verbose
        self.model_name = config.model_name or Path(config.model).resolve().name
        self.created = int(time.time())
        super().__init__((config.host, config.port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codetron serve",
        description="Serve a Hugging Face model folder (e.g. a `codetron convert` output) over the OpenAI "
                    "HTTP API: /v1/models, /v1/completions, /v1/chat/completions.",
        epilog="example:\n  codetron serve out/hf-model --port 8000\n"
               "  curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
               "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Write a Python function that "
               "reverses a string.\"}], \"max_tokens\": 128, \"temperature\": 0}'\n"
               "Then point `codetron evolve --base-url http://127.0.0.1:8000/v1` at it.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="Hugging Face model folder (config.json, weights, tokenizer)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default 8000)")
    p.add_argument("--model-name", help="name in /v1/models and the requests' `model` field (default: folder name)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (default)")
    p.add_argument("--chat-template", default="auto",
                   help="auto (tokenizer's, else alpaca), alpaca (WizardCoder prompt), or a Jinja file")
    p.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask for")
    p.add_argument("--max-n", type=int, default=16, help="largest n a request may ask for")
    p.add_argument("--verbose", action="store_true", help="log one line per request")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise CodetronError(f"--port {args.port}: must be in 0..65535")
    cfg = ServeConfig(model=args.model, model_name=args.model_name, host=args.host, port=args.port,
                      device=args.device, dtype=args.dtype, chat_template=args.chat_template,
                      max_tokens_limit=args.max_tokens_limit, max_n=args.max_n)
    if not (Path(cfg.model) / "config.json").is_file():  # fail before the slow torch import
        raise CodetronError(f"{cfg.model}: not a Hugging Face model folder (no config.json)")
    engine = Engine(cfg.model, cfg.device, cfg.dtype, cfg.chat_template)
    try:
        server = OpenAIServer(engine, cfg, verbose=args.verbose)
    except OSError as exc:
        raise CodetronError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
    # the URL line is machine-read by scripts (and tests) that start the server with --port 0
    print(f"codetron serve: {server.model_name} on {engine.device} (chat template: {engine.template_name}), "
          f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
