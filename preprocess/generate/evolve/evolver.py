"""Evol-Instruct for code (WizardCoder / PanGu-Coder2): rounds of in-depth evolution + elimination.

Each seed starts a *lineage*. In round r the lineage's current instruction is rewritten with one of
the five methods (drawn from a seeded hash of (seed, seed id, round), so a resumed run draws the same),
checked by the eliminator, and answered by the model. A kept evolution becomes the lineage's current
instruction; a dropped one leaves the parent in place, to be evolved again next round with a new
draw. Every round's kept (instruction, response) pairs go to the output, as WizardCoder merges the
data of all rounds.

Model calls per lineage and round: evolve (1), judge information gain (1, unless ``judge=False`` or a
cheap rule already fired), respond (1, only if still alive). The judge may be another, stronger model
on another server (WizardLM judged with ChatGPT); by default it is the generating model.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from codetron.errors import CodetronError, ConfigError
from codetron.sampling import SamplingParams, sampling_field
from codetron.preprocess.generate.backends import Backend, chat_choices
from codetron.preprocess.generate.evolve.eliminator import RULES, check_instruction, check_response, parse_judgement
from codetron.preprocess.generate.evolve.templates import EVOL_TEMPLATES, METHODS, equality_prompt, evolution_prompt
from codetron.preprocess.generate.runner import RunStatus, derive_seed, run_units
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.store import RecordLog


@dataclass(kw_only=True)
class EvolConfig:
    """Evol-Instruct settings."""

    rounds: int = 3
    """Evolution rounds (WizardCoder used 3-4 over CodeAlpaca). Raising it on a resumed run adds rounds."""
    template: str = "wizardcoder"
    """Evolution prompt: "wizardcoder" or "pangu" (Programming Contest Designer)."""
    methods: tuple[str, ...] = tuple(METHODS)
    """Methods drawn from, uniformly (WizardCoder's five by default)."""
    seed: int = 0
    """Base seed for method draws and request seeds."""
    sampling: SamplingParams = sampling_field(temperature=1.0, top_p=0.95, max_new_tokens=1024)
    """Sampling of evolution and response calls (the judge is greedy); its seed is derived per request
    from ``seed``. WizardCoder samples at temperature 1 with up to 1024 tokens per answer."""
    judge: bool = True
    """Ask the model whether an evolution gained information (elimination rule 1)."""
    judge_max_tokens: int = 8
    """Tokens for the judge's answer ("Not Equal" and a little more)."""
    judge_unparsed: str = "drop"
    """What a judge answer that is neither "Equal" nor "Not Equal" does: "drop" the evolution
    (rule ``judge_unparsed``; see ``eliminator``) or "keep" it."""
    keep_truncated: bool = False
    """Keep instructions and responses cut at ``sampling.max_new_tokens`` (``finish_reason: length``); by default
    they are dropped (rules ``truncated_instruction``, ``truncated_response``)."""
    concurrency: int = 8
    """Lineages worked on at once (parallel HTTP requests)."""
    max_failures: int = 20
    """Lineage-rounds allowed to fail for good (after retries) before the run stops."""

    def validate(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.rounds}")
        if self.template not in EVOL_TEMPLATES:
            raise ConfigError(f"--template {self.template!r}: choose from {', '.join(EVOL_TEMPLATES)}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"--methods {','.join(bad) or '(none)'}: choose from {', '.join(METHODS)}")
        self.sampling.validate()
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.judge_unparsed not in ("drop", "keep"):
            raise ConfigError(f"--judge-unparsed {self.judge_unparsed!r}: choose drop or keep")

    def header(self) -> dict:
        """Settings a resumed run must share (rounds may grow; concurrency/budget may change)."""
        return {"mode": "evol", "template": self.template, "methods": list(self.methods), "seed": self.seed,
                # flat keys with the OpenAI name: the header of existing records logs (resume)
                "temperature": self.sampling.temperature, "top_p": self.sampling.top_p,
                "max_tokens": self.sampling.max_new_tokens,
                "judge": self.judge, "judge_unparsed": self.judge_unparsed, "keep_truncated": self.keep_truncated}


def pick_method(cfg: EvolConfig, seed_id: str, round_: int) -> str:
    return random.Random(derive_seed(cfg.seed, "method", seed_id, round_)).choice(list(cfg.methods))


def evolve_one(backend: Backend, cfg: EvolConfig, seed_id: str, round_: int, parent: str,
               judge: Backend | None = None) -> dict:
    """One lineage, one round: the record (kept or dropped, with the rule that fired). ``judge``
    answers the information-gain question (default: ``backend``)."""
    method = pick_method(cfg, seed_id, round_)
    base = derive_seed(cfg.seed, "request", seed_id, round_)
    prompt = evolution_prompt(cfg.template, method, parent)
    choice = chat_choices(backend, [{"role": "user", "content": prompt}], cfg.sampling.replace(seed=base))[0]
    evolved = choice.text.strip()
    rec = {"key": f"{seed_id}:{round_}", "seed_id": seed_id, "round": round_, "method": method,
           "template": cfg.template, "parent": parent, "instruction": evolved, "output": None}
    rule = check_instruction(parent, evolved)
    if rule is None and choice.finish_reason == "length" and not cfg.keep_truncated:
        rule = "truncated_instruction"
    if rule is None and cfg.judge:
        answer = (judge or backend).chat([{"role": "user", "content": equality_prompt(parent, evolved)}],
                                         SamplingParams(temperature=0.0, max_new_tokens=cfg.judge_max_tokens,
                                                   seed=base + 1))[0]
        verdict = parse_judgement(answer)
        rec["judge"] = {True: "equal", False: "not_equal", None: "unparsed"}[verdict]
        rec["judge_answer"] = answer[:200]
        if verdict:
            rule = "no_information_gain"
        elif verdict is None and cfg.judge_unparsed == "drop":
            rule = "judge_unparsed"
    if rule is None:
        response = chat_choices(backend, [{"role": "user", "content": evolved}], cfg.sampling.replace(seed=base + 2))[0]
        rec["output"] = response.text.strip()
        rule = ("truncated_response" if response.finish_reason == "length" and not cfg.keep_truncated
                else check_response(rec["output"]))
    rec["status"] = "dropped" if rule else "kept"
    rec["rule"] = rule
    return rec


@dataclass(slots=True)
class EvolResult:
    status: RunStatus
    """How the last batch ended (complete or not)."""
    rounds_done: int
    """Rounds fully finished."""
    stats: dict = field(default_factory=dict)
    """Counts per round and per rule (over the whole log, resumed records included)."""


def run_evol(seeds: list[Seed], backend: Backend, cfg: EvolConfig, log: RecordLog, progress: bool = True,
             judge: Backend | None = None) -> EvolResult:
    """Run (or resume) every round; records go to ``log`` as they finish. ``judge``: see ``evolve_one``."""
    cfg.validate()
    current = {s.id: s.text for s in seeds}
    status = RunStatus()
    rounds_done = 0
    for r in range(1, cfg.rounds + 1):
        units = []
        for s in seeds:
            rec = log.records.get(f"{s.id}:{r}")
            if rec is None:
                units.append((s.id, r, current[s.id]))
            elif rec["parent"] != current[s.id]:
                raise CodetronError(f"{log.path}: seed {s.id!r} round {r} was evolved from a different "
                                    "instruction than the seed data now gives; pass --restart")
        # the parents of round r are fixed before any of its units runs
        status = run_units(units, lambda u: evolve_one(backend, cfg, *u, judge=judge), log.append,
                           concurrency=cfg.concurrency, max_failures=cfg.max_failures,
                           desc=f"evolve round {r}/{cfg.rounds}", progress=progress)
        if not status.complete:
            break
        for s in seeds:
            rec = log.records[f"{s.id}:{r}"]
            if rec["status"] == "kept":
                current[s.id] = rec["instruction"]
        rounds_done = r
    return EvolResult(status, rounds_done, evol_stats(log.records.values(), cfg.rounds))


def evol_stats(records, rounds: int) -> dict:
    per_round = {r: Counter() for r in range(1, rounds + 1)}
    rules: Counter = Counter()
    methods: Counter = Counter()
    judge: Counter = Counter()
    for rec in records:
        if rec.get("round") not in per_round:
            continue
        c = per_round[rec["round"]]
        c["evolved"] += 1
        c[rec["status"]] += 1
        methods[rec["method"]] += 1
        if rec.get("rule"):
            rules[rec["rule"]] += 1
        if "judge" in rec:
            judge[rec["judge"]] += 1
    return {
        "rounds": {str(r): {"evolved": c["evolved"], "kept": c["kept"], "dropped": c["dropped"]}
                   for r, c in per_round.items()},
        "eliminated": {rule: rules.get(rule, 0) for rule in RULES},
        "methods": dict(sorted(methods.items())),
        # unparsed answers are counted whatever --judge-unparsed did with them
        "judge": {k: judge.get(k, 0) for k in ("equal", "not_equal", "unparsed")},
    }
