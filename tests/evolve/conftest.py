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
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    from tests.conftest import byte_level_bpe

    out = tmp_path_factory.mktemp("tiny-gptbigcode")
    tok = byte_level_bpe(CORPUS, 320, ["<|endoftext|>", "<pad>"])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                     pad_token="<pad>")
    hf_tok.save_pretrained(out)
    eos = hf_tok.eos_token_id
    cfg = GPTBigCodeConfig(vocab_size=len(hf_tok), n_positions=512, n_embd=32, n_layer=2, n_head=2,
                           n_inner=64, multi_query=True, bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    GPTBigCodeForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from codetron.eval.serve import Engine

    return Engine(str(tiny_model_dir), device="cpu")


def _handlers():
    from codetron.eval.serve import OpenAIHandler

    class CountingHandler(OpenAIHandler):
        """Counts POSTs (the requests a client really sent)."""

        def do_POST(self):
            with self.server.count_lock:
                self.server.posts += 1
            super().do_POST()

    class FlakyHandler(CountingHandler):
        """Fails requests as scripted in ``server.faults`` ("500", "drop", "429"), then serves normally."""

        def do_POST(self):
            with self.server.count_lock:
                fault = self.server.faults.pop(0) if self.server.faults else None
            if fault is None:
                return super().do_POST()
            with self.server.count_lock:
                self.server.posts += 1
                self.server.injected += 1
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if fault == "drop":  # close the connection without any reply
                self.close_connection = True
                return
            if fault == "429":
                return self.send_error_json(429, "slow down", "rate_limit_error", headers={"Retry-After": "0"})
            return self.send_error_json(500, "injected failure", "server_error")

    return CountingHandler, FlakyHandler


@pytest.fixture(scope="session")
def start_server(engine, tiny_model_dir):
    """start_server(flaky=False, faults=()) -> a running OpenAIServer on 127.0.0.1 (free port)."""
    from codetron.eval.serve import OpenAIServer, ServeConfig

    counting, flaky = _handlers()
    with contextlib.ExitStack() as running:

        def start(flaky_: bool = False, faults=()):
            cfg = ServeConfig(model=str(tiny_model_dir), model_name="tiny", host="127.0.0.1", port=0)
            server = OpenAIServer(engine, cfg, handler=flaky if flaky_ else counting)
            server.posts, server.injected, server.faults = 0, 0, list(faults)
            server.count_lock = threading.Lock()
            return running.enter_context(serving(server))

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
