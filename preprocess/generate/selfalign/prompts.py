"""Few-shot prompts of the three generation steps, read from a few-shot file in the published format.

The prompts are byte for byte those of the published StarCoder2-Instruct pipeline
(bigcode-project/starcoder2-self-align at 0b19dbcd, ``src/star_align/self_ossinstruct.py``; ``SC2SA``
below names that file): the system prompt, ``k`` examples drawn with ``random.sample`` from the seeded
generator, then the new item's prefix, joined by blank lines, the whole text ``rstrip``-ped (SC2SA:417,
so the prompt ends at ``### Concepts`` with no newline), continued by a base model that stops at the
next ``## Example``::

    SYSTEM

    ## Example 1
    ### Snippet            (S->C)   ### Property     (C->I)   ### Instruction  (I->R)
    ...                             ...                       ...
    ### Concepts                    ### Instruction           ### Response
    ...

    ## Example k+1
    ### Snippet
    NEW SNIPPET

    ### Concepts

With ``--api chat`` the same text is one user message (no system message: StarCoder2-Instruct's chat
template, for one, rejects them). tests/selfalign/test_selfalign_prompts.py compares the rendered
prompts with bytes produced by the official functions themselves.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from codetron.errors import CodetronError

STEPS = ("S->C", "C->I", "I->R")
"""snippet -> concepts, concepts -> instruction, instruction -> response with tests."""

PREFIXES = {
    "S->C": "### Snippet\n{snippet}\n\n### Concepts\n",
    "C->I": "### Property\n{property}\n\n### Instruction\n",
    "I->R": "### Instruction\n{instruction}\n\n### Response\n",
}
"""What precedes the model's answer in each step, and how each example is laid out (SC2SA:151-159)."""

STOP = "## Example"
"""Where a completion model starts inventing the next example (the request's stop, SC2SA:428)."""

CATEGORIES = ("code generation (function implementation)",)
"""C->I task categories drawn from: the published pipeline's one (SC2SA:95-101; class and program
implementation are commented out there)."""

DIFFICULTIES = ("easy", "medium", "hard")
"""C->I difficulties drawn from (SC2SA:102)."""

FINISHED = ("stop", "eos_token")
"""Finish reasons of a choice the published pipeline keeps (SC2SA:452); anything else, ``length`` above
all, is an answer cut short."""

DEFAULT_FEWSHOT = Path(__file__).with_name("fewshot.txt")

_SYSTEM = re.compile(r"^### System: *(\S+)[ \t]*$", re.M)
_EXAMPLE = re.compile(r"^### Example \d+[ \t]*$", re.M)
_FIELDS = ("[Code]", "[Property]", "[Instruction]", "[Solution]", "[Response]")
_PROPERTY_KEYS = ("category", "language", "concepts", "difficulty")


@dataclass(frozen=True, slots=True)
class Property:
    """What the C->I step asks for."""

    category: str
    """One of ``CATEGORIES`` (examples may show others)."""
    language: str
    """The task's programming language."""
    concepts: tuple[str, ...]
    """The concepts the S->C step named."""
    difficulty: str
    """One of ``DIFFICULTIES`` (examples may show others)."""

    def text(self) -> str:
        """The four lines in the published order: category, language, concepts, difficulty (SC2SA:113-118)."""
        return (f"category: {self.category}\nlanguage: {self.language}\nconcepts: {', '.join(self.concepts)}\n"
                f"difficulty: {self.difficulty}")


def draw_property(rng: random.Random, concepts: tuple[str, ...], language: str) -> Property:
    """Category then difficulty, drawn as the published pipeline draws them (SC2SA:94-108)."""
    category = rng.choice(CATEGORIES)
    return Property(category, language, concepts, rng.choice(DIFFICULTIES))


@dataclass(frozen=True, slots=True)
class Example:
    snippet: str
    property: Property
    instruction: str
    solution: str | None
    """Reference code with tests; None when the file leaves [Solution] empty (not shown in I->R)."""
    response: str

    def answer(self, step: str) -> str:
        """The part of the example the model would have written in ``step``."""
        return {"S->C": ", ".join(self.property.concepts), "C->I": self.instruction, "I->R": self.response}[step]

    def fields(self) -> dict[str, str]:
        return {"snippet": self.snippet, "property": self.property.text(), "instruction": self.instruction}


