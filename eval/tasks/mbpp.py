"""``mbpp`` and ``mbppplus`` as bigcode-evaluation-harness defines them (``bigcode_eval/tasks/mbpp.py``,
``mbppplus.py``): the InCoder-style prompt (description and the first test inside a docstring), the
harness's stop words, and the tests appended to the code; plus StarCoder2-Instruct's MBPP(+) prompt
(starcoder2-self-align ``evaluation/text2code.py``) as ``--prompt starcoder2-instruct``.

MBPP records (google-research ``mbpp.jsonl`` or the hub's ``full`` config): task_id, text, code,
test_list. The harness evaluates the test split, task ids 11-510; a file with the full release is cut
to it. MBPP+ records (``evalplus/mbppplus``): task_id, prompt, code, test_list, test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from codetron.errors import CodetronError
from codetron.eval.formats import Completion
from codetron.eval.prompts import EOS
from codetron.eval.tasks.base import CompletionTask, register

MBPP_STOP = ["\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```"]
TEST_SPLIT = range(11, 511)


def sc2_mbpp(prompt: str) -> tuple[str, str]:
    """text2code.py's MBPP mapping: the description becomes the instruction, the assertion is quoted
    after it, and the response opens a python fence."""
    inner = prompt[prompt.index('"""') + 3:prompt.rindex('"""')]
    cut = inner.index("assert")
    instruction = inner[:cut].strip()
    if not instruction.endswith("."):
        instruction += "."
    assertion = inner[cut:].strip()
    instruction = f"{instruction}\n\nYour code should pass the following assertion:\n```python\n{assertion}\n```"
    return instruction, "\n```python"


@dataclass(frozen=True, kw_only=True)
class MBPP(CompletionTask):
    plus: bool = False
    """MBPP+: the description is in ``prompt`` and the tests in ``test`` (EvalPlus)."""

    needs: ClassVar[tuple[str, ...]] = ("task_id", "test_list")

    def normalize(self, record: dict, where: str) -> dict:
        super().normalize(record, where)
        text_key = "prompt" if self.plus else "text"
        if not isinstance(record.get(text_key), str):
            raise CodetronError(f"{where}: field {text_key!r} missing or not a string (task {self.name})")
        tests = record["test_list"]
        if not (isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests)):
            raise CodetronError(f"{where}: field 'test_list' must be a non-empty list of strings")
        if self.plus and not isinstance(record.get("test"), str):
            raise CodetronError(f"{where}: field 'test' missing or not a string (task {self.name})")
        return {**record, "task_id": str(record["task_id"])}

    def select_split(self, problems: list[dict]) -> list[dict]:
        if self.plus:
            return problems
        ids = [int(p["task_id"]) if p["task_id"].isdigit() else -1 for p in problems]
        if all(i in TEST_SPLIT for i in ids):
            return problems
        return [p for p, i in zip(problems, ids) if i in TEST_SPLIT]

    def harness_prompt(self, doc: dict) -> str:
        description = doc["prompt"] if self.plus else doc["text"]
        return f'"""\n{description}\n{doc["test_list"][0]}\n"""\n'

    def completion(self, doc: dict) -> Completion:
        code = self.harness_prompt(doc)
        instruction, prefix = sc2_mbpp(code)
        return Completion(doc=doc, code=code, head=code, instruction=instruction, response_prefix=prefix)

    def task_stop(self, doc: dict | None = None) -> list[str]:
        return MBPP_STOP + [EOS]

    def program(self, doc: dict, code: str) -> str:
        reference = "\n" + doc["test"] if self.plus else "\n".join(doc["test_list"])
        return code + "\n" + reference

    def canonical(self, doc: dict) -> str | None:
        return doc.get("code") if isinstance(doc.get("code"), str) else None


@register
def _build() -> list[MBPP]:
    src = "bigcode-evaluation-harness bigcode_eval/tasks/"
    return [
        MBPP(name="mbpp", source=src + "mbpp.py", dataset="google-research-datasets/mbpp:full",
             formats=("continue", "starcoder2-instruct")),
        MBPP(name="mbppplus", source=src + "mbppplus.py; EvalPlus", dataset="evalplus/mbppplus", plus=True,
             timeout=10.0, formats=("continue", "starcoder2-instruct")),
    ]
