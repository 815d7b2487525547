"""Prompt templates for Evol-Instruct (code) and self-instruct, with their sources.

The wording is ours, written from the methods' descriptions in the papers (no text copied from
the authors' repositories); the *structure* follows each paper:

- **WizardCoder** (Luo et al. 2023, "WizardCoder: Empowering Code Large Language Models with
  Evol-Instruct", arXiv:2306.08568, §3.1): Evol-Instruct adapted to code. One evolution prompt asks
  to make a programming question a bit harder with one of five *in-depth* methods: (1) add new
  constraints/requirements of roughly ten words; (2) replace a common requirement with a rarer, more
  specific one; (3) when few logical steps suffice, require more reasoning steps; (4) give a piece of
  erroneous code as misdirection; (5) ask for higher time or space complexity — but not often. The
  paper drops WizardLM's in-breadth evolving and the "deepening" method for code.
- **PanGu-Coder2** (Shen et al. 2023, "PanGu-Coder2: Boosting Large Language Models for Code with
  Ranking Feedback", arXiv:2307.14936, §3 data): evolves CodeAlpaca with the same five methods but
  casts the model as a "Programming Contest Designer" who makes a contest problem harder.
- **WizardLM** (Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex
  Instructions", arXiv:2304.12244, §3.3 "Elimination Evolving"): an evolution fails when (1) the new
  instruction has no information gain over the old one — asked of the model with an equality
  prompt; (2) the response contains "sorry" and is short (under 80 words); (3) the response is only
  punctuation and stop words; (4) the new instruction copies words from the evolving prompt
  ("given prompt", "rewritten prompt", "#Rewritten Prompt#"). See ``eliminator.py``.
- **StarCoder2-Instruct** (BigCode 2024, "StarCoder2-Instruct: fully transparent and permissive
  self-alignment for code generation"; Wei et al., "SelfCodeAlign", arXiv:2410.24198): a seed
  function -> the programming *concepts* it uses -> a new *instruction* exercising them -> a
  *response* with a solution and self-written tests, kept only when the tests pass in a sandbox.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EvolMethod:
    """One in-depth evolution method."""

    name: str
    """Stable identifier stored in every output record."""
    text: str
    """The sentence inserted into the evolution prompt."""


METHODS: dict[str, EvolMethod] = {m.name: m for m in (
    EvolMethod("add_constraints",
               "Add one more constraint or requirement to the original task, using about ten extra words."),
    EvolMethod("rare_requirement",
               "Swap a common, widely used requirement of the task for a rarer and more specific one."),
    EvolMethod("more_reasoning",
               "If the task can be solved in just a few logical steps, change it so that solving it "
               "takes more steps of reasoning."),
    EvolMethod("erroneous_code",
               "Include a short piece of incorrect code as a reference, to add misdirection."),
    EvolMethod("complexity",
               "Ask for a stricter time or space complexity bound (use this sparingly, not for every task)."),
)}
"""WizardCoder's five code evolution methods (arXiv:2306.08568 §3.1), in the paper's order."""

WIZARDCODER_TEMPLATE = (
    "Make the following programming question a little more difficult.\n\n"
    "You may raise its difficulty with this method (others are allowed as well):\n"
    "{method}\n\n"
    "Reply with the new question only, without an answer.\n\n"
    "#Given Question#\n{instruction}\n\n"
    "#Rewritten Question#\n"
)
"""Evolution prompt after WizardCoder (arXiv:2306.08568 §3.1). Fields: {method}, {instruction}."""

PANGU_TEMPLATE = (
    "You are a Programming Contest Designer. Your job is to turn the contest problem below into a "
    "slightly harder one that is still self-contained and solvable.\n\n"
    "Make it harder with this method:\n"
    "{method}\n\n"
    "Reply with the new problem statement only, without a solution.\n\n"
    "#Given Question#\n{instruction}\n\n"
    "#Rewritten Question#\n"
)
"""Evolution prompt after PanGu-Coder2's "Programming Contest Designer" (arXiv:2307.14936).
Fields: {method}, {instruction}."""

EVOL_TEMPLATES = {"wizardcoder": WIZARDCODER_TEMPLATE, "pangu": PANGU_TEMPLATE}
"""name -> evolution prompt template."""

COPIED_PROMPT_WORDS = (
    "given prompt", "rewritten prompt", "#rewritten prompt#", "#given prompt#",
    "given question", "rewritten question", "#rewritten question#", "#given question#",
    "programming contest designer",
)
"""Elimination rule 4 (WizardLM §3.3): phrases of the evolution prompts themselves; an evolved
instruction that contains one (case-insensitive) leaked the prompt instead of rewriting the task."""

EQUALITY_TEMPLATE = (
    "Below are two instructions for an AI assistant. Decide whether they are equal, meaning both:\n"
    "1. they carry the same constraints and requirements, and\n"
    "2. they ask for the same depth and breadth of work.\n\n"
    "First instruction:\n{first}\n\n"
    "Second instruction:\n{second}\n\n"
    "Your judgement (answer with exactly Equal or Not Equal, and give no reason):"
)
"""Elimination rule 1 (WizardLM §3.3 and its appendix): the judge model is asked whether an evolution
gained information, with WizardLM's two criteria and its two allowed answers, "Equal" / "Not Equal"
(``eliminator.parse_judgement`` reads only those)."""


def evolution_prompt(template: str, method: str, instruction: str) -> str:
    """The evolution prompt for one instruction with one method."""
    return EVOL_TEMPLATES[template].format(method=METHODS[method].text, instruction=instruction)


def equality_prompt(first: str, second: str) -> str:
    return EQUALITY_TEMPLATE.format(first=first, second=second)


# --- self-instruct (StarCoder2-Instruct / SelfCodeAlign) ------------------------------------------

CONCEPTS_TEMPLATE = (
    "Read the Python code below and name the programming concepts it relies on (for example: "
    "recursion, dictionary lookup, string slicing, binary search).\n\n"
    "```python\n{snippet}\n```\n\n"
    "Answer with one line that starts with \"Concepts:\" followed by a comma-separated list."
)
"""Snippet -> concepts (the S->C step of StarCoder2-Instruct)."""

INSTRUCTION_TEMPLATE = (
    "Write one self-contained Python programming task that exercises these concepts: {concepts}.\n"
    "Task category: {category}. Difficulty: {difficulty}.\n"
    "The task must ask for a single Python function, name it, and be solvable with the standard "
    "library only (no network, no files).\n\n"
    "Answer with the task only, on lines after \"Instruction:\"."
)
"""Concepts -> instruction (the C->I step)."""

RESPONSE_TEMPLATE = (
    "Solve the following programming task. Use exactly this format:\n\n"
    "[Reasoning]\nA short explanation of the approach.\n\n"
    "[Implementation]\n```python\n# the complete solution\n```\n\n"
    "[Tests]\n```python\n# assert statements that check the solution\n```\n\n"
    "Task:\n{instruction}"
)
"""Instruction -> response with self-written tests (the I->R step)."""

TASK_CATEGORIES = ("function implementation", "data transformation", "algorithm", "string processing",
                   "math", "parsing")
"""Categories drawn (seeded) for the C->I step, for variety."""
DIFFICULTIES = ("easy", "medium", "hard")
"""Difficulties drawn (seeded) for the C->I step."""
