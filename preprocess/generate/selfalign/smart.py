"""The published SMART sanitisation of StarCoder2-Instruct data (``codetron selfalign smart``).

The official pipeline's last data step (README:198, ``SMART=1 python src/star_align/sanitize_data.py``;
sanitize_data.py:55-58, :61-187 at commit 0b19dbcd) rewrites each pair whose response has the four tags
``[Reasoning] [Implementation] [Explanation] [Tests]``:

- the response becomes its sections, stripped, joined by a blank line, without the tags;
- the tests are dropped unless the instruction mentions "test"; explanation and reasoning are each
  dropped with probability 0.5;
- with probability 0.5 the instruction gets a few of the tests' asserts (1-5 when every test line is an
  ``assert``, else the whole tests block) as "Your code should pass the following ...", unless it
  mentions tests, asserts or "for example" already, or the block is over 5 lines;
- whole-line comments (and a blank line right before one) leave every fenced block of the response.

Randomness: one ``random.Random(seed)`` stream over the file in order, drawn exactly where the official
script draws from Python's global ``random`` after ``random.seed(0)`` (sanitize_data.py:18): two draws
(explanation, reasoning) per four-tag pair, then ``choice``+``sample`` when every test line is an
assert, then the augmentation draw when the asserts fit. With ``seed=0`` (the default) and the same
input, the output is the official one byte for byte (``tests/selfalign/test_selfalign_smart.py``).

Where Codetron differs (docs/recipes.md, "SMART sanitisation"): a pair not in the four-tag shape is
passed through unchanged and counted (the official script drops it; it draws nothing for it either, so
the stream stays aligned), and "unfinished" is the whole-word rule of ``response.INCOMPLETE_MARKERS``.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from codetron.errors import CodetronError
from codetron.preprocess.generate.selfalign.response import INCOMPLETE_MARKERS

TAGS = ("[Reasoning]", "[Implementation]", "[Explanation]", "[Tests]")
"""The four section tags of a published I->R response, in their required order."""
SHAPE_RULES = ("tags", "no_python_block", "tests_block", "tests_without_asserts")
"""Why a response is not in the four-tag shape (the pair is passed through), in checking order."""
FENCE = "```"


@dataclass(kw_only=True)
class SmartConfig:
    """One ``codetron selfalign smart`` pass."""

    seed: int = 0
    """Seed of the one random stream (the official script calls ``random.seed(0)``)."""
    drop_prob: float = 0.5
    """Probability that the explanation, and separately the reasoning, is dropped (official: 0.5)."""
    augment_prob: float = 0.5
    """Probability that asserts are appended to the instruction (official SMART: 0.5)."""
    max_assert_lines: int = 5
    """Longest tests excerpt appended to an instruction, in lines (official: 5)."""


@dataclass
class SmartReport:
    """What the pass did, for the stats file."""

    pairs: int = 0
    """Input pairs."""
    sanitised: int = 0
    """Four-tag pairs rewritten."""
    incomplete: int = 0
    """Four-tag pairs dropped as unfinished."""
    passed_through: Counter = field(default_factory=Counter)
    """Pairs not in the four-tag shape, written unchanged, per ``SHAPE_RULES`` reason."""
    dropped: Counter = field(default_factory=Counter)
    """Sections removed: tests, explanation, reasoning."""
    augmented: int = 0
    """Instructions that got asserts appended."""

    def stats(self) -> dict:
        return {"pairs": self.pairs, "sanitised": self.sanitised, "dropped_incomplete": self.incomplete,
                "passed_through": sum(self.passed_through.values()),
                "passed_through_reasons": {r: self.passed_through[r] for r in SHAPE_RULES},
                "sections_dropped": {s: self.dropped[s] for s in ("tests", "explanation", "reasoning")},
                "instructions_with_asserts": self.augmented}


def fenced_spans(text: str, lang: str | None = None) -> list[tuple[int, int]]:
    """(start, end) of each fenced block's body, scanned as the official ``find_codeblock_indices``
    (utils.py:150-192): a fence's info string runs to the end of its line and, when not empty, the body
    starts on the next line (else right after the backticks); the body ends at the next fence; a block
    with no closing fence ends the scan."""
    spans, pos = [], 0
    while FENCE in text[pos:]:
        after = text.find(FENCE, pos) + len(FENCE)
        eol = text.find("\n", after)
        eol = after if eol == -1 else eol
        info = text[after:eol].strip()
        body = eol + 1 if info else after
        end = text.find(FENCE, body)
        if end == -1:
            break
        if lang is None or info.lower() == lang.lower():
            spans.append((body, end))
        pos = end + len(FENCE)
    return spans


def python_blocks(text: str) -> list[str]:
    return [text[a:b].strip() for a, b in fenced_spans(text, "python")]


def strip_comment_lines(text: str) -> str:
    """Every fenced block without its whole-line ``#`` comments; a blank line directly before a comment
    line goes with it unless it opens the block (utils.py:195-242). Inline comments stay."""
    out, at = [], 0
    for a, b in fenced_spans(text):
        out.append(text[at:a])
        lines = text[a:b].splitlines(keepends=True)
        i = 0
        while i < len(lines):
            if 0 < i < len(lines) - 1 and not lines[i].strip() and lines[i + 1].lstrip().startswith("#"):
                i += 2
            elif lines[i].lstrip().startswith("#"):
                i += 1
            else:
                out.append(lines[i])
                i += 1
        at = b
    out.append(text[at:])
    return "".join(out)


@dataclass(slots=True)
class Sections:
    """A four-tag response's parts, each stripped."""

    reasoning: str
    """Text after [Reasoning]."""
    implementation: str
    """Text after [Implementation] (holds a ```python block)."""
    explanation: str
    """Text after [Explanation]."""
    tests: str
    """The [Tests] section cut after its block (and before a line starting with "/")."""
    tests_block: str
    """The body of its one ```python block."""


