"""The one HTTP client of the generation stages (``codetron.preprocess.generate.backends``), as Evol-Instruct
and RRTF's teacher use it: URL forms, raw completions, retries and one-line errors on loopback servers."""
from __future__ import annotations

import pytest

from codetron.errors import CodetronError
from codetron.templates import ALPACA_STOP, wizardcoder_prompt
from codetron.sampling import SamplingParams
from codetron.preprocess.generate.backends import OpenAIBackend, RequestBudget, RetryPolicy
from codetron.preprocess.generate.rrtf.teacher import TeacherEndpoint

FAST = RetryPolicy(max_retries=4, backoff=0.01, backoff_max=0.05, timeout=60)
MSG = [{"role": "user", "content": "Write a function that adds two numbers."}]
PARAMS = SamplingParams(temperature=0.7, max_new_tokens=6, seed=11)
PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'


def test_server_root_and_endpoint_urls_reach_the_same_api(server):
    root = server.url.removesuffix("/v1")
    reference = OpenAIBackend(server.url, "tiny", retry=FAST).chat(MSG, PARAMS)
    for url in (root, root + "/", server.url + "/", server.url + "/chat/completions", server.url + "/completions"):
        backend = OpenAIBackend(url, "tiny", retry=FAST)
        assert backend.base_url == server.url
        assert backend.chat(MSG, PARAMS) == reference


def test_complete_sends_the_prompt_verbatim(server, engine):
    rendered = wizardcoder_prompt(MSG[0]["content"])
    params = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=6, seed=11, stop=[ALPACA_STOP], n=2)
    backend = OpenAIBackend(server.url, "tiny", retry=FAST, api="completions")
    texts = backend.complete(rendered, params)
    direct = engine.generate(engine.encode(rendered), SamplingParams(max_new_tokens=6, temperature=0.7, top_p=0.95, n=2,
                                                                     stop=[ALPACA_STOP], seed=11))
    assert texts == [c.text for c in direct] and texts[0] != texts[1]
    # chat() on the completions API is the template applied, then complete()
    assert backend.chat(MSG, SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=6, seed=11, n=2)) == texts


def test_rrtf_teacher_recovers_through_the_shared_client(server, start_server):
    clean = TeacherEndpoint(server.url, "tiny", max_new_tokens=8, retry=FAST).complete(PROMPT, ("\ndef",))
    assert clean  # the tiny random model writes something
    flaky = start_server(faults=["500", "drop", "429"])
    teacher = TeacherEndpoint(flaky.url, "tiny", max_new_tokens=8, retry=FAST, budget=RequestBudget(10))
    assert teacher.complete(PROMPT, ("\ndef",)) == clean  # greedy: same text after recovering
    assert (teacher.client.retries, teacher.client.budget.used, flaky.posts) == (3, 4, 4)


def test_rrtf_teacher_failures_are_one_line_errors(server, start_server):
    with pytest.raises(CodetronError, match=r"^teacher request failed: .*HTTP 404: model 'gpt-4' is not served here"):
        TeacherEndpoint(server.url, "gpt-4", retry=FAST).complete(PROMPT, ())
    flaky = start_server(faults=["500"] * 3)
    with pytest.raises(CodetronError, match=r"HTTP 500: injected failure \(gave up after 2 attempts\)"):
        TeacherEndpoint(flaky.url, "tiny", retry=RetryPolicy(max_retries=1, backoff=0.01)).complete(PROMPT, ())
    assert flaky.posts == 2
    with pytest.raises(CodetronError, match="teacher request failed: request budget of 1 spent"):
        TeacherEndpoint(flaky.url, "tiny", retry=FAST, budget=RequestBudget(1)).complete(PROMPT, ())
