"""``codetron serve``: a Hugging Face model folder behind an OpenAI-compatible HTTP API.

Endpoints (JSON in, JSON out, the OpenAI wire format that vLLM, TGI and llama.cpp also speak):

- ``GET  /v1/models``            the one served model
- ``POST /v1/completions``       ``prompt`` (string or list of strings) -> ``choices[].text``
- ``POST /v1/chat/completions``  ``messages`` -> ``choices[].message.content``
- ``GET  /health``               200 once the model is loaded

Request fields: ``temperature`` (0 = greedy), ``top_p``, ``max_tokens`` or ``max_completion_tokens``,
``stop`` (string or list; the stop sequence is cut from the text, as OpenAI does), ``n``, ``seed``,
``stream`` (server-sent events, ``data: {chunk}`` lines ending with ``data: [DONE]``; with
``stream_options: {"include_usage": true}`` a last chunk carries the usage) and ``user``. Every other
OpenAI field that would change the result (``logprobs``, ``presence_penalty``, ``response_format``,
``tools``, ...) is refused with a 400 naming it, unless it has its no-op value (``presence_penalty:
0``, ``logprobs: false``, ``response_format: {"type": "text"}``): a client is never silently given
something other than what it asked for. Errors come back as ``{"error": {"message", "type", "param",
"code"}}`` with a 4xx/5xx status.

Chat template: the tokenizer's own ``chat_template`` when it has one (``--chat-template auto``),
else the **alpaca** fallback below, which for a single user message is exactly WizardCoder's
training prompt (``codetron.templates.ALPACA_PROMPT_NO_INPUT``), so a model fine-tuned with
``codetron preprocess instruct --template wizardcoder`` is prompted the way it was trained:

    [system text, or the Alpaca preamble]\\n\\n
    ### Instruction:\\n{user}\\n\\n### Response:{assistant}\\n\\n     (repeated per turn)
    ### Instruction:\\n{last user}\\n\\n### Response:

With the fallback, ``"\\n### Instruction:"`` is an implicit stop sequence so a base model does not
write the next turn itself.

Batching: requests that are waiting when the model becomes free are decoded together, as one
left-padded batch of up to ``--max-batch`` rows sharing one KV cache (dynamic batching); a request
gets its answer as soon as its own rows finish, and finished rows leave the batch. Requests that
arrive while a batch decodes wait for the next one (no joining mid-batch: for that, and for
throughput on a GPU, serve the folder with vLLM: ``--engine vllm``, or ``auto`` when the ``vllm``
extra is installed, hands the whole server over to vLLM's OpenAI server with the same model name,
port and chat template).

Reproducibility: with ``seed`` set, choice ``i`` draws from its own ``torch.Generator`` seeded from
``(seed, i)``, so a request's tokens do not depend on the other requests' random draws. A request
decoded alone (``--max-batch 1``, or no other request waiting) is bit-for-bit repeatable; inside a
padded batch its logits can differ in the last float bits, which changes a sampled token only on a
near-tie (the same caveat as vLLM's batching).

Connections: the listen backlog (``LISTEN_BACKLOG``) and one thread per connection mean hundreds of
clients may connect at once; they queue for the model instead of being reset.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
import os
import queue
import secrets
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

from codetron.errors import CodetronError
from codetron.templates import ALPACA_PREAMBLE, ALPACA_STOP

MAX_BODY_BYTES = 8 << 20
"""Largest request body accepted (413 above)."""
LISTEN_BACKLOG = 1024
"""Pending TCP connections the kernel queues before accept(). The standard library's 5 made the
kernel reset most of 50 simultaneous connections on loopback; clients must wait, never be dropped."""


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
    max_batch: int = 32
    """Rows (choices of all batched requests) decoded together at most; 1 decodes one request at a time.
    A request with more choices than this still runs, alone."""
    engine: str = "auto"
    """"transformers" (this process), "vllm" (hand the server over to vLLM's OpenAI server), or "auto":
    vLLM when the ``vllm`` extra is installed and the device is not the CPU, else transformers."""


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


DeltaFn = Callable[[int, str, "str | None"], None]
"""Streaming callback: (choice index, new text, finish reason or None while the choice runs)."""


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


ALPACA_JINJA = (
    "{%- set ns = namespace(system=" + json.dumps(ALPACA_PREAMBLE) + ") -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- endfor -%}"
    "{{ ns.system }}{{ '\\n\\n' }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ '### Instruction:\\n' + m['content'] + '\\n\\n### Response:' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ m['content'] + '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)
"""``alpaca_chat_prompt`` as a Jinja chat template, for servers that only take templates (vLLM)."""


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` cut at the earliest stop sequence, and whether one was found."""
    cut = -1
    for s in stop:
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    return (text, False) if cut == -1 else (text[:cut], True)


class _Pending:
    """One request between submission and its last choice; completed by the batch worker."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, seeds: list[int], on_delta: DeltaFn | None):
        self.prompt_ids, self.params, self.seeds, self.on_delta = prompt_ids, params, seeds, on_delta
        self.choices: list[Choice | None] = [None] * len(seeds)
        self.left = len(seeds)
        self.error: BaseException | None = None
        self.event = threading.Event()

    def finish(self, index: int, choice: Choice) -> None:
        self.choices[index] = choice
        self.left -= 1
        if self.left == 0:
            self.event.set()

    def fail(self, exc: BaseException) -> None:
        if not self.event.is_set():
            self.error = exc
            self.event.set()

    def wait(self) -> list[Choice]:
        self.event.wait()
        if self.error is not None:
            raise self.error
        return list(self.choices)  # type: ignore[arg-type]


class _Row:
    """One choice being decoded inside a batch."""

    __slots__ = ("req", "index", "gen", "generated", "text", "sent", "hold")

    def __init__(self, req: _Pending, index: int, gen):
        self.req, self.index, self.gen = req, index, gen
        self.generated: list[int] = []
        self.text = ""
        self.sent = 0  # characters already streamed
        # a stop sequence may be split over tokens: hold back as much text as could be its start
        self.hold = max((len(s) for s in req.params.stop), default=1) - 1


class Engine:
    """A loaded model + tokenizer that turns prompts into choices; thread-safe.

    ``generate``/``submit`` from any number of threads: one worker thread decodes whatever is waiting
    as one batch of up to ``max_batch`` rows (see the module docstring)."""

    def __init__(self, model_dir: str, device: str = "auto", dtype: str = "auto", chat_template: str = "auto",
                 max_batch: int = 32):
        import inspect

        from codetron.eval.generate import load_model

        if max_batch < 1:
            raise CodetronError(f"--max-batch must be >= 1, got {max_batch}")
        self.model, self.tokenizer, self.device = load_model(model_dir, device, dtype)
        self.max_batch = max_batch
        cfg = self.model.config
        self.context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        tok = self.tokenizer
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else cfg.eos_token_id
        self.pad = next((t for t in (tok.pad_token_id, self.eos) if t is not None), 0)
        # transformers 5 renamed past_key_values to cache (4.x knows only the old name)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._template: str | None = None  # Jinja text, or None for the alpaca fallback
        if chat_template == "auto":
            self._template = getattr(tok, "chat_template", None) or None
        elif chat_template != "alpaca":
            path = Path(chat_template)
            if not path.is_file():
                raise CodetronError(f"--chat-template {chat_template}: not 'auto', 'alpaca' or a template file")
            self._template = path.read_text(encoding="utf-8")
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []
        """Rows of every batch decoded so far (for tests and benchmarks; capped at 10,000 entries)."""

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

    def submit(self, prompt_ids: list[int], params: SamplingParams, on_delta: DeltaFn | None = None) -> _Pending:
        """Queue one request (validated here, in the caller's thread); ``.wait()`` returns its choices.
        ``on_delta`` is called from the worker thread as text becomes final (streaming)."""
        return self.submit_many([(prompt_ids, params, on_delta)])[0]

    def submit_many(self, requests: list[tuple]) -> list[_Pending]:
        """Queue ``(prompt_ids, params[, on_delta])`` requests together: all are validated before any
        is queued, and they sit next to each other in the queue (so they share a batch if they fit)."""
        pendings = []
        for prompt_ids, params, *rest in requests:
            if not prompt_ids:
                raise RequestError("prompt is empty (no tokens)", "prompt")
            if self.context and len(prompt_ids) + params.max_tokens > self.context:
                raise RequestError(
                    f"this model's maximum context length is {self.context} tokens; the prompt has "
                    f"{len(prompt_ids)} and max_tokens is {params.max_tokens}", "max_tokens")
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            pendings.append(_Pending(prompt_ids, params, [choice_seed(seed, i) for i in range(params.n)],
                                     rest[0] if rest else None))
        with self._cond:
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="codetron-serve-batcher", daemon=True)
                self._worker.start()
            self._waiting.extend(pendings)
            self._cond.notify()
        return pendings

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> list[Choice]:
        """``params.n`` choices continuing ``prompt_ids`` (blocks; batched with concurrent callers)."""
        return self.submit(prompt_ids, params).wait()

    # -- the batch worker
    def _next_batch(self) -> list[_Pending]:
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            batch = [self._waiting.popleft()]
            rows = batch[0].params.n
            # first come, first served: stop at the first request that does not fit
            while self._waiting and rows + self._waiting[0].params.n <= self.max_batch:
                rows += self._waiting[0].params.n
                batch.append(self._waiting.popleft())
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._decode(batch)
            except BaseException as exc:  # an out-of-memory or a bug: fail these requests, keep serving
                for p in batch:
                    p.fail(exc)

    def _decode(self, batch: list[_Pending]) -> None:
        """Incremental decoding of every choice of ``batch`` with one KV cache, left-padded prompts."""
        import torch

        rows = [_Row(p, i, torch.Generator(device="cpu").manual_seed(s)) for p in batch for i, s in enumerate(p.seeds)]
        if len(self.batches) < 10_000:
            self.batches.append(len(rows))
        lens = [len(r.req.prompt_ids) for r in rows]
        width = max(lens)
        ids = torch.tensor([[self.pad] * (width - n) + r.req.prompt_ids for r, n in zip(rows, lens)], dtype=torch.long)
        extra: dict = {}
        if min(lens) != width:
            # padding on the left keeps every row's next token at the same (last) column
            mask = (torch.arange(width)[None, :] >= torch.tensor([width - n for n in lens])[:, None]).long()
            extra = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), use_cache=True,
                             **{k: v.to(self.device) for k, v in extra.items()})
            active = list(range(len(rows)))  # rows still decoding, as positions in the model's batch
            while True:
                logits = out.logits[:, -1, :]
                tokens = [self._sample(logits[j], rows[r].req.params, rows[r].gen) for j, r in enumerate(active)]
                keep = [j for j, (r, t) in enumerate(zip(active, tokens)) if not self._step(rows[r], t)]
                if not keep:
                    return
                cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                if len(keep) < len(active) and hasattr(cache, "batch_select_indices"):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    extra = {k: v[index.cpu()] for k, v in extra.items()}
                    active, tokens = [active[j] for j in keep], [tokens[j] for j in keep]
                if extra:
                    mask = extra["attention_mask"]
                    extra = {"attention_mask": torch.cat([mask, mask.new_ones(len(active), 1)], dim=1),
                             "position_ids": extra["position_ids"][:, -1:] + 1}
                nxt = torch.tensor(tokens, dtype=torch.long)[:, None]
                out = self.model(input_ids=nxt.to(self.device), use_cache=True, **{self._cache_kw: cache},
                                 **{k: v.to(self.device) for k, v in extra.items()})

    def _step(self, row: _Row, token: int) -> bool:
        """Add ``token`` to ``row``; True when the row is finished (its choice is then delivered).
        A finished row that stays in the batch (old caches cannot drop rows) gets here no more."""
        params = row.req.params
        if row.req.choices[row.index] is not None:
            return True
        reason = None
        if self.eos is not None and token == self.eos:
            reason = "stop"
        else:
            row.generated.append(token)
            row.text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
            if params.stop and truncate_at_stop(row.text, params.stop)[1]:
                reason = "stop"
            elif len(row.generated) >= params.max_tokens:
                reason = "length"
        text = truncate_at_stop(row.text, params.stop)[0]
        if row.req.on_delta is not None:
            # streamed text is final: never a possible stop-sequence start or half a UTF-8 character
            end = len(text) if reason else len(text.rstrip("\ufffd")) - row.hold
            if end > row.sent or reason:
                row.req.on_delta(row.index, text[row.sent:max(end, row.sent)], reason)
                row.sent = max(end, row.sent)
        if reason:
            row.req.finish(row.index, Choice(text, reason, len(row.generated)))
        return reason is not None

    @staticmethod
    def _sample(logits, params: SamplingParams, gen) -> int:
        """One token for one row; the row draws only from its own generator ``gen``."""
        import torch

        if params.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # drop a token once the mass before it reaches top_p (the most likely token always stays)
            drop = (sorted_p.cumsum(-1) - sorted_p) >= params.top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
        return int(torch.multinomial(probs, 1, generator=gen)[0])


# --------------------------------------------------------------------------------- request parsing

COMMON_FIELDS = frozenset({"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
                           "seed", "stream", "stream_options", "user"})
"""Request fields this server implements (plus ``prompt`` or ``messages``); ``user`` is only an id."""

NO_OP_VALUES: dict[str, tuple] = {
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logprobs": (None, False, 0),
    "top_logprobs": (None, 0), "echo": (None, False), "best_of": (None, 1), "logit_bias": (None, {}),
    "suffix": (None, ""), "response_format": (None, {"type": "text"}), "tools": (None, []),
    "tool_choice": (None, "none"), "functions": (None, []), "parallel_tool_calls": (None, False, True),
}
"""OpenAI fields this server does not implement, with the values that ask for nothing (accepted);
any other value is refused. Fields named nowhere (e.g. vLLM's ``top_k``) are refused too."""


def check_fields(body: dict, route_field: str) -> None:
    """400 naming the first field that asks for something this server would not do."""
    for name, value in body.items():
        if name in COMMON_FIELDS or name == route_field:
            continue
        if name in NO_OP_VALUES:
            if any(_same(value, ok) for ok in NO_OP_VALUES[name]):
                continue
            raise RequestError(f"'{name}' is not supported by codetron serve (only its default "
                               f"{NO_OP_VALUES[name][1]!r} is accepted); leave it out", name)
        raise RequestError(f"'{name}' is not a parameter codetron serve understands; leave it out", name)


def _same(value, ok) -> bool:
    """JSON equality that keeps true/false apart from 1/0 (``logprobs: 1`` asks for something)."""
    if ok is None or isinstance(ok, bool) or isinstance(value, bool):
        return value is ok
    return value == ok


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


def parse_stream(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage) from ``stream`` and ``stream_options``."""
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {stream!r}", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict) or set(options) - {"include_usage"} \
            or not isinstance(options.get("include_usage", False), bool):
        raise RequestError("'stream_options' must be {\"include_usage\": true|false}", "stream_options")
    if not stream:
        raise RequestError("'stream_options' is only allowed with stream=true", "stream_options")
    return stream, options.get("include_usage", False)


def parse_sampling(body: dict, cfg: ServeConfig, extra_stop: list[str] = ()) -> SamplingParams:
    """Validate the OpenAI sampling fields; raise RequestError naming the bad one."""
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
    # max_completion_tokens is the newer name (OpenAI deprecated max_tokens for chat)
    max_tokens = _number(body, "max_tokens", cfg.default_max_tokens, 1, cfg.max_tokens_limit, integer=True)
    if body.get("max_completion_tokens") is not None:
        newer = _number(body, "max_completion_tokens", None, 1, cfg.max_tokens_limit, integer=True)
        if body.get("max_tokens") is not None and body["max_tokens"] != newer:
            raise RequestError(f"'max_completion_tokens' ({newer}) and 'max_tokens' ({max_tokens}) disagree; "
                               "send one", "max_completion_tokens")
        max_tokens = newer
    return SamplingParams(
        max_tokens=max_tokens,
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

    def send_events(self, events: Iterator[dict]) -> None:
        """Server-sent events, one ``data:`` line per chunk, over chunked transfer (keeps the connection)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            for event in events:
                chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
        except Exception as exc:  # headers are gone: the error travels as an event, as vLLM does
            sys.stderr.write(f"codetron serve: error while streaming: {type(exc).__name__}: {exc}\n")
            chunk(b"data: " + json.dumps({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                                                    "param": None, "code": 500}}).encode() + b"\n\n")
        chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

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
            reply = route(body)
            if isinstance(reply, dict):
                self.send_json(200, reply)
            else:
                self.send_events(reply)
        except RequestError as exc:
            self.send_error_json(exc.status, exc.message, exc.kind, exc.param)
        except Exception as exc:  # a bug or an out-of-memory: report it, keep serving
            sys.stderr.write(f"codetron serve: error on {path}: {type(exc).__name__}: {exc}\n")
            self.send_error_json(500, f"{type(exc).__name__}: {exc}", "server_error")

    def _submit_all(self, prompts: list[list[int]], params: SamplingParams, on_delta=None) -> list[_Pending]:
        """Every prompt of a request as its own pending request, queued together so they share a batch."""
        def delta(k):
            return None if on_delta is None else (lambda i, d, r: on_delta(k * params.n + i, d, r))

        return self.server.engine.submit_many([(ids, params, delta(k)) for k, ids in enumerate(prompts)])

    def _stream(self, prompts: list[list[int]], params: SamplingParams, chunk: Callable[[int, str | None, str | None], dict],
                include_usage: bool, usage_chunk: Callable[[dict], dict]) -> Iterator[dict]:
        """Events of a streamed request: ``chunk(index, delta or None for the role event, reason)``."""
        events: queue.Queue = queue.Queue()
        total = len(prompts) * params.n
        for i in range(total):
            first = chunk(i, None, None)
            if first is not None:
                yield first
        pendings = self._submit_all(prompts, params, lambda i, d, r: events.put((i, d, r)))
        finished = 0
        while finished < total:
            try:
                i, delta, reason = events.get(timeout=0.5)
            except queue.Empty:
                for p in pendings:  # a failed batch never sends its last deltas
                    if p.error is not None:
                        raise p.error
                continue
            finished += reason is not None
            yield chunk(i, delta, reason)
        if include_usage:
            choices = [c for p in pendings for c in p.wait()]
            yield usage_chunk(_usage(sum(map(len, prompts)), sum(c.tokens for c in choices)))

    def completions(self, body: dict):
        check_fields(body, "prompt")
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError("'prompt' must be a string or a non-empty list of strings", "prompt")
        stream, include_usage = parse_stream(body)
        params = parse_sampling(body, self.server.config)
        engine = self.server.engine
        ids = [engine.encode(p) for p in prompts]
        head = {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
                "model": self.server.model_name}
        if stream:
            def chunk(i, delta, reason):
                if delta is None:
                    return None  # completions streams have no role event
                return dict(head, choices=[{"index": i, "text": delta, "logprobs": None, "finish_reason": reason}])

            return self._stream(ids, params, chunk, include_usage, lambda u: dict(head, choices=[], usage=u))
        choices = [c for p in self._submit_all(ids, params) for c in p.wait()]
        return dict(head, choices=[{"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
                                   for i, c in enumerate(choices)],
                    usage=_usage(sum(map(len, ids)), sum(c.tokens for c in choices)))

    def chat_completions(self, body: dict):
        check_fields(body, "messages")
        messages = parse_messages(body)
        stream, include_usage = parse_stream(body)
        engine = self.server.engine
        text, implicit_stop = engine.chat_prompt(messages)
        params = parse_sampling(body, self.server.config, implicit_stop)
        ids = engine.encode(text)
        head = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()),
                "model": self.server.model_name}
        if stream:
            def chunk(i, delta, reason):
                d = {"role": "assistant", "content": ""} if delta is None else ({"content": delta} if delta else {})
                return dict(head, object="chat.completion.chunk",
                            choices=[{"index": i, "delta": d, "logprobs": None, "finish_reason": reason}])

            return self._stream([ids], params, chunk, include_usage,
                                lambda u: dict(head, object="chat.completion.chunk", choices=[], usage=u))
        choices = engine.generate(ids, params)
        return dict(head, object="chat.completion",
                    choices=[{"index": i, "message": {"role": "assistant", "content": c.text},
                              "finish_reason": c.finish_reason} for i, c in enumerate(choices)],
                    usage=_usage(len(ids), sum(c.tokens for c in choices)))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class OpenAIServer(ThreadingHTTPServer):
    """A threading HTTP server holding one ``Engine``; ``serve_forever`` in a thread for tests."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, engine: Engine, config: ServeConfig, handler=OpenAIHandler, verbose: bool = False):
        self.engine, self.config, self.verbose = engine, config, verbose
        self.model_name = config.model_name or Path(config.model).resolve().name
        self.created = int(time.time())
        super().__init__((config.host, config.port), handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


# ------------------------------------------------------------------------------------ vLLM hand-off


def choose_engine(cfg: ServeConfig) -> tuple[str, str | None]:
    """("vllm" or "transformers", a one-line note to print or None)."""
    if cfg.engine not in ("auto", "vllm", "transformers"):
        raise CodetronError(f"--engine {cfg.engine!r}: choose auto, vllm or transformers")
    if cfg.engine == "transformers":
        return "transformers", None
    installed = importlib.util.find_spec("vllm") is not None
    if cfg.engine == "vllm":
        if not installed:
            raise CodetronError("--engine vllm: vllm is not installed here (pip install 'codetron[vllm]', "
                                "in its own environment: it pins its own torch)")
        return "vllm", None
    if not installed:
        return "transformers", ("codetron serve: vllm not installed; serving with the transformers engine "
                                "(dynamic batching; pip install 'codetron[vllm]' for GPU throughput)")
    if cfg.device == "cpu":
        return "transformers", "codetron serve: --device cpu: serving with the transformers engine, not vllm"
    return "vllm", None


def _tokenizer_has_template(model_dir: str) -> bool:
    folder = Path(model_dir)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False


def vllm_command(cfg: ServeConfig, template_dir: str) -> list[str]:
    """vLLM's OpenAI server with this server's settings: model name, address, dtype, limits and the
    same chat template (the alpaca fallback is written to ``template_dir`` as Jinja)."""
    port = cfg.port
    if port == 0:  # vLLM has no "any free port": pick one here and print it like the native server
        with socket.socket() as s:
            s.bind((cfg.host, 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model,
           "--served-model-name", cfg.model_name or Path(cfg.model).resolve().name, "--host", cfg.host,
           "--port", str(port), "--dtype", "auto" if cfg.dtype == "auto" else cfg.dtype,
           "--max-num-seqs", str(max(cfg.max_batch, cfg.max_n))]
    template = None
    if cfg.chat_template == "alpaca" or (cfg.chat_template == "auto" and not _tokenizer_has_template(cfg.model)):
        template = os.path.join(template_dir, "alpaca.jinja")
        Path(template).write_text(ALPACA_JINJA, encoding="utf-8")
    elif cfg.chat_template != "auto":
        template = str(Path(cfg.chat_template).resolve())
    if template:
        cmd += ["--chat-template", template]
    return cmd


def exec_vllm(cfg: ServeConfig) -> None:
    """Replace this process by vLLM's server (signals and exit status are then vLLM's own)."""
    template_dir = tempfile.mkdtemp(prefix="codetron-serve-")
    cmd = vllm_command(cfg, template_dir)
    env = dict(os.environ)
    if cfg.device.startswith("cuda:"):  # vLLM takes its GPU from the environment
        env["CUDA_VISIBLE_DEVICES"] = cfg.device.split(":", 1)[1]
    port = cmd[cmd.index("--port") + 1]
    print(f"codetron serve: handing over to vLLM; listening on http://{cfg.host}:{port}/v1", flush=True)
    os.execvpe(cmd[0], cmd, env)


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codetron serve",
        description="Serve a Hugging Face model folder (e.g. a `codetron convert` output) over the OpenAI "
                    "HTTP API: /v1/models, /v1/completions, /v1/chat/completions (streaming included).",
        epilog="example:\n  codetron serve out/hf-model --port 8000\n"
               "  curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
               "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Write a Python function that "
               "reverses a string.\"}], \"max_tokens\": 128, \"temperature\": 0}'\n"
               "Then point `codetron evolve --base-url http://127.0.0.1:8000/v1` at it.\n"
               "With the vllm extra installed (and a GPU), the same command runs vLLM's server instead.",
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
    p.add_argument("--max-batch", type=int, default=32,
                   help="rows decoded together at most (dynamic batching; 1 = one request at a time)")
    p.add_argument("--engine", default="auto", choices=("auto", "vllm", "transformers"),
                   help="auto (default): vLLM's server when the vllm extra is installed and the device is not "
                        "cpu, else this process with transformers")
    p.add_argument("--verbose", action="store_true", help="log one line per request")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise CodetronError(f"--port {args.port}: must be in 0..65535")
    if args.max_batch < 1:
        raise CodetronError(f"--max-batch must be >= 1, got {args.max_batch}")
    cfg = ServeConfig(model=args.model, model_name=args.model_name, host=args.host, port=args.port,
                      device=args.device, dtype=args.dtype, chat_template=args.chat_template,
                      max_tokens_limit=args.max_tokens_limit, max_n=args.max_n, max_batch=args.max_batch,
                      engine=args.engine)
    if not (Path(cfg.model) / "config.json").is_file():  # fail before the slow torch import
        raise CodetronError(f"{cfg.model}: not a Hugging Face model folder (no config.json)")
    kind, note = choose_engine(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    if kind == "vllm":
        exec_vllm(cfg)
    engine = Engine(cfg.model, cfg.device, cfg.dtype, cfg.chat_template, max_batch=cfg.max_batch)
    try:
        server = OpenAIServer(engine, cfg, verbose=args.verbose)
    except OSError as exc:
        raise CodetronError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
    # the URL line is machine-read by scripts (and tests) that start the server with --port 0
    print(f"codetron serve: {server.model_name} on {engine.device} (chat template: {engine.template_name}, "
          f"batches of up to {cfg.max_batch} rows), listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
