"""Fixtures: a tiny random GPTBigCode model with a tokenizer trained here, served on loopback."""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from tests.conftest import serving

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def reverse(s):\n    \"\"\"Reverse a string.\"\"\"\n    return s[::-1]\n",
    "for i in range(10):\n    print(i * i)\n",
    "Write a Python function that returns the sum of a list of numbers.",
    "Make the following programming question a little more difficult.",
    "### Instruction:\nSort a list.\n\n### Response:\nUse sorted(xs).",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "import math\nprint(math.sqrt(16))\n",
] * 20

SEEDS = [
    {"instruction": "Write a Python function that returns the sum of a list of numbers.", "input": "",
     "output": "def total(xs):\n    return sum(xs)"},
    {"instruction": "Reverse a string.", "input": "s = 'abc'", "output": "s[::-1]"},
    {"instruction": "Write a function that checks whether a number is prime.", "output": ""},
    {"id": "fib", "instruction": "Return the n-th Fibonacci number.", "output": "def fib(n): ..."},
]
"""CodeAlpaca-shaped seeds (one with an input, one with an id, one without output)."""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer multi-query GPTBigCode with random weights and a 320-token byte-level BPE."""
    from tests.helpers.models import byte_level_bpe, hf_tokenizer, save, tiny_gpt_bigcode

    tok = hf_tokenizer(byte_level_bpe(CORPUS, 320, ["<|endoftext|>", "<pad>"]), eos_token="<|endoftext|>",
                       bos_token="<|endoftext|>", pad_token="<pad>")
    model = tiny_gpt_bigcode(len(tok), hidden=32, layers=2, heads=2, positions=512, n_inner=64, eos=tok.eos_token_id)
    return save(model, tmp_path_factory.mktemp("tiny-gptbigcode"), tok)


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from codetron.eval.serve import Engine

    return Engine(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def start_server(engine, tiny_model_dir):
    """start_server(faults=()) -> a running OpenAIServer on 127.0.0.1 (free port) counting POSTs in
    ``.posts``, failing the first ones as ``faults`` lists ("500", "drop", "429"), counted in ``.injected``."""
    from tests.helpers.openai_server import engine_server

    with contextlib.ExitStack() as running:

        def start(faults=()):
            return running.enter_context(serving(engine_server(engine, tiny_model_dir, "tiny", faults)))

        yield start


@pytest.fixture(scope="session")
def server(start_server):
    return start_server()


@pytest.fixture(scope="session")
def seed_records() -> list[dict]:
    return [dict(s) for s in SEEDS]


class ScriptedBackend:
    """A fake backend: ``reply(prompt, params)`` gives a text, a list of texts or ``(text, finish_reason)``
    pairs (default reason "stop"); counts calls like a budget would."""

    def __init__(self, reply):
        from codetron.preprocess.generate.backends import RequestBudget

        self.reply = reply
        self.budget = RequestBudget()
        self.retries = 0
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"backend": "scripted"}

    def chat(self, messages, params):
        return [c.text for c in self.chat_choices(messages, params)]

    def chat_choices(self, messages, params):
        from codetron.preprocess.generate.backends import Completion

        self.budget.take()
        with self._lock:
            self.calls.append(messages[-1]["content"])
        out = self.reply(messages[-1]["content"], params)
        out = out if isinstance(out, list) else [out] * params.n
        return [Completion(*o) if isinstance(o, tuple) else Completion(o, "stop") for o in out]


@pytest.fixture
def scripted():
    """The ScriptedBackend class (a fixture, so test modules need not import conftest)."""
    return ScriptedBackend
