"""Teacher responses: from jsonl files, or from an OpenAI-compatible completions endpoint.

Files: one JSON object per line with ``task_id`` and ``response`` (``completion`` or ``output`` are
accepted too); a task may have several lines (several teacher responses, the best one is used).

Endpoint: ``POST {base}/v1/completions`` with ``{"model", "prompt", "max_tokens", "temperature": 0,
"stop"}`` -- what vLLM, TGI, llama.cpp and OpenAI's legacy completions API accept -- through the
generation stages' one HTTP client (``codetron.preprocess.generate.backends.OpenAIBackend``: retries with
back-off, request budget). The API key, if any, is read from an environment variable (never from
the command line).
"""
from __future__ import annotations

import os

from codetron.errors import CodetronError
from codetron.records import read_jsonl
from codetron.sampling import SamplingParams
from codetron.preprocess.generate.backends import BackendError, BudgetExhausted, OpenAIBackend, RequestBudget, RetryPolicy

RESPONSE_KEYS = ("response", "completion", "output")


def read_teacher_files(paths: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in paths:
        for lineno, rec in read_jsonl(path, what="teacher"):
            where = f"{path}:{lineno}"
            if not isinstance(rec.get("task_id"), str):
                raise CodetronError(f"{where}: expected an object with a string 'task_id'")
            key = next((k for k in RESPONSE_KEYS if k in rec), None)
            if key is None or not isinstance(rec[key], str):
                raise CodetronError(f"{where}: needs a string field 'response' (or 'completion' / 'output')")
            out.setdefault(rec["task_id"], []).append(rec[key])
    return out


class TeacherEndpoint:
    """Greedy teacher responses from an OpenAI-compatible ``/v1/completions`` endpoint."""

    MAX_STOPS = 4
    """OpenAI's completions API refuses more stop sequences; responses are cut at all of them later."""

    def __init__(self, base_url: str, model: str, max_new_tokens: int = 512, api_key_env: str | None = "OPENAI_API_KEY",
                 retry: RetryPolicy | None = None, budget: RequestBudget | None = None):
        """``retry`` defaults to 3 attempts of at most 120 s each; ``budget`` to no limit."""
        self.max_new_tokens = max_new_tokens
        self.client = OpenAIBackend(base_url, model, api="completions", budget=budget,
                                    retry=retry or RetryPolicy(max_retries=2, backoff=1.0, backoff_max=10.0, timeout=120.0),
                                    # "" (not None): no key at all when the named variable is unset
                                    api_key=os.environ.get(api_key_env, "") if api_key_env else "")

    def complete(self, prompt: str, stop: tuple[str, ...] | list[str]) -> str:
        params = SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens, stop=tuple(stop)[:self.MAX_STOPS])
        try:
            return self.client.complete(prompt, params)[0]
        except (BackendError, BudgetExhausted) as exc:
            raise CodetronError(f"teacher request failed: {exc}") from None
        except IndexError:
            raise CodetronError(f"{self.client.base_url}/completions: reply has no choices") from None
