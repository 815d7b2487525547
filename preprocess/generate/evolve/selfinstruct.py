"""Self-instruct for code, StarCoder2-Instruct style: snippet -> concepts -> instruction -> tested response.

For each code seed and ``k < instructions_per_seed``: the model names the snippet's concepts, writes
a new task exercising them (category and difficulty drawn from a seeded hash), and answers it
``responses`` times in the ``[Reasoning] / [Implementation] / [Tests]`` format. Each answer's
implementation + its own tests run in the ``eval`` sandbox (``codetron.eval.execution.check_programs``); the
first answer whose tests pass is kept, and an item with no passing answer is dropped.

A test that checks nothing proves nothing, so an answer is kept only if its tests contain an
``assert`` and pass ``codetron.preprocess.generate.testcheck`` (the check ``selfalign run`` shares): the
static one (an assert reaches the implementation, no redefinition, no swallowed AssertionError) and,
in the same sandbox, failing against every trivially wrong implementation (every name under test
rebound to one that returns None, then to one that raises). Answers cut at ``max_tokens``
(``finish_reason: length``) are dropped unless ``keep_truncated``.

Execution is batched: a chunk of items is generated concurrently, then all its programs run in one
sandbox pool, then the chunk's records are logged (so a resumed run never re-executes logged items).
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass

from codetron.errors import CodetronError, ConfigError
from codetron.sampling import SamplingParams, sampling_field
from codetron.preprocess.generate.backends import Backend, chat_choices
from codetron.preprocess.generate.evolve.templates import (CONCEPTS_TEMPLATE, DIFFICULTIES, INSTRUCTION_TEMPLATE,
                                                  RESPONSE_TEMPLATE, TASK_CATEGORIES)
from codetron.preprocess.generate.runner import RunStatus, derive_seed, run_in_chunks
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.store import RecordLog
from codetron.preprocess.generate.testcheck import (WRONG_IMPLEMENTATIONS, fooled, names_under_test, programs,
                                                    vacuous_reason)

SELF_RULES = ("no_concepts", "no_instruction", "truncated_response", "no_tests", "tests_vacuous", "tests_failed",
              "tests_pass_wrong_impl")
"""Why a self-instruct item is dropped: nothing parsed at a step; every answer cut at max_tokens; no
answer with asserting tests; tests that never use the implementation's functions; no answer whose
tests passed; or tests that also pass against a trivially wrong implementation (the best answer's
fate is recorded)."""

@dataclass(kw_only=True)
class SelfInstructConfig:
    """Self-instruct settings."""

    instructions_per_seed: int = 1
    """New tasks written per seed snippet."""
    responses: int = 1
    """Answers sampled per task (``n`` of one request); the first passing one is kept."""
    seed: int = 0
    """Base seed for draws and request seeds."""
    sampling: SamplingParams = sampling_field(temperature=0.7, top_p=0.95, max_new_tokens=1024)
    """Sampling of every call; its seed is derived per request from ``seed`` and its ``n`` is
    ``responses`` for the answers (1 for the other calls)."""
    exec_timeout: float = 5.0
    """Seconds a response's tests may run in the sandbox."""
    exec_workers: int = 2
    """Sandbox worker processes."""
    concurrency: int = 8
    """Items generated at once."""
    chunk: int = 64
    """Items per generate-then-execute batch."""
    max_failures: int = 20
    """Items allowed to fail for good before the run stops."""
    keep_truncated: bool = False
    """Also consider answers cut at ``sampling.max_new_tokens``."""

    def validate(self) -> None:
        if self.instructions_per_seed < 1 or self.responses < 1:
            raise ConfigError("--instructions-per-seed and --responses must be >= 1")
        self.sampling.validate()
        if self.exec_timeout <= 0:
            raise ConfigError(f"--exec-timeout must be > 0, got {self.exec_timeout}")
        if self.chunk < 1 or self.concurrency < 1 or self.exec_workers < 1:
            raise ConfigError("--concurrency and --exec-workers must be >= 1")

    def header(self) -> dict:
        # flat keys with the OpenAI name: the header of existing records logs (resume)
        return {"mode": "self-instruct", "seed": self.seed, "temperature": self.sampling.temperature,
                "top_p": self.sampling.top_p, "max_tokens": self.sampling.max_new_tokens, "responses": self.responses, "keep_truncated": self.keep_truncated,
                "wrong_impl_check": sorted(WRONG_IMPLEMENTATIONS)}


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)


def parse_concepts(text: str) -> list[str]:
    """The comma-separated list after "Concepts:" (or on the first non-empty line)."""
    m = re.search(r"concepts\s*:\s*(.+)", text, re.I)
    line = m.group(1) if m else next((ln for ln in text.splitlines() if ln.strip()), "")
    return [c.strip(" .*-`") for c in line.split(",") if c.strip(" .*-`")]


def parse_instruction(text: str) -> str:
    """The text after "Instruction:" (or all of it)."""
    m = re.search(r"instruction\s*:\s*(.*)", text, re.I | re.S)
    return (m.group(1) if m else text).strip()


def split_response(text: str) -> tuple[str, str] | None:
    """(implementation, tests) code from a ``[Implementation]`` / ``[Tests]`` answer, or None.

    Without the section markers, two or more fenced blocks are read as implementation (first) and
    tests (last)."""
    impl_at, tests_at = text.find("[Implementation]"), text.find("[Tests]")
    if impl_at != -1 and tests_at > impl_at:
        impl = _FENCE.search(text, impl_at, tests_at)
        tests = _FENCE.search(text, tests_at)
        if impl and tests:
            return impl.group(2), tests.group(2)
    blocks = _FENCE.findall(text)
    if len(blocks) >= 2:
        return blocks[0][1], blocks[-1][1]
    return None


