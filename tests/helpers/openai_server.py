"""The tests' OpenAI-compatible endpoints on loopback, with one way of counting and failing requests.

- ``scripted_server(reply)``: answers ``/v1/completions`` and ``/v1/chat/completions`` from a Python
  function, no model behind it (selfalign's scripted pipeline, the RRTF teacher endpoint, the prompts
  the end-to-end test records);
- ``engine_server(engine, model_dir, name)``: codetron's own ``serve`` (``OpenAIServer``) holding a
  tiny model, for clients tested against the real server (evolve, selfalign against serve).

Both count every POST in ``server.posts`` and answer the first ones with the faults listed in
``faults`` ("500", "503", "429" with Retry-After 0, or "drop": the connection closed without a reply),
counted in ``server.injected``; ``server.url`` is the ``.../v1`` base URL clients take.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = {
    "500": (500, "injected failure", "server_error", None),
    "503": (503, "injected overload", "server_error", None),
    "429": (429, "slow down", "rate_limit_error", {"Retry-After": "0"}),
}
"""Fault name -> the error reply (status, message, OpenAI error type, extra headers); "drop" sends none."""


@contextlib.contextmanager
def serving(server):
    """``server.serve_forever`` in a daemon thread for the duration of the block; then shut down and
    closed, so no test leaves a listening socket behind."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def arm(server, faults=()):
    """Give ``server`` the counters and the fault list the ``Faults`` handlers use."""
    server.posts, server.injected, server.faults, server.count_lock = 0, 0, list(faults), threading.Lock()
    return server


class Faults:
    """Handler mixin: counts every POST and answers it with the next listed fault, if any, instead of
    handling it."""

    def do_POST(self):
        srv = self.server
        with srv.count_lock:
            srv.posts += 1
            fault = srv.faults.pop(0) if srv.faults else None
            srv.injected += fault is not None
        if fault is None:
            return super().do_POST()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fault == "drop":
            self.close_connection = True
            return
        status, message, kind, headers = FAULTS[fault]
        self.send_error_json(status, message, kind, headers=headers)


# --- a scripted server ------------------------------------------------------------------------------

class _Scripted(BaseHTTPRequestHandler):
    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def send_error_json(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": status}}, headers)

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": self.server.model_id}]})

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(srv.delay)
        chat = self.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        texts = srv.reply(prompt, body)
        with srv.count_lock:
            srv.bodies.append(body)
        texts = texts if isinstance(texts, list) else [texts] * body.get("n", 1)
        # a (text, reason) pair scripts a finish reason other than "stop" (a cut answer)
        texts = [t if isinstance(t, tuple) else (t, "stop") for t in texts]
        choices = [({"message": {"role": "assistant", "content": t}} if chat else {"text": t})
                   | {"index": i, "finish_reason": reason} for i, (t, reason) in enumerate(texts)]
        self.send_json(200, {"choices": choices})

    def log_message(self, *args):
        pass


class ScriptedHandler(Faults, _Scripted):
    """Faults first, then the scripted reply."""


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


@contextlib.contextmanager
def scripted_server(reply, *, faults=(), delay: float = 0.0, model_id: str = "scripted"):
    """A running scripted server. ``reply(prompt, body)`` gives one text (sent ``n`` times), or a list
    with one text or ``(text, finish_reason)`` pair per choice; the prompt is the last chat message's
    content for chat requests. ``server.bodies`` records each answered request body; ``delay`` seconds
    pass before each reply."""
    srv = arm(ScriptedServer(("127.0.0.1", 0), ScriptedHandler), faults)
    srv.reply, srv.delay, srv.model_id, srv.bodies = reply, delay, model_id, []
    with serving(srv):
        yield srv


# --- codetron serve ---------------------------------------------------------------------------------

def engine_server(engine, model_dir, model_name: str, faults=()):
    """codetron's ``OpenAIServer`` around ``engine`` (a ``codetron.eval.serve.Engine`` of ``model_dir``) on
    a free loopback port, counting POSTs and failing the first ones as ``faults`` lists; run it with
    ``serving``."""
    from codetron.eval.serve import OpenAIHandler, OpenAIServer, ServeConfig

    class EngineHandler(Faults, OpenAIHandler):
        """Faults first, then codetron serve's own handling."""

    cfg = ServeConfig(model=str(model_dir), model_name=model_name, host="127.0.0.1", port=0)
    return arm(OpenAIServer(engine, cfg, handler=EngineHandler), faults)
