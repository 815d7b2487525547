"""One seed through S->C, C->I and I->R, the execution filter and selection; the run's summary.

Per seed (a unit of ``runner.run_units``): concepts of the snippet, one instruction with a property
drawn from a seeded RNG (category, difficulty), ``responses`` answers in one request. Each step draws
its few-shot examples from its own generator, seeded like the published pipeline seeds Python's
``random`` before each request (SC2SA:408-416, ``prompts`` names the file), so C->I draws category,
difficulty, then examples, in that order. A choice that did not finish (``finish_reason`` not
``stop``/``eos_token``: cut at ``max_tokens``) is dropped at every step, as published (SC2SA:452).
Each answer is parsed and sanitised (``response.parse_response``); answers whose tests test nothing are
rejected by ``codetron.preprocess.generate.testcheck`` (statically, then by running the tests against
wrong stand-ins next to the real run); the rest run -- solution then tests -- in eval's sandbox
(``codetron.eval.execution.check_programs``). Selection keeps one passing answer per instruction, drawn
with a seeded RNG among the passing ones (the published pipeline picks one at random, too).

Durability: a seed's record is appended to the resume log (fsynced) as soon as its model calls are
done, with status ``pending`` and its candidates; a chunk of seeds then runs in one sandbox pool and
the executed records are appended after it (the later line wins on reading). A run killed at any
point loses only the seeds whose requests were in flight; on resume, ``pending`` seeds are executed
without asking the server again.
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace

from codetron.errors import CodetronError, ConfigError
from codetron.sampling import SamplingParams, sampling_field
from codetron.preprocess.generate.backends import BackendError, Completion, OpenAIBackend
from codetron.preprocess.generate.runner import RunStatus, derive_seed, run_in_chunks
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.selfalign.prompts import (FINISHED, STOP, FewShot, cut_answer, draw_property,
                                                            split_concepts)
from codetron.preprocess.generate.selfalign.response import parse_response
from codetron.preprocess.generate.store import RecordLog
from codetron.preprocess.generate.testcheck import WRONG_IMPLEMENTATIONS, fooled, programs, vacuous_reason

ITEM_RULES = ("concepts_truncated", "concepts_unparsed", "instruction_truncated", "instruction_empty",
              "instruction_mentions_snippet", "no_passing_response")
"""Why a seed yields no training pair."""
RESPONSE_RULES = ("truncated", "response_unparsed", "no_solution", "incomplete", "vacuous_tests", "tests_failed",
                  "tests_timeout", "tests_pass_wrong_impl")
"""Why one sampled response is not a candidate (the first five before execution)."""
STAGES = ("seeds", "concepts", "instructions", "responses", "finished", "parsed", "executed", "passed", "selected")
"""The funnel reported in the summary: how many got through each stage."""


@dataclass(kw_only=True)
class SelfAlignConfig:
    """One ``codetron selfalign run``."""

    api: str = "completions"
    """completions: few-shot text continued by a base model (as published); chat: the same text as one user
    message, for instruction-tuned models."""
    responses: int = 10
    """Responses sampled per instruction (published I->R: 10)."""
    fewshots: int = 3
    """Few-shot examples in the S->C and C->I prompts (published: 8 of its file's 16; the shipped file has 4)."""
    fewshots_response: int = 1
    """Few-shot examples in the I->R prompt (published: 1)."""
    language: str = "Python"
    """Language of the tasks (the execution filter runs Python)."""
    seed: int = 3407
    """Base seed of every draw and request seed (published default 3407)."""
    sampling: SamplingParams = sampling_field(temperature=0.7, top_p=1.0, max_new_tokens=1536)
    """Sampling of every request (published: temperature 0.7, top_p left at 1, 1536 tokens per answer);
    seeds are derived per request from ``seed``, and ``n`` is ``responses`` for I->R."""
    exec_timeout: float = 10.0
    """Seconds one response's solution and tests may run (published: 10)."""
    exec_workers: int = 2
    """Sandbox worker processes."""
    concurrency: int = 8
    """Seeds in flight at once."""
    chunk: int = 64
    """Seeds per generate-then-execute batch."""
    max_failures: int = 20
    """Seeds allowed to fail for good (server errors) before the run stops."""

    def validate(self, fewshot: FewShot) -> None:
        if self.api not in ("completions", "chat"):
            raise ConfigError(f"--api {self.api!r}: choose completions or chat")
        if self.responses < 1:
            raise ConfigError(f"--responses must be >= 1, got {self.responses}")
        for flag, k, step in (("--fewshots", self.fewshots, "S->C"), ("--fewshots-response", self.fewshots_response,
                                                                      "I->R")):
            n = len(fewshot.pool(step))
            if not 1 <= k <= n:
                what = "examples with a [Solution]" if step == "I->R" else "examples"
                raise ConfigError(f"{flag} {k}: must be between 1 and {n} ({what} in {fewshot.path})")
        if self.exec_timeout <= 0:
            raise ConfigError(f"--exec-timeout must be > 0, got {self.exec_timeout}")
        self.sampling.validate()
        if min(self.concurrency, self.chunk, self.exec_workers) < 1:
            raise ConfigError("--concurrency and --exec-workers must be >= 1")

    def header(self, fewshot: FewShot) -> dict:
        """What a resumed run must share with the logged one (everything that shapes a record)."""
        return {"mode": "selfalign", "api": self.api, "responses": self.responses, "fewshots": self.fewshots,
                "fewshots_response": self.fewshots_response, "language": self.language, "seed": self.seed,
                # flat keys with the OpenAI name: the header of existing records logs (resume)
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "max_tokens": self.sampling.max_new_tokens,
                "fewshot_sha": fewshot.sha, "wrong_impl_check": sorted(WRONG_IMPLEMENTATIONS)}


def seed_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class Generator:
    """The three model calls of one seed, on one OpenAI-compatible backend."""

    def __init__(self, backend: OpenAIBackend, cfg: SelfAlignConfig, fewshot: FewShot):
        self.backend, self.cfg, self.fewshot = backend, cfg, fewshot

    def ask(self, prompt: str, seed: int, n: int = 1) -> list[Completion]:
        params = self.cfg.sampling.replace(seed=seed, stop=(STOP,), n=n)
        if self.cfg.api == "completions":
            choices = self.backend.complete_choices(prompt, params)
        else:
            # one user message: some chat templates (StarCoder2-Instruct's among them) reject system messages
            choices = self.backend.chat_choices([{"role": "user", "content": prompt}], params)
        if len(choices) != n:
            raise BackendError(f"asked for {n} choices, the server returned {len(choices)}")
        return choices

    def item(self, seed: Seed) -> dict:
        """One seed's model calls; its candidates wait in the record (status ``pending``) for execution."""
        cfg = self.cfg
        base = derive_seed(cfg.seed, "selfalign", seed.id)
        rec: dict = {"key": seed.id, "seed_id": seed.id, "seed_sha": seed_sha(seed.text), "concepts": [],
                     "category": None, "difficulty": None, "instruction": "", "responses": [], "status": "dropped",
                     "rule": None, "output": None, "tests": None}
        # each step seeds its own generator, as the published pipeline seeds `random` before each request
        # the seed verbatim, as published (SC2SA:306)
        prompt = self.fewshot.prompt("S->C", cfg.fewshots, random.Random(base), snippet=seed.text)
        [said] = self.ask(prompt, base)
        if said.finish_reason not in FINISHED:
            rec["rule"] = "concepts_truncated"
            return rec
        concepts = split_concepts(cut_answer(said.text))
        if not any(concepts):
            rec["rule"] = "concepts_unparsed"
            return rec
        rec["concepts"] = list(concepts)
        rng = random.Random(base + 1)
        prop = draw_property(rng, concepts, cfg.language)
        rec.update(category=prop.category, difficulty=prop.difficulty)
        [said] = self.ask(self.fewshot.prompt("C->I", cfg.fewshots, rng, property=prop.text()), base + 1)
        if said.finish_reason not in FINISHED:
            rec["rule"] = "instruction_truncated"
            return rec
        rec["instruction"] = cut_answer(said.text)
        if not rec["instruction"]:
            rec["rule"] = "instruction_empty"
            return rec
        if "code snippet" in rec["instruction"].lower():
            # the reader of the instruction never sees the seed (Codetron's rule; the official code has none)
            rec["rule"] = "instruction_mentions_snippet"
            return rec
        prompt = self.fewshot.prompt("I->R", cfg.fewshots_response, random.Random(base + 2),
                                     instruction=rec["instruction"])
        for i, choice in enumerate(self.ask(prompt, base + 2, n=cfg.responses)):
            entry: dict = {"index": i, "rule": None}
            parsed = parse_response(cut_answer(choice.text)) if choice.finish_reason in FINISHED else None
            if parsed is None:
                entry.update(rule="truncated", detail=f"finish_reason {choice.finish_reason}")
            elif isinstance(parsed, str):
                entry["rule"] = parsed
            elif why := vacuous_reason(parsed.solution, parsed.tests):
                entry.update(rule="vacuous_tests", detail=why)
            else:
                entry["candidate"] = {"response": parsed.response, "solution": parsed.solution, "tests": parsed.tests}
            rec["responses"].append(entry)
        if any("candidate" in e for e in rec["responses"]):
            rec["status"] = "pending"
        else:
            rec["rule"] = "no_passing_response"
        return rec


def execute_and_select(records: list[dict], cfg: SelfAlignConfig) -> None:
    """Run every pending candidate, and its tests against the wrong stand-ins, in the sandbox; then keep
    one response per record whose tests pass and catch every stand-in."""
    from codetron.eval.execution import check_programs

    flat = [(entry, programs(entry["candidate"]["solution"], entry["candidate"]["tests"]))
            for rec in records if rec["status"] == "pending" for entry in rec["responses"] if "candidate" in entry]
    to_run = [p for _, progs in flat for p in progs]
    results = iter(check_programs(to_run, timeout=cfg.exec_timeout, n_workers=cfg.exec_workers) if to_run else [])
    for entry, progs in flat:
        res, *wrong = [next(results) for _ in progs]
        entry["status"] = res.status
        weak = fooled([res.passed] + [w.passed for w in wrong])
        if not res.passed:
            entry.update(rule="tests_timeout" if res.status == "timeout" else "tests_failed", detail=res.detail)
        elif weak:
            entry.update(rule="tests_pass_wrong_impl", detail=f"also passes {', '.join(weak)}")
    for rec in records:
        if rec["status"] != "pending":
            continue
        passing = [e for e in rec["responses"] if e.get("status") == "passed" and e["rule"] is None]
        if passing:
            pick = passing[random.Random(derive_seed(cfg.seed, "select", rec["key"])).randrange(len(passing))]
            rec.update(status="kept", rule=None, output=pick["candidate"]["response"],
                       tests=pick["candidate"]["tests"], selected=pick["index"])
        else:
            rec.update(status="dropped", rule="no_passing_response")
        for e in rec["responses"]:
            e.pop("candidate", None)


def run_selfalign(seeds: list[Seed], backend: OpenAIBackend, cfg: SelfAlignConfig, fewshot: FewShot,
                  log: RecordLog, progress: bool = True) -> RunStatus:
    """Generate every seed not yet in ``log``; stops cleanly on a spent budget or too many failures."""
    cfg.validate(fewshot)
    todo = []
    for s in seeds:
        rec = log.records.get(s.id)
        if rec is None:
            todo.append(s)
        elif rec.get("seed_sha") != seed_sha(s.text):
            raise CodetronError(f"{log.path}: seed {s.id!r} has changed since it was logged; pass --restart")
    # seeds generated before a kill but never executed: run them now, without asking the server again
    pending = [log.records[s.id] for s in seeds if log.records.get(s.id, {}).get("status") == "pending"]
    for start in range(0, len(pending), cfg.chunk):
        chunk = pending[start:start + cfg.chunk]
        execute_and_select(chunk, cfg)
        for rec in chunk:
            log.append(rec)
    gen = Generator(backend, cfg, fewshot)
    to_execute: set[str] = set()

    def generate(seed: Seed) -> dict:
        rec = gen.item(seed)
        log.append(rec)  # on disk before anything else happens to this seed
        if rec["status"] == "pending":
            to_execute.add(rec["key"])
        return rec

    # after a chunk's execution only the records it changed are logged again
    executed = SimpleNamespace(append=lambda rec: log.append(rec) if rec["key"] in to_execute else None)
    return run_in_chunks(todo, generate, lambda recs: execute_and_select(recs, cfg), executed, chunk=cfg.chunk,
                         concurrency=cfg.concurrency, max_failures=cfg.max_failures, desc="selfalign",
                         progress=progress)


def summary(records) -> dict:
    """The funnel per stage and the count of every drop reason (items and responses)."""
    stages: Counter = Counter()
    items: Counter = Counter()
    responses: Counter = Counter()
    for rec in records:
        stages["seeds"] += 1
        stages["concepts"] += bool(rec["concepts"])
        stages["instructions"] += bool(rec["responses"])
        stages["responses"] += len(rec["responses"])
        for e in rec["responses"]:
            stages["finished"] += e["rule"] != "truncated"
            stages["parsed"] += e["rule"] not in ("truncated", "response_unparsed", "no_solution", "incomplete")
            stages["executed"] += "status" in e
            stages["passed"] += e.get("status") == "passed"
            if e["rule"]:
                responses[e["rule"]] += 1
        stages["selected"] += rec["status"] == "kept"
        if rec["rule"]:
            items[rec["rule"]] += 1
    return {"stages": {s: stages.get(s, 0) for s in STAGES},
            "dropped_items": {r: items.get(r, 0) for r in ITEM_RULES},
            "dropped_responses": {r: responses.get(r, 0) for r in RESPONSE_RULES}}