def seed_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def has_assert(tests: str) -> bool:
    return re.search(r"^\s*assert\b", tests, re.M) is not None


def generate_item(backend: Backend, cfg: SelfInstructConfig, seed: Seed, k: int) -> dict:
    """The model calls of one item; programs to execute are in ``rec["_candidates"]``."""
    base = derive_seed(cfg.seed, "self", seed.id, k)
    rng = random.Random(base)
    category, difficulty = rng.choice(TASK_CATEGORIES), rng.choice(DIFFICULTIES)
    rec: dict = {"key": f"{seed.id}:{k}", "seed_id": seed.id, "seed_sha": seed_sha(seed.text), "index": k, "category": category,
                 "difficulty": difficulty, "concepts": [], "instruction": "", "output": None, "tests": None,
                 "status": "dropped", "rule": None, "_candidates": []}
    said = backend.chat([{"role": "user", "content": CONCEPTS_TEMPLATE.format(snippet=seed.text)}],
                        cfg.sampling.replace(seed=base))[0]
    rec["concepts"] = parse_concepts(said)
    if not rec["concepts"]:
        rec["rule"] = "no_concepts"
        return rec
    said = backend.chat([{"role": "user", "content": INSTRUCTION_TEMPLATE.format(
        concepts=", ".join(rec["concepts"]), category=category, difficulty=difficulty)}],
        cfg.sampling.replace(seed=base + 1))[0]
    rec["instruction"] = parse_instruction(said)
    if not rec["instruction"]:
        rec["rule"] = "no_instruction"
        return rec
    answers = chat_choices(backend, [{"role": "user", "content": RESPONSE_TEMPLATE.format(
        instruction=rec["instruction"])}], cfg.sampling.replace(seed=base + 2, n=cfg.responses))
    fates = []
    for i, answer in enumerate(answers):
        if answer.finish_reason == "length" and not cfg.keep_truncated:
            fates.append("truncated_response")
            continue
        parts = split_response(answer.text)
        if not parts or not has_assert(parts[1]):
            fates.append("no_tests")
            continue
        if names_under_test(*parts) is not None and vacuous_reason(*parts):
            fates.append("tests_vacuous")
            continue
        rec["_candidates"].append((i, answer.text.strip(), parts[1], programs(*parts)))
    if not rec["_candidates"]:
        # the answer that got furthest names the item's fate
        order = ("tests_vacuous", "no_tests", "truncated_response")
        rec["rule"] = min(fates, key=order.index) if fates else "no_tests"
    return rec


def execute_chunk(records: list[dict], cfg: SelfInstructConfig) -> None:
    """Run every candidate's tests, against its implementation and the wrong ones, in the sandbox;
    keep each item's first answer whose tests pass and catch both wrong implementations."""
    from codetron.eval.execution import check_programs

    flat = [(rec, cand) for rec in records for cand in rec["_candidates"]]
    to_run = [p for _, cand in flat for p in cand[3]]
    results = iter(check_programs(to_run, timeout=cfg.exec_timeout, n_workers=cfg.exec_workers) if flat else [])
    for rec, (i, answer, tests, progs) in flat:
        res, *wrong = [next(results) for _ in progs]
        weak = fooled([res.passed] + [w.passed for w in wrong])
        rec.setdefault("exec", []).append({"answer": i, "status": res.status, "detail": res.detail,
                                           "passes_wrong_impl": weak})
        if res.passed and not weak and rec["status"] != "kept":
            rec.update(status="kept", output=answer, tests=tests, rule=None)
    for rec in records:
        if rec["status"] != "kept" and rec["rule"] is None:
            weak = any(e["status"] == "passed" for e in rec.get("exec", []))
            rec["rule"] = "tests_pass_wrong_impl" if weak else "tests_failed"
        del rec["_candidates"]


def run_self_instruct(seeds: list[Seed], backend: Backend, cfg: SelfInstructConfig, log: RecordLog,
                      progress: bool = True) -> tuple[RunStatus, dict]:
    cfg.validate()
    units = []
    for s in seeds:
        for k in range(cfg.instructions_per_seed):
            rec = log.records.get(f"{s.id}:{k}")
            if rec is None:
                units.append((s, k))
            elif rec.get("seed_sha") != seed_sha(s.text):
                raise CodetronError(f"{log.path}: seed {s.id!r} has changed since it was logged; pass --restart")
    status = run_in_chunks(units, lambda u: generate_item(backend, cfg, *u), lambda recs: execute_chunk(recs, cfg),
                           log, chunk=cfg.chunk, concurrency=cfg.concurrency, max_failures=cfg.max_failures,
                           desc="self-instruct", progress=progress)
    return status, self_stats(log.records.values())


def self_stats(records) -> dict:
    c: Counter = Counter()
    rules: Counter = Counter()
    for rec in records:
        c[rec["status"]] += 1
        if rec.get("rule"):
            rules[rec["rule"]] += 1
    return {"items": c["kept"] + c["dropped"], "kept": c["kept"], "dropped": c["dropped"],
            "eliminated": {r: rules.get(r, 0) for r in SELF_RULES}}
