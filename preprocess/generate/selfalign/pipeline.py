"""One seed through S->C, C->I and I->R, the execution filter and selection; the run's summary.

Per seed (a unit of ``runner.run_units``): concepts of the snippet, one instruction with a property
drawn from a seeded RNG (category, difficulty), ``responses`` answers in one request. Each answer is
parsed and sanitised (``response.parse_response``), answers whose tests test nothing are rejected
(``response.vacuous_reason``), and the rest run -- solution then tests -- in eval's sandbox
(``codetron.eval.execution.check_programs``). Selection keeps one passing answer per instruction, drawn
with a seeded RNG among the passing ones (the published pipeline picks one at random, too).

Execution is batched like ``evolve self-instruct``: a chunk of seeds is generated concurrently, then
all its programs run in one sandbox pool, then the chunk's records are appended to the resume log,
so a resumed run neither asks the server again nor re-executes anything logged.
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass

from codetron.errors import CodetronError, ConfigError
from codetron.preprocess.generate.backends import BackendError, GenParams, OpenAIBackend
from codetron.preprocess.generate.runner import RunStatus, derive_seed, run_in_chunks
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.selfalign.prompts import STOP, FewShot, Property, cut_answer, split_concepts
from codetron.preprocess.generate.selfalign.response import Parsed, parse_response, vacuous_reason
from codetron.preprocess.generate.store import RecordLog

CATEGORIES = ("function implementation", "class implementation", "program implementation")
"""C->I task categories (the published pipeline's three)."""
DIFFICULTIES = ("medium", "hard")
"""C->I difficulties (the published pipeline's two)."""

ITEM_RULES = ("concepts_unparsed", "instruction_empty", "instruction_mentions_snippet", "no_passing_response")
"""Why a seed yields no training pair."""
RESPONSE_RULES = ("response_unparsed", "no_solution", "incomplete", "vacuous_tests", "tests_failed",
                  "tests_timeout")
"""Why one sampled response is not a candidate (the first four before execution)."""
STAGES = ("seeds", "concepts", "instructions", "responses", "parsed", "executed", "passed", "selected")
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
    """Few-shot examples in the S->C and C->I prompts (published: 8 of its 16; the shipped file has 4)."""
    fewshots_response: int = 1
    """Few-shot examples in the I->R prompt (published: 1)."""
    language: str = "Python"
    """Language of the tasks (the execution filter runs Python)."""
    seed: int = 3407
    """Base seed of every draw and request seed (published default 3407)."""
    temperature: float = 0.7
    """Sampling temperature of every request (published: 0.7)."""
    top_p: float = 1.0
    """Nucleus mass (the published pipeline leaves it at 1)."""
    max_tokens: int = 1536
    """Tokens at most per answer (published: 1536)."""
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
        n = len(fewshot.examples)
        for flag, k in (("--fewshots", self.fewshots), ("--fewshots-response", self.fewshots_response)):
            if not 1 <= k <= n:
                raise ConfigError(f"{flag} {k}: must be between 1 and {n} (examples in {fewshot.path})")
        if self.exec_timeout <= 0:
            raise ConfigError(f"--exec-timeout must be > 0, got {self.exec_timeout}")
        if self.max_tokens < 1 or not 0 <= self.temperature <= 2 or not 0 < self.top_p <= 1:
            raise ConfigError("--max-tokens must be >= 1, --temperature in [0, 2], --top-p in (0, 1]")
        if min(self.concurrency, self.chunk, self.exec_workers) < 1:
            raise ConfigError("--concurrency and --exec-workers must be >= 1")

    def header(self, fewshot: FewShot) -> dict:
        """What a resumed run must share with the logged one (everything that shapes a record)."""
        return {"mode": "selfalign", "api": self.api, "responses": self.responses, "fewshots": self.fewshots,
                "fewshots_response": self.fewshots_response, "language": self.language, "seed": self.seed,
                "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "fewshot_sha": fewshot.sha}


def seed_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class Generator:
    """The three model calls of one seed, on one OpenAI-compatible backend."""

    def __init__(self, backend: OpenAIBackend, cfg: SelfAlignConfig, fewshot: FewShot):
        self.backend, self.cfg, self.fewshot = backend, cfg, fewshot

    def ask(self, step: str, k: int, rng: random.Random, seed: int, n: int = 1, **fields: str) -> list[str]:
        system, body = self.fewshot.prompt(step, k, rng, **fields)
        params = GenParams(temperature=self.cfg.temperature, top_p=self.cfg.top_p, max_tokens=self.cfg.max_tokens,
                           seed=seed, stop=[STOP], n=n)
        prompt = f"{system}\n\n{body}"
        if self.cfg.api == "completions":
            texts = self.backend.complete(prompt, params)
        else:
            # one user message: some chat templates (StarCoder2-Instruct's among them) reject system messages
            texts = self.backend.chat([{"role": "user", "content": prompt}], params)
        if len(texts) != n:
            raise BackendError(f"asked for {n} choices, the server returned {len(texts)}")
        return [cut_answer(t, step) for t in texts]

    def item(self, seed: Seed) -> dict:
        cfg = self.cfg
        base = derive_seed(cfg.seed, "selfalign", seed.id)
        rng = random.Random(base)
        rec: dict = {"key": seed.id, "seed_id": seed.id, "seed_sha": seed_sha(seed.text), "concepts": [],
                     "category": rng.choice(CATEGORIES), "difficulty": rng.choice(DIFFICULTIES), "instruction": "",
                     "responses": [], "status": "dropped", "rule": None, "output": None, "tests": None}
        said = self.ask("S->C", cfg.fewshots, rng, base, snippet=seed.text.rstrip())[0]
        rec["concepts"] = list(split_concepts(said.splitlines()[0] if said else ""))
        if not rec["concepts"]:
            rec["rule"] = "concepts_unparsed"
            return rec
        prop = Property(rec["category"], cfg.language, rec["difficulty"], tuple(rec["concepts"]))
        rec["instruction"] = self.ask("C->I", cfg.fewshots, rng, base + 1, property=prop.text())[0]
        if not rec["instruction"]:
            rec["rule"] = "instruction_empty"
            return rec
        if "code snippet" in rec["instruction"].lower():
            # the reader of the instruction never sees the seed (published clean-up rule)
            rec["rule"] = "instruction_mentions_snippet"
            return rec
        answers = self.ask("I->R", cfg.fewshots_response, rng, base + 2, n=cfg.responses,
                           instruction=rec["instruction"])
        for i, answer in enumerate(answers):
            parsed = parse_response(answer)
            entry: dict = {"index": i, "rule": None}
            if isinstance(parsed, str):
                entry["rule"] = parsed
            else:
                why = vacuous_reason(parsed.solution, parsed.tests)
                if why:
                    entry.update(rule="vacuous_tests", detail=why)
                else:
                    entry["_parsed"] = parsed
            rec["responses"].append(entry)
        return rec


def execute_and_select(records: list[dict], cfg: SelfAlignConfig) -> None:
    """Run every candidate in the sandbox, then keep one passing response per record."""
    from codetron.eval.execution import check_programs

    flat = [(rec, entry) for rec in records for entry in rec["responses"] if "_parsed" in entry]
    programs = [e["_parsed"].solution + "\n\n" + e["_parsed"].tests for _, e in flat]
    results = check_programs(programs, timeout=cfg.exec_timeout, n_workers=cfg.exec_workers) if programs else []
    for (_, entry), res in zip(flat, results):
        entry["status"] = res.status
        if not res.passed:
            entry.update(rule="tests_timeout" if res.status == "timeout" else "tests_failed", detail=res.detail)
    for rec in records:
        passing: list[Parsed] = [e["_parsed"] for e in rec["responses"] if e.get("status") == "passed"]
        if passing:
            pick = random.Random(derive_seed(cfg.seed, "select", rec["key"])).randrange(len(passing))
            chosen = [e for e in rec["responses"] if e.get("status") == "passed"][pick]
            rec.update(status="kept", rule=None, output=passing[pick].response, tests=passing[pick].tests,
                       selected=chosen["index"])
        elif rec["rule"] is None:
            rec["rule"] = "no_passing_response"
        for e in rec["responses"]:
            e.pop("_parsed", None)


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
    gen = Generator(backend, cfg, fewshot)
    return run_in_chunks(todo, gen.item, lambda recs: execute_and_select(recs, cfg), log, chunk=cfg.chunk,
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
            stages["parsed"] += e["rule"] not in ("response_unparsed", "no_solution", "incomplete")
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
