"""The OpenAI wire format over HTTP: request validation (unsupported fields refused with a 400 naming
them), JSON and server-sent-event responses, and the threaded server with a deep listen backlog."""
from __future__ import annotations

import json
import queue
import re
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

from codetron.eval.serve.config import LISTEN_BACKLOG, MAX_BODY_BYTES, MAX_DRAIN_BYTES, RequestError, ServeConfig
from codetron.eval.serve.engine import Engine, Pending
from codetron.sampling import MAX_STOP, SamplingError, SamplingParams

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


HTTP_NAMES = {"max_new_tokens": "max_tokens"}
"""SamplingParams fields whose OpenAI request name differs (the API keeps the OpenAI names)."""


def parse_sampling(body: dict, cfg: ServeConfig, extra_stop: list[str] = ()) -> SamplingParams:
    """The OpenAI sampling fields as SamplingParams (``max_tokens`` / ``max_completion_tokens`` become
    ``max_new_tokens``), checked by its one validator and this server's limits; a RequestError names
    the bad request field."""
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > MAX_STOP:
        raise RequestError(f"'stop' must be a non-empty string or a list of up to {MAX_STOP} of them", "stop")
    # max_completion_tokens is the newer name (OpenAI deprecated max_tokens for chat)
    max_tokens = _given(body, "max_tokens", cfg.default_max_tokens)
    names = dict(HTTP_NAMES)
    if body.get("max_completion_tokens") is not None:
        names["max_new_tokens"] = "max_completion_tokens"  # errors name the field the client sent
        newer = body["max_completion_tokens"]
        if body.get("max_tokens") is not None and body["max_tokens"] != newer:
            raise RequestError(f"'max_completion_tokens' ({newer}) and 'max_tokens' ({max_tokens}) disagree; "
                               "send one", "max_completion_tokens")
        max_tokens = newer
    defaults = SamplingParams()  # the OpenAI API's own defaults: temperature 1, top_p 1, n 1
    params = SamplingParams(max_new_tokens=max_tokens, temperature=_given(body, "temperature", defaults.temperature),
                            top_p=_given(body, "top_p", defaults.top_p), n=_given(body, "n", defaults.n),
                            stop=tuple(stop), seed=body.get("seed"))
    try:
        params.validate(name=lambda field: repr(names.get(field, field)))
    except SamplingError as exc:
        raise RequestError(str(exc), names.get(exc.field, exc.field)) from None
    if params.max_new_tokens > cfg.max_tokens_limit:
        tokens = names["max_new_tokens"]
        raise RequestError(f"'{tokens}' must be at most {cfg.max_tokens_limit} on this server (--max-tokens-limit), "
                           f"got {params.max_new_tokens}", tokens)
    if params.n > cfg.max_n:
        raise RequestError(f"'n' must be at most {cfg.max_n} on this server (--max-n), got {params.n}", "n")
    # the chat template's own stops come after validation: they are not the client's to count
    return params.replace(temperature=float(params.temperature), top_p=float(params.top_p),
                          stop=params.stop + tuple(s for s in extra_stop if s not in stop))


def _given(body: dict, name: str, default):
    """``body[name]``, or ``default`` when it is absent or null (JSON null means "the default")."""
    value = body.get(name)
    return default if value is None else value


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
        if self.close_connection:
            self.send_header("Connection", "close")
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

    def body_length(self) -> int:
        """The request's Content-Length. A missing, negative, malformed or repeated-and-different one
        is a 411/400, and the connection closes: where the next request would start is unknown."""
        values = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None or not values:
            self.close_connection = True
            raise RequestError("Content-Length header required (chunked request bodies are not supported)",
                               status=411)
        if len({v.strip() for v in values}) != 1 or not re.fullmatch(r"[0-9]{1,19}", values[0].strip()):
            self.close_connection = True
            raise RequestError(f"bad Content-Length header {', '.join(values)!r}: expected one byte count >= 0")
        return int(values[0])

    def skip_body(self, length: int) -> None:
        """Read and discard a body up to ``MAX_DRAIN_BYTES``, so that the client gets the reply (and a
        keep-alive connection stays in sync); a longer one is left unread and the connection closes."""
        if length > MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        while length > 0:
            data = self.rfile.read(min(length, 1 << 20))
            if not data:  # the client gave up
                self.close_connection = True
                return
            length -= len(data)

    def too_large(self, length: int) -> RequestError:
        return RequestError(f"request body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit", status=413)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` (curl sends it for bodies over 1 MiB): refuse a body that would be
        refused before the client sends it, instead of inviting it."""
        if self.command == "POST":
            try:
                length = self.body_length()
                if length > MAX_BODY_BYTES:
                    self.close_connection = True  # the client may send the body anyway: do not parse it
                    raise self.too_large(length)
            except RequestError as exc:
                self.send_error_json(exc.status, exc.message, exc.kind, exc.param)
                return False
        return super().handle_expect_100()

    def read_json(self) -> dict:
        length = self.body_length()
        if length > MAX_BODY_BYTES:
            self.skip_body(length)
            raise self.too_large(length)
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
                self.skip_body(self.body_length())
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

    def _submit_all(self, prompts: list[list[int]], params: SamplingParams, on_delta=None) -> list[Pending]:
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
        ids = [engine.encode(p, params.max_new_tokens) for p in prompts]
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
        ids = engine.encode(text, params.max_new_tokens)
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
