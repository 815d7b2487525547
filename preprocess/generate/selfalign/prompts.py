"""Few-shot prompts of the three generation steps, read from a data file (``fewshot.txt`` by default).

Each step shows the model a system prompt and ``k`` examples drawn (seeded) from the file, then the
new item's prefix, and the model continues it -- the published StarCoder2-Instruct pipeline prompts
the *base* model this way (completion API, stop at the next ``## Example``)::

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
    <- the model writes here

With ``--api chat`` the same text is one user message (no system message: StarCoder2-Instruct's chat
template, for one, rejects them).
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
"""What precedes the model's answer in each step (also how each example is laid out)."""

STOP = "## Example"
"""Where a completion model starts inventing the next example."""

DEFAULT_FEWSHOT = Path(__file__).with_name("fewshot.txt")

_FIELDS = ("[Snippet]", "[Property]", "[Instruction]", "[Response]")
_PROPERTY_KEYS = ("category", "language", "difficulty", "concepts")


@dataclass(frozen=True, slots=True)
class Property:
    """What the C->I step asks for."""

    category: str
    """function, class or program implementation."""
    language: str
    """The task's programming language."""
    difficulty: str
    """medium or hard (the published pipeline's two levels)."""
    concepts: tuple[str, ...]
    """The concepts the S->C step named."""

    def text(self) -> str:
        return (f"category: {self.category}\nlanguage: {self.language}\ndifficulty: {self.difficulty}\n"
                f"concepts: {', '.join(self.concepts)}")


@dataclass(frozen=True, slots=True)
class Example:
    snippet: str
    property: Property
    instruction: str
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

    def prompt(self, step: str, k: int, rng: random.Random, **fields: str) -> tuple[str, str]:
        """(system prompt, body) for one request: ``k`` examples drawn with ``rng``, then the new prefix."""
        if not 1 <= k <= len(self.examples):
            raise CodetronError(f"{self.path}: {k} few-shot examples asked for, the file has {len(self.examples)}")
        shots = rng.sample(self.examples, k)
        blocks = [f"## Example {i}\n" + PREFIXES[step].format(**ex.fields()) + ex.answer(step)
                  for i, ex in enumerate(shots, 1)]
        blocks.append(f"## Example {k + 1}\n" + PREFIXES[step].format(**fields))
        return self.systems[step], "\n\n".join(blocks)


def load_fewshot(path: str | Path | None = None) -> FewShot:
    """Parse a few-shot file (format described at the top of ``fewshot.txt``); errors name file:line."""
    path = Path(path) if path is not None else DEFAULT_FEWSHOT
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CodetronError(f"{path}: cannot read few-shot file: {exc.strerror}") from None
    lines = raw.decode("utf-8").splitlines()
    sections: list[tuple[int, str, list[str]]] = []
    for lineno, line in enumerate(lines, 1):
        if line.startswith("=== "):
            sections.append((lineno, line[4:].strip(), []))
        elif sections:
            sections[-1][2].append(line)
        elif line.strip() and not line.startswith("#"):
            raise CodetronError(f"{path}:{lineno}: text before the first '=== ' section")
    systems: dict[str, str] = {}
    examples: list[Example] = []
    for lineno, head, body in sections:
        if head.startswith("system "):
            step = head[len("system "):].strip()
            if step not in STEPS:
                raise CodetronError(f"{path}:{lineno}: unknown step {step!r}; choose from {', '.join(STEPS)}")
            systems[step] = "\n".join(body).strip()
        elif head == "example":
            examples.append(_example(path, lineno, body))
        else:
            raise CodetronError(f"{path}:{lineno}: unknown section {head!r} (system STEP or example)")
    missing = [s for s in STEPS if not systems.get(s)]
    if missing:
        raise CodetronError(f"{path}: no system prompt for {', '.join(missing)}")
    if not examples:
        raise CodetronError(f"{path}: no examples")
    return FewShot(systems, tuple(examples), hashlib.sha1(raw).hexdigest()[:12], str(path))


def _example(path: Path, lineno: int, body: list[str]) -> Example:
    parts: dict[str, list[str]] = {}
    current = None
    for line in body:
        if line.strip() in _FIELDS and line.strip() not in parts:
            current = line.strip()
            parts[current] = []
        elif current is None:
            if line.strip():
                raise CodetronError(f"{path}:{lineno}: example text before [Snippet]")
        else:
            parts[current].append(line)
    missing = [f for f in _FIELDS if f not in parts]
    if missing:
        raise CodetronError(f"{path}:{lineno}: example lacks {', '.join(missing)}")
    prop = parse_property("\n".join(parts["[Property]"]))
    if prop is None:
        raise CodetronError(f"{path}:{lineno}: [Property] needs the lines {', '.join(k + ':' for k in _PROPERTY_KEYS)}")
    return Example("\n".join(parts["[Snippet]"]).rstrip(), prop, "\n".join(parts["[Instruction]"]).strip(),
                   "\n".join(parts["[Response]"]).strip())


def parse_property(text: str) -> Property | None:
    values = {}
    for line in text.strip().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in _PROPERTY_KEYS:
            values[key.strip()] = value.strip()
    if set(values) != set(_PROPERTY_KEYS):
        return None
    return Property(values["category"], values["language"], values["difficulty"], split_concepts(values["concepts"]))


def split_concepts(text: str) -> tuple[str, ...]:
    return tuple(c for c in (part.strip(" \t.*`-") for part in text.split(",")) if c)


def cut_answer(text: str, step: str) -> str:
    """The model's answer up to where it starts the next example (servers that ignore ``stop``); the
    one-line answers of S->C and C->I also end at any markdown heading."""
    pattern = r"^## Example|^### Instruction\b" if step == "I->R" else r"^#{2,3} "
    m = re.search(pattern, text, re.M)
    return (text[:m.start()] if m else text).strip()
