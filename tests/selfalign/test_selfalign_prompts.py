"""The selfalign prompts are byte for byte those of the published StarCoder2-Instruct pipeline.

How the expected bytes were made: ``data/sc2sa_fewshot.txt`` is a few-shot file in the published format
(``### System: I->R|C->I|S->C``, 16 ``### Example N`` with [Code] [Property] [Instruction] [Solution]
[Response]), written for this test (no upstream text). A throwaway script outside the repository
loaded bigcode-project/starcoder2-self-align at commit 0b19dbcdccb4db0601a9a77ac0df53c7abcfb8cc,
``src/star_align/self_ossinstruct.py``, as it is (its heavy imports, datasets/transformers/tqdm, stubbed
out: the prompt code does not use them), parsed the file with its ``get_ossinstruct_fewshots`` and, for
each case, ran what its ``main`` runs per request: ``random.seed(seed)``, ``build_kwargs(mode, example)``,
``Fewshot.random_prompt(...)``, ``.rstrip()`` (lines 408-417). The prompts it returned are stored
verbatim in ``data/sc2sa_prompts.json``. The ``pipeline`` entry used the seeds that
``selfalign run`` derives for the seed id ``fixture.py:tally`` (S->C at base, C->I at base + 1, I->R at
base + 2) and the scripted model answers stored beside it, so the last test covers the pipeline's own
calls, not only the prompt function.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from codetron.preprocess.generate.backends import Completion
from codetron.preprocess.generate.seeds import Seed
from codetron.preprocess.generate.selfalign.pipeline import Generator, SelfAlignConfig
from codetron.preprocess.generate.selfalign.prompts import CATEGORIES, DIFFICULTIES, draw_property, load_fewshot

DATA = Path(__file__).with_name("data")
EXPECTED = json.loads((DATA / "sc2sa_prompts.json").read_text())
FEWSHOT = load_fewshot(DATA / "sc2sa_fewshot.txt")


def render(case: dict) -> str:
    rng = random.Random(case["seed"])
    if case["step"] == "S->C":
        return FEWSHOT.prompt("S->C", case["k"], rng, snippet=case["input"])
    if case["step"] == "C->I":
        prop = draw_property(rng, tuple(case["input"]), "Python")
        return FEWSHOT.prompt("C->I", case["k"], rng, property=prop.text())
    return FEWSHOT.prompt("I->R", case["k"], rng, instruction=case["input"])


@pytest.mark.parametrize("case", EXPECTED["cases"], ids=lambda c: f"{c['step']}-seed{c['seed']}-k{c['k']}")
def test_prompt_bytes_match_the_official_pipeline(case):
    assert render(case).encode() == case["prompt"].encode()


def test_the_fixture_exercises_what_differed():
    """The expected prompts hold the published details Codetron once got wrong, so the byte test above
    would catch them again."""
    prompts = [c["prompt"] for c in EXPECTED["cases"]]
    # no trailing newline after the last heading (the official code strips the prompt)
    assert {p.rsplit("\n", 1)[1] for p in prompts} == {"### Concepts", "### Instruction", "### Response"}
    # property lines in the published order, with its category and difficulty sets
    ci = [c["prompt"] for c in EXPECTED["cases"] if c["step"] == "C->I"]
    tails = [p.rsplit("### Property\n", 1)[1].split("\n")[:4] for p in ci]
    assert all([line.split(":")[0] for line in t] == ["category", "language", "concepts", "difficulty"] for t in tails)
    assert {t[0] for t in tails} == {f"category: {c}" for c in CATEGORIES}
    assert {t[3] for t in tails} <= {f"difficulty: {d}" for d in DIFFICULTIES} and len({t[3] for t in tails}) > 1
    # I->R never shows an example without a [Solution] (examples 5, 10, 15 of the fixture)
    ir = [c["prompt"] for c in EXPECTED["cases"] if c["step"] == "I->R"]
    assert not any(f"`add_{i}(x)` returning" in p.split("## Example 1\n", 1)[1] for p in ir for i in (5, 10, 15))
    # a wrong order or a kept newline changes the bytes
    case = next(c for c in EXPECTED["cases"] if c["step"] == "C->I")
    assert render(case) + "\n" != case["prompt"]


class Scripted:
    """A completions backend that records prompts and answers from a script."""

    def __init__(self, answers: list[str]):
        self.answers, self.prompts = list(answers), []

    def complete_choices(self, prompt, params):
        self.prompts.append(prompt)
        return [Completion(self.answers.pop(0), "stop")] * params.n


def test_pipeline_requests_match_the_official_pipeline():
    p = EXPECTED["pipeline"]
    backend = Scripted([p["concepts_answer"], p["instruction_answer"], "no answer"])
    cfg = SelfAlignConfig(fewshots=3, fewshots_response=1, responses=1)
    rec = Generator(backend, cfg, FEWSHOT).item(Seed(p["seed_id"], p["snippet"]))
    assert [q.encode() for q in backend.prompts] == [q.encode() for q in p["prompts"]]
    assert rec["concepts"] == ["dictionary comprehension", "list.count", "word frequency"]
    assert rec["category"] == CATEGORIES[0] and rec["difficulty"] in DIFFICULTIES


def test_truncated_answers_are_dropped_at_every_step():
    """Only choices that finished (``stop``/``eos_token``, SC2SA:452) go on; a cut one is counted."""
    p = EXPECTED["pipeline"]
    cfg = SelfAlignConfig(fewshots=3, fewshots_response=1, responses=2)
    seed = Seed(p["seed_id"], p["snippet"])
    good = "x\n\n```python\ndef tally(w):\n    return {}\n```\n\n[Tests]\n```python\nassert tally([]) == {}\n```"

    class Calls:
        """One list of (text, finish_reason) per request."""

        def __init__(self, *calls):
            self.calls = list(calls)

        def complete_choices(self, prompt, params):
            return [Completion(t, r) for t, r in self.calls.pop(0)]

    concepts, instruction = (p["concepts_answer"], "stop"), (p["instruction_answer"], "eos_token")
    rec = Generator(Calls([(p["concepts_answer"], "length")]), cfg, FEWSHOT).item(seed)
    assert (rec["rule"], rec["concepts"]) == ("concepts_truncated", [])
    rec = Generator(Calls([concepts], [(p["instruction_answer"], "length")]), cfg, FEWSHOT).item(seed)
    assert (rec["rule"], rec["instruction"]) == ("instruction_truncated", "")
    rec = Generator(Calls([concepts], [instruction], [(good, "length"), (good, "stop")]), cfg, FEWSHOT).item(seed)
    assert [e["rule"] for e in rec["responses"]] == ["truncated", None] and rec["status"] == "pending"
    assert "candidate" in rec["responses"][1] and "candidate" not in rec["responses"][0]
    rec = Generator(Calls([concepts], [instruction], [(good, "length"), (good, None)]), cfg, FEWSHOT).item(seed)
    assert [e["rule"] for e in rec["responses"]] == ["truncated"] * 2 and rec["rule"] == "no_passing_response"
