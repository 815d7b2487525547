"""Where generations come from: an OpenAI-compatible HTTP server or a local transformers model.

Both implement ``chat(messages, params) -> list[str]`` (``params.n`` texts); ``OpenAIBackend`` also
has ``complete(prompt, params)`` for raw ``/v1/completions`` prompts. ``OpenAIBackend`` is the one
HTTP client of every generation stage (Evol-Instruct, self-instruct, RRTF teacher responses). It uses
only the standard library (urllib); it retries connection errors, 5xx and 429 with exponential
back-off (honouring ``Retry-After``), and counts every attempt against a shared ``RequestBudget`` so
that a run never sends more requests than the user allowed — the run then stops cleanly and resumes
later.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Protocol

from codetron.errors import CodetronError
from codetron.sampling import SamplingParams
from codetron.templates import ALPACA_STOP, PROMPT_TEMPLATES


class BudgetExhausted(Exception):
    """The request budget is spent; the run stops and can be resumed."""

    def __init__(self, message: str, last_error: str | None = None):
        super().__init__(message if last_error is None else f"{message}; last error: {last_error}")
        self.last_error = last_error
        """The failure that the spent requests were retrying, if any (a server failing for good
        looks like a spent budget otherwise)."""


@dataclass(slots=True)
class Completion:
    """One choice of a reply."""

    text: str
    """Generated text."""
    finish_reason: str | None
    """"stop", "length" (cut at ``max_new_tokens``: a truncated answer) or None when the server sent none."""


class BackendError(Exception):
    """A request failed for good (retries used up, or a non-retryable error)."""


class RequestBudget:
    """A thread-safe count of requests sent, with an optional ceiling."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted(f"request budget of {self.limit} spent")
            self.used += 1

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.used >= self.limit


class Backend(Protocol):
    def chat(self, messages: list[dict], params: SamplingParams) -> list[str]: ...

    def describe(self) -> dict: ...


def chat_choices(backend: Backend, messages: list[dict], params: SamplingParams) -> list[Completion]:
    """``backend.chat_choices`` where the backend has it, else its ``chat`` texts (finish reason None)."""
    method = getattr(backend, "chat_choices", None)
    if method is not None:
        return method(messages, params)
    return [Completion(t, None) for t in backend.chat(messages, params)]


@dataclass(kw_only=True, slots=True)
class RetryPolicy:
    """Retries of one request."""

    max_retries: int = 6
    """Retries after the first attempt (connection errors, 5xx, 429)."""
    backoff: float = 1.0
    """First wait in seconds; doubled after every failed attempt."""
    backoff_max: float = 60.0
    """Longest single wait (also caps a server's Retry-After)."""
    timeout: float = 600.0
    """Seconds to wait for one response."""


@dataclass(kw_only=True, slots=True)
class BackendConfig:
    """Which backend a generation CLI talks to, beside its URL or model folder."""

    api: str = "chat"
    """"chat": ``/v1/chat/completions``; "completions": ``/v1/completions`` with the prompt rendered by
    ``prompt_template`` (for base models without a chat template)."""
    prompt_template: str = "wizardcoder"
    """Prompt format of ``api="completions"`` (``codetron.templates``): "wizardcoder" (the Alpaca
    prompt), "octocoder" or "plain"."""
    device: str = "auto"
    """Device of a model folder loaded in this process (``--local-model``): "cpu", "cuda" or "auto"."""


def add_request_args(group, stage_cfg: type) -> None:
    """The budget, retry and failure flags every generation CLI shares (``evolve``, ``selfalign``);
    the retry defaults are ``RetryPolicy``'s, ``--max-failures``'s the stage config's."""
    from codetron.cli_args import add_field

    group.add_argument("--max-requests", type=int, help="request budget of this invocation (retries count); the "
                                                        "run stops cleanly when it is spent and resumes later")
    for name in ("max_retries", "backoff", "backoff_max", "timeout"):
        add_field(group, RetryPolicy, name)
    add_field(group, stage_cfg, "max_failures")