@dataclass(frozen=True)
class FewShot:
    systems: dict[str, str]
    """step -> system prompt."""
    examples: tuple[Example, ...]
    sha: str
    """sha1 of the file's bytes (12 hex digits): part of the run's identity in the resume log."""
    path: str

    def pool(self, step: str) -> tuple[Example, ...]:
        """The examples a step may show: I->R only those with a [Solution] (SC2SA:194-199)."""
        return tuple(e for e in self.examples if e.solution is not None) if step == "I->R" else self.examples

    def prompt(self, step: str, k: int, rng: random.Random, **fields: str) -> str:
        """The whole prompt of one request: ``k`` examples drawn with ``rng``, then the new prefix."""
        pool = self.pool(step)
        if not 1 <= k <= len(pool):
            raise CodetronError(f"{self.path}: {k} few-shot examples asked for in {step}, the file has {len(pool)}")
        shots = rng.sample(pool, k)
        body = "\n\n".join(f"## Example {i}\n" + PREFIXES[step].format(**ex.fields()) + ex.answer(step)
                           for i, ex in enumerate(shots, 1))
        prefix = f"## Example {k + 1}\n" + PREFIXES[step].format(**fields)
        return f"{self.systems[step]}\n\n{body}\n\n{prefix}".rstrip()


def load_fewshot(path: str | Path | None = None) -> FewShot:
    """Parse a few-shot file in the published format (see the top of ``fewshot.txt``); errors name file:line."""
    path = Path(path) if path is not None else DEFAULT_FEWSHOT
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise CodetronError(f"{path}: cannot read few-shot file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CodetronError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    heads = list(_EXAMPLE.finditer(text))
    head_part = text[:heads[0].start()] if heads else text
    systems: dict[str, str] = {}
    marks = list(_SYSTEM.finditer(head_part))
    for m, nxt in zip(marks, marks[1:] + [None]):
        step, line = m.group(1), _line(text, m.start())
        if step not in STEPS:
            raise CodetronError(f"{path}:{line}: unknown step {step!r} in '### System:'; choose from "
                                f"{', '.join(STEPS)}")
        if step in systems:
            raise CodetronError(f"{path}:{line}: a second '### System: {step}'")
        systems[step] = head_part[m.end():nxt.start() if nxt else len(head_part)].strip()
    missing = [s for s in STEPS if not systems.get(s)]
    if missing:
        raise CodetronError(f"{path}: no system prompt for {', '.join(missing)} (a '### System: STEP' line "
                            f"and text under it)")
    if not heads:
        raise CodetronError(f"{path}: no examples ('### Example N' lines)")
    examples = [_example(path, _line(text, m.start()), text[m.end():nxt.start() if nxt else len(text)])
                for m, nxt in zip(heads, heads[1:] + [None])]
    return FewShot(systems, tuple(examples), hashlib.sha1(raw).hexdigest()[:12], str(path))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _example(path: Path, lineno: int, body: str) -> Example:
    """The five sections of one example, cut at their marker lines in order (SC2SA:264-277)."""
    body = body.strip()
    parts, at = [], 0
    for name in _FIELDS:
        m = re.compile(r"^" + re.escape(name) + r"\n", re.M).search(body, at)
        if m is None:
            raise CodetronError(f"{path}:{lineno}: example lacks a {name} line (sections: {' '.join(_FIELDS)}, "
                                f"in this order)")
        if parts:
            parts[-1] = body[parts[-1]:m.start()]
        elif body[:m.start()].strip():
            raise CodetronError(f"{path}:{lineno}: example text before [Code]")
        parts.append(m.end())
        at = m.end()
    parts[-1] = body[parts[-1]:]
    snippet, prop_text, instruction, solution, response = parts
    prop = parse_property(prop_text)
    if prop is None:
        raise CodetronError(f"{path}:{lineno}: [Property] needs the lines {', '.join(k + ':' for k in _PROPERTY_KEYS)}")
    return Example(snippet.rstrip(), prop, instruction.strip(), solution.strip() or None, response.strip())


def parse_property(text: str) -> Property | None:
    """The four ``key: value`` lines of a [Property] section, or None."""
    values = {}
    for line in text.strip().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in _PROPERTY_KEYS:
            values[key.strip()] = value.strip()
    if set(values) != set(_PROPERTY_KEYS):
        return None
    return Property(values["category"], values["language"], split_concepts(values["concepts"]), values["difficulty"])


def split_concepts(text: str) -> tuple[str, ...]:
    """A comma-separated concept list, each item stripped (SC2SA:241 and :293)."""
    return tuple(part.strip() for part in text.split(","))


def cut_answer(text: str) -> str:
    """The model's answer up to the next example (what a server honouring the ``## Example`` stop
    returns; some servers ignore ``stop``), stripped (SC2SA:291-296)."""
    return text.split(STOP, 1)[0].strip()
