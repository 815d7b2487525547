"""The HTTP client against real servers on loopback: retries, back-off, give-up, budget, errors."""
from __future__ import annotations

import socket

import pytest

from codetron.sampling import SamplingParams
from codetron.preprocess.generate.backends import (BackendError, BudgetExhausted, OpenAIBackend, RequestBudget,
                                          RetryPolicy, TransformersBackend)

FAST = RetryPolicy(max_retries=4, backoff=0.01, backoff_max=0.05, timeout=60)
MSG = [{"role": "user", "content": "Write a function that adds two numbers."}]
PARAMS = SamplingParams(temperature=0.7, max_new_tokens=6, seed=11)


def test_recovers_from_500_drop_and_429(start_server):
    clean = start_server()
    reference = OpenAIBackend(clean.url, "tiny", retry=FAST).chat(MSG, PARAMS)
    flaky = start_server(faults=["500", "drop", "429"])
    backend = OpenAIBackend(flaky.url, "tiny", retry=FAST)
    assert backend.chat(MSG, PARAMS) == reference  # same seed: same text after recovering
    assert (backend.retries, backend.budget.used) == (3, 4)
    assert (flaky.injected, flaky.posts) == (3, 4)


def test_gives_up_after_max_retries(start_server):
    flaky = start_server(faults=["500"] * 5)
    backend = OpenAIBackend(flaky.url, "tiny", retry=RetryPolicy(max_retries=2, backoff=0.01))
    with pytest.raises(BackendError, match=r"HTTP 500: injected failure \(gave up after 3 attempts\)"):
        backend.chat(MSG, PARAMS)
    assert flaky.posts == 3


def test_client_errors_are_not_retried(server):
    backend = OpenAIBackend(server.url, "tiny", retry=FAST)
    before = server.posts
    with pytest.raises(BackendError, match="HTTP 400: 'temperature' must be in"):
        backend.chat(MSG, SamplingParams(temperature=5.0, max_new_tokens=4))
    with pytest.raises(BackendError, match="HTTP 404: model 'gpt-4' is not served here"):
        OpenAIBackend(server.url, "gpt-4", retry=FAST).chat(MSG, PARAMS)
    assert server.posts - before == 2 and backend.retries == 0


def test_budget_counts_every_attempt(start_server):
    flaky = start_server(faults=["500"] * 3)
    backend = OpenAIBackend(flaky.url, "tiny", retry=FAST, budget=RequestBudget(2))
    with pytest.raises(BudgetExhausted):
        backend.chat(MSG, PARAMS)
    assert flaky.posts == 2 and backend.budget.exhausted


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "tiny", retry=RetryPolicy(max_retries=1, backoff=0.01))
    with pytest.raises(BackendError, match="Connection.*gave up after 2 attempts"):
        backend.chat(MSG, PARAMS)
    assert backend.budget.used == 2


def test_model_discovery_and_completions_api(server):
    backend = OpenAIBackend(server.url, retry=FAST, api="completions")
    assert backend.model == "tiny"
    chat = OpenAIBackend(server.url, "tiny", retry=FAST).chat(MSG, PARAMS)
    # /v1/completions with the wizardcoder prompt template == /v1/chat/completions with the alpaca fallback
    assert backend.chat(MSG, PARAMS) == chat


def test_local_transformers_backend_matches_http(server, tiny_model_dir):
    local = TransformersBackend(str(tiny_model_dir), device="cpu")
    http = OpenAIBackend(server.url, "tiny", retry=FAST)
    p = SamplingParams(temperature=0.9, max_new_tokens=8, seed=5, n=2)
    assert local.chat(MSG, p) == http.chat(MSG, p)
    assert local.budget.used == 1


def test_bad_base_url():
    from codetron.errors import CodetronError

    with pytest.raises(CodetronError, match="must start with http"):
        OpenAIBackend("localhost:8000/v1", "m")