def request_policy(args) -> tuple[RetryPolicy, RequestBudget]:
    """The retry policy and the request budget of ``add_request_args``' flags, checked."""
    if args.max_requests is not None and args.max_requests < 1:
        raise CodetronError(f"--max-requests must be >= 1, got {args.max_requests}")
    if args.max_retries < 0 or args.backoff < 0:
        raise CodetronError("--max-retries and --backoff must be >= 0")
    return (RetryPolicy(max_retries=args.max_retries, backoff=args.backoff, backoff_max=args.backoff_max,
                        timeout=args.timeout), RequestBudget(args.max_requests))


RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: overload, rate limits and server errors."""


class OpenAIBackend:
    """A client for ``/v1/chat/completions`` (``api="chat"``) or ``/v1/completions`` (``api="completions"``).

    With ``api="completions"``, ``chat`` renders the single user message with a ``codetron.templates``
    prompt template (``wizardcoder``: the Alpaca prompt), for base or WizardCoder-style models without
    a chat template. ``complete`` sends a prompt as is, whatever ``api`` says.

    ``base_url`` is the API root, normally ending in ``/v1``; a bare ``http://host:port`` gets ``/v1``
    added and a trailing ``/completions`` or ``/chat/completions`` is dropped, so an endpoint URL
    copied from a server's docs works too.
    """

    def __init__(self, base_url: str, model: str | None = None, *, api: str = "chat",
                 prompt_template: str = "wizardcoder", retry: RetryPolicy | None = None,
                 budget: RequestBudget | None = None, api_key: str | None = None):
        if api not in ("chat", "completions"):
            raise CodetronError(f"--api {api!r}: choose chat or completions")
        if prompt_template not in PROMPT_TEMPLATES:
            raise CodetronError(f"--prompt-template {prompt_template!r}: choose from {', '.join(PROMPT_TEMPLATES)}")
        self.base_url = api_root(base_url)
        self.api, self.prompt_template = api, prompt_template
        self.retry = retry or RetryPolicy()
        self.budget = budget or RequestBudget()
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.retries = 0
        """Retries made so far (all threads)."""
        self._lock = threading.Lock()
        self.model = model or self._discover_model()

    def describe(self) -> dict:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, "api": self.api}

    # -- protocol
    def chat(self, messages: list[dict], params: SamplingParams) -> list[str]:
        return [c.text for c in self.chat_choices(messages, params)]

    def chat_choices(self, messages: list[dict], params: SamplingParams) -> list[Completion]:
        """Like ``chat``, with each choice's ``finish_reason`` (to drop truncated answers)."""
        if self.api == "completions":
            prompt, extra_stop = self._render(messages)
            return self.complete_choices(prompt, replace(params, stop=tuple(params.stop) + tuple(
                s for s in extra_stop if s not in params.stop)))
        body = self._body(params)
        body["messages"] = messages
        return self._choices(self._request("POST", "/chat/completions", body), "/chat/completions")

    def complete(self, prompt: str, params: SamplingParams) -> list[str]:
        """``params.n`` continuations of ``prompt`` from ``/v1/completions`` (no template applied)."""
        return [c.text for c in self.complete_choices(prompt, params)]

    def complete_choices(self, prompt: str, params: SamplingParams) -> list[Completion]:
        body = self._body(params)
        body["prompt"] = prompt
        return self._choices(self._request("POST", "/completions", body), "/completions")

    def _body(self, params: SamplingParams) -> dict:
        body: dict = {"model": self.model, "temperature": params.temperature, "top_p": params.top_p,
                      "max_tokens": params.max_new_tokens, "n": params.n}  # the OpenAI name, at the boundary
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _texts(self, reply: dict, path: str) -> list[str]:
        return [c.text for c in self._choices(reply, path)]

    def _choices(self, reply: dict, path: str) -> list[Completion]:
        try:
            choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
            texts = [c["message"]["content"] if path == "/chat/completions" else c["text"] for c in choices]
            reasons = [c.get("finish_reason") for c in choices]
        except (KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.base_url}{path}: unexpected reply shape (missing {exc})") from None
        return [Completion(t or "", r) for t, r in zip(texts, reasons)]

    def _render(self, messages: list[dict]) -> tuple[str, list[str]]:
        users = [m["content"] for m in messages if m["role"] == "user"]
        prompt = PROMPT_TEMPLATES[self.prompt_template](users[-1])
        return prompt, ([ALPACA_STOP] if self.prompt_template == "wizardcoder" else [])

    def _discover_model(self) -> str:
        reply = self._request("GET", "/models", None)
        try:
            return reply["data"][0]["id"]
        except (KeyError, IndexError, TypeError):
            raise CodetronError(f"{self.base_url}/models: lists no model; pass --model") from None

    # -- transport
    def _request(self, method: str, path: str, body: dict | None) -> dict:
        """One logical request: attempts until success, a non-retryable error or the retries run out."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retry.max_retries + 1):
            if attempt:
                with self._lock:
                    self.retries += 1
            try:
                self.budget.take()
            except BudgetExhausted as exc:
                if last:  # the budget went on retries: say what they were retrying
                    raise BudgetExhausted(str(exc), last_error=last) from None
                raise
            wait: float | None = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except json.JSONDecodeError:
                    last = f"{url}: reply is not JSON: {raw[:80]!r}"
            except urllib.error.HTTPError as exc:
                detail = _error_message(exc)
                if exc.code not in RETRYABLE_STATUS:
                    raise BackendError(f"{url}: HTTP {exc.code}: {detail}") from None
                last = f"{url}: HTTP {exc.code}: {detail}"
                wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{url}: {type(reason).__name__}: {reason}"
            if attempt == self.retry.max_retries:
                break
            backoff = min(self.retry.backoff_max, self.retry.backoff * 2 ** attempt)
            # jitter spreads out the retries of many threads that failed together
            delay = wait if wait is not None else backoff * (0.5 + random.random() / 2)
            time.sleep(min(delay, self.retry.backoff_max))
        raise BackendError(f"{last} (gave up after {self.retry.max_retries + 1} attempts)")


def api_root(base_url: str) -> str:
    """The API root of an OpenAI-compatible server URL (see ``OpenAIBackend``)."""
    if not base_url.startswith(("http://", "https://")):
        raise CodetronError(f"--base-url {base_url!r}: must start with http:// or https://")
    root = base_url.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        root = root.removesuffix(suffix)
    if urllib.parse.urlsplit(root).path in ("", "/"):
        root = root.rstrip("/") + "/v1"
    return root


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read())
        return str(payload["error"]["message"] if isinstance(payload.get("error"), dict) else payload["error"])
    except Exception:
        return exc.reason or "error"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own back-off instead


class TransformersBackend:
    """A model folder loaded in this process (the same decoding as ``codetron serve``)."""

    def __init__(self, model_dir: str, device: str = "auto", dtype: str = "auto", chat_template: str = "auto",
                 budget: RequestBudget | None = None):
        from codetron.eval.serve import Engine

        self.model_dir = model_dir
        self.engine = Engine(model_dir, device, dtype, chat_template)
        self.budget = budget or RequestBudget()
        self.retries = 0

    def describe(self) -> dict:
        return {"backend": "transformers", "model": self.model_dir, "chat_template": self.engine.template_name}

    def chat(self, messages: list[dict], params: SamplingParams) -> list[str]:
        return [c.text for c in self.chat_choices(messages, params)]

    def chat_choices(self, messages: list[dict], params: SamplingParams) -> list[Completion]:
        from codetron.eval.serve import RequestError

        self.budget.take()
        prompt, implicit_stop = self.engine.chat_prompt(messages)
        sp = replace(params, stop=tuple(params.stop) + tuple(implicit_stop))
        try:
            return [Completion(c.text, c.finish_reason) for c in self.engine.generate(self.engine.encode(prompt), sp)]
        except RequestError as exc:
            raise BackendError(exc.message) from None
