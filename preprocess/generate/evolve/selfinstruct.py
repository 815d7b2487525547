"""Self-instruct for code, StarCoder2-Instruct style: snippet -> concepts -> instruction -> tested response.

For each code seed and ``k < instructions_per_seed``: the model names the snippet's concepts, writes
a new task exercising them (category and difficulty drawn from a seeded hash), and answers it
``responses`` times in the ``[Reasoning] / [Implementation] / [Tests]`` format. Each answer's
implementation + its own tests run in the ``eval`` sandbox (``codetron.eval.execution.check_programs``); the
first answer whose tests pass is kept, and an item with no passing answer is dropped. Answers
without an ``assert`` in their tests are never kept: a test that checks nothing proves nothing.

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
from codetron.preprocess.generate.backends import Backend, GenParams
from codetron.preprocess.generate.evolve.templates import (CONCEPTS_TEMPLATE, DIFFICULTIES, INSTRUCTION_TEMPLATE,
                                                  RESPONSE_TEMPLATE, TASK_CATEGORIES)
from codetron.preprocess.generate.runner import RunStatus, derive_seed, run_units
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.store import RecordLog

SELF_RULES = ("no_concepts", "no_instruction", "no_tests", "tests_failed")
"""Why a self-instruct item is dropped: nothing parsed at a step, no answer with asserting tests,
or no answer whose tests passed."""


@dataclass(kw_only=True)
class SelfInstructConfig:
    """Self-instruct settings."""

    instructions_per_seed: int = 1
    """New tasks written per seed snippet."""
    responses: int = 1
    """Answers sampled per task (``n`` of one request); the first passing one is kept."""
    seed: int = 0
    """Base seed for draws and request seeds."""
    temperature: float = 0.7
    """Sampling temperature of every call."""
    top_p: float = 0.95
    """Nucleus mass."""
    max_tokens: int = 1024
    """Tokens at most per call."""
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

    def validate(self) -> None:
        if self.instructions_per_seed < 1 or self.responses < 1:
            raise ConfigError("--instructions-per-seed and --responses must be >= 1")
        if self.exec_timeout <= 0:
            raise ConfigError(f"--exec-timeout must be > 0, got {self.exec_timeout}")
        if self.chunk < 1 or self.concurrency < 1 or self.exec_workers < 1:
            raise ConfigError("--concurrency and --exec-workers must be >= 1")

    def header(self) -> dict:
        return {"mode": "self-instruct", "seed": self.seed, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "responses": self.responses}


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


def program_for(impl: str, tests: str) -> str:
    return impl.rstrip() + "\n\n\n" + tests.strip() + "\n"


def generate_item(backend: Backend, cfg: SelfInstructConfig, seed: Seed, k: int) -> dict:
    """The model calls of one item; programs to execute are in ``rec["_candidates"]``."""
    base = derive_seed(cfg.seed, "self", seed.id, k)
    rng = random.Random(base)
    category, difficulty = rng.choice(TASK_CATEGORIES), rng.choice(DIFFICULTIES)
    sample = dict(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens)
    rec: dict = {"key": f"{seed.id}:{k}", "seed_id": seed.id, "seed_sha": seed_sha(seed.text), "index": k, "category": category,
                 "difficulty": difficulty, "concepts": [], "instruction": "", "output": None, "tests": None,
                 "status": "dropped", "rule": None, "_candidates": []}
    said = backend.chat([{"role": "user", "content": CONCEPTS_TEMPLATE.format(snippet=seed.text)}],
                        GenParams(seed=base, **sample))[0]
    rec["concepts"] = parse_concepts(said)
    if not rec["concepts"]:
        rec["rule"] = "no_concepts"
        return rec
    said = backend.chat([{"role": "user", "content": INSTRUCTION_TEMPLATE.format(
        concepts=", ".join(rec["concepts"]), category=category, difficulty=difficulty)}],
        GenParams(seed=base + 1, **sample))[0]
    rec["instruction"] = parse_instruction(said)
    if not rec["instruction"]:
        rec["rule"] = "no_instruction"
        return rec
    answers = backend.chat([{"role": "user", "content": RESPONSE_TEMPLATE.format(instruction=rec["instruction"])}],
                           GenParams(seed=base + 2, n=cfg.responses, **sample))
    for i, answer in enumerate(answers):
        parts = split_response(answer)
        if parts and has_assert(parts[1]):
            rec["_candidates"].append((i, answer.strip(), parts[1], program_for(*parts)))
    if not rec["_candidates"]:
        rec["rule"] = "no_tests"
    return rec


def execute_chunk(records: list[dict], cfg: SelfInstructConfig) -> None:
    """Run every candidate's tests in the sandbox; keep each item's first passing answer."""
    from codetron.eval.execution import check_programs

    flat = [(rec, cand) for rec in records for cand in rec["_candidates"]]
    results = check_programs([cand[3] for _, cand in flat], timeout=cfg.exec_timeout,
                             n_workers=cfg.exec_workers) if flat else []
    for (rec, (i, answer, tests, _)), res in zip(flat, results):
        rec.setdefault("exec", []).append({"answer": i, "status": res.status, "detail": res.detail})
        if res.passed and rec["status"] != "kept":
            rec.update(status="kept", output=answer, tests=tests, rule=None)
    for rec in records:
        if rec["status"] != "kept" and rec["rule"] is None:
            rec["rule"] = "tests_failed"
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
    status = RunStatus()
    for start in range(0, len(units), cfg.chunk):
        pending: list[dict] = []
        part = run_units(units[start:start + cfg.chunk], lambda u: generate_item(backend, cfg, *u), pending.append,
                         concurrency=cfg.concurrency, max_failures=cfg.max_failures - status.failed,
                         desc=f"self-instruct {start // cfg.chunk + 1}/{-(-len(units) // cfg.chunk)}",
                         progress=progress)
        # items finished before a stop are still executed and logged: their requests are paid for
        execute_chunk(pending, cfg)
        for rec in sorted(pending, key=lambda r: r["key"]):
            log.append(rec)
        status.done += part.done
        status.failed += part.failed
        status.errors += part.errors
        status.budget_exhausted, status.aborted = part.budget_exhausted, part.aborted
        if not part.complete:
            break
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
