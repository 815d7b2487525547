"""MultiPL-E's HumanEval translations (``multiple-js``, ``-java``, ``-go``, ``-cpp``, ``-rs``) as
bigcode-evaluation-harness ``bigcode_eval/tasks/multiple.py`` defines them: the stripped prompt, the
dataset's own stop tokens plus ``<file_sep>``, prompt + completion cut at the first stop token, and
``completion + "\\n" + tests`` run as one program (MultiPL-E's ``evaluation.py``); a sample passes
when the program exits 0.

Records (``nuprl/MultiPL-E`` config ``humaneval-<lang>``, the revision the harness pins, or the
MultiPL-E prompt files): name, language, prompt, tests, stop_tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from codetron.errors import CodetronError
from codetron.eval.prompts import EOS, truncate
from codetron.eval.tasks.base import Task, register

LANGUAGES = {"js": "js", "java": "java", "go": "go", "cpp": "cpp", "rs": "rs"}
"""MultiPL-E language suffix -> sandbox language (``rs``: asserts in ``fn main``, built without --test)."""
REVISION = "28441b6024e71d4a1c1c0f6bf171c935cd5a43f2"


@dataclass(frozen=True, kw_only=True)
class MultiPLE(Task):
    needs: ClassVar[tuple[str, ...]] = ("name", "prompt", "tests", "stop_tokens")

    def normalize(self, record: dict, where: str) -> dict:
        for key in self.needs:
            if key not in record:
                raise CodetronError(f"{where}: field {key!r} missing (task {self.name} reads the MultiPL-E schema)")
        if not all(isinstance(record[k], str) for k in ("name", "prompt", "tests")):
            raise CodetronError(f"{where}: fields 'name', 'prompt' and 'tests' must be strings")
        stops = record["stop_tokens"]
        if not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
            raise CodetronError(f"{where}: field 'stop_tokens' must be a list of strings")
        return {**record, "task_id": record.get("task_id", record["name"])}

    def load(self, source=None, **where) -> list[dict]:
        problems = super().load(source, **where)
        # the harness takes every problem's stop words from the first record
        first = problems[0]["stop_tokens"]
        return [{**p, "stop_tokens": list(first)} for p in problems]

    def prompt(self, doc: dict, fmt: str) -> str:
        return doc["prompt"].strip()

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        if doc is None:
            raise CodetronError(f"{self.name}: stop words come from the problems")
        return list(doc["stop_tokens"]) + ["<file_sep>", EOS]

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        prompt = self.prompt(doc, fmt)
        return prompt + truncate(text[len(prompt):], self.stop(fmt, doc))

    def program(self, doc: dict, code: str) -> str:
        return code + "\n" + doc["tests"]


@register
def _build() -> list[Task]:
    return [MultiPLE(name=f"multiple-{suffix}", language=lang, source="bigcode-evaluation-harness "
                     "bigcode_eval/tasks/multiple.py; MultiPL-E evaluation.py",
                     dataset=f"nuprl/MultiPL-E:humaneval-{suffix}@{REVISION}", timeout=15.0, harness="multiple")
            for suffix, lang in LANGUAGES.items()]