def split_sections(response: str) -> Sections | str:
    """The four sections (sanitize_data.py:61-118), or the ``SHAPE_RULES`` reason it has not got them."""
    if any(response.count(tag) != 1 for tag in TAGS):
        return "tags"
    at = [response.index(tag) for tag in TAGS]
    if at != sorted(at):
        return "tags"
    part = [response[at[i] + len(TAGS[i]):at[i + 1]].strip() for i in range(3)]
    if not python_blocks(part[1]):
        return "no_python_block"
    tests = response[at[3] + len(TAGS[3]):].strip()
    blocks = python_blocks(tests)
    if len(blocks) != 1 or tests.count(FENCE) != 2:
        return "tests_block"
    tests = tests[:tests.rindex(FENCE) + len(FENCE)]
    lines = tests.splitlines(keepends=True)
    # a line starting with "/" is markdown run-on the published sanitiser cuts at (sanitize_data.py:103-109)
    cut = next((i for i, line in enumerate(lines) if line.startswith("/")), None)
    if cut is not None:
        tests = "".join(lines[:cut]).strip()
    statements = [line for line in blocks[0].splitlines() if line[:1].isalpha()]
    if "assert" not in tests or all(line.startswith(("def", "class", "import", "from")) for line in statements):
        return "tests_without_asserts"
    return Sections(part[0], part[1], part[2], tests, blocks[0])


def smart_pair(instruction: str, response: str, rng: random.Random, cfg: SmartConfig,
               report: SmartReport) -> tuple[str, str] | None:
    """The pair after SMART (``None``: dropped as unfinished); unchanged when not in the four-tag shape."""
    sec = split_sections(response)
    if isinstance(sec, str):
        report.passed_through[sec] += 1
        return instruction, response
    mentions_tests = "test" in instruction.lower()
    drop = {"tests": not mentions_tests, "explanation": rng.random() < cfg.drop_prob,
            "reasoning": rng.random() < cfg.drop_prob}
    if INCOMPLETE_MARKERS.search(response):
        report.incomplete += 1
        return None
    contents = [sec.reasoning, sec.implementation, sec.explanation, sec.tests]
    for name in ("tests", "explanation", "reasoning"):
        if drop[name]:
            # by value, as published: of two equal sections the first goes (the text is the same)
            contents.remove(getattr(sec, name))
            report.dropped[name] += 1
    new_response = "\n\n".join(contents)

    lines = sec.tests_block.splitlines()
    if all(line.startswith("assert") for line in lines):
        picked = rng.sample(lines, k=min(rng.choice((1, 2, 3, 4, 5)), len(lines)))
        excerpt, term = "\n".join(picked), "assertions" if len(picked) > 1 else "assertion"
    else:
        excerpt, term = sec.tests_block, "test case"
    # the draw happens only once the excerpt qualifies; the instruction checks come after it (as published)
    if ("assert" in excerpt and len(excerpt.splitlines()) <= cfg.max_assert_lines
            and rng.random() < cfg.augment_prob and "assert" not in instruction
            and "for example" not in instruction.lower() and not mentions_tests):
        instruction = (f"{instruction}\n\nYour code should pass the following {term}:\n```python\n"
                       f"{excerpt.strip()}\n```")
        report.augmented += 1
    report.sanitised += 1
    return instruction, strip_comment_lines(new_response)


def smart_rows(rows, cfg: SmartConfig, path: str = "input") -> tuple[list[dict], SmartReport]:
    """SMART over ``(line number, row)`` pairs in file order. A row's response is its ``output`` field
    (``selfalign run``'s output) or else its ``response`` field (the official files); other fields are
    kept as they are."""
    rng, report, out = random.Random(cfg.seed), SmartReport(), []
    for lineno, row in rows:
        key = "output" if "output" in row else "response"
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get(key), str):
            raise CodetronError(f"{path}:{lineno}: needs string fields 'instruction' and 'output' (or 'response')")
        report.pairs += 1
        pair = smart_pair(row["instruction"], row[key], rng, cfg, report)
        if pair is not None:
            out.append(dict(row, instruction=pair[0], **{key: pair[1]}))
    return out, report
