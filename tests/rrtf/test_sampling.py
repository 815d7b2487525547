"""``rrtf sample`` on eval's public generation API: seeds per (task, temperature, sample), shards,
and resume files that are damaged in the middle rather than torn at the end."""
from __future__ import annotations

import json

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.generate.rrtf.cli import main as rrtf_main
from codetron.preprocess.generate.rrtf.problems import normalize_response, stop_sequences
from tests.rrtf.conftest import read_jsonl
from tests.rrtf.tiny_hf import build_tiny_student, write_demo_inputs

TEMPS = (0.0, 0.9)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    root = tmp_path_factory.mktemp("rrtf_sampling")
    inputs = write_demo_inputs(root, n_problems=3)
    build_tiny_student(root / "hf", inputs["texts"] * 4, vocab=320)
    return root, inputs


def _sample(root, inputs, out: str, *extra: str) -> list[dict]:
    args = ["sample", "--problems", str(inputs["problems"]), "--model", str(root / "hf"), "--teacher",
            str(inputs["teacher"]), "--temperatures", *map(str, TEMPS), "--n-samples", "2", "--max-new-tokens", "6",
            "--seed", "3", "--device", "cpu", "--out", str(root / out), "--no-progress", *extra]
    assert rrtf_main(args) == 0
    return read_jsonl(root / out)


def test_students_are_generator_samples_whatever_the_chunk_or_shard(student):
    from codetron.eval.generate import GenerationConfig, Generator

    root, inputs = student
    whole = _sample(root, inputs, "whole.jsonl", "--chunk", "3")
    shards = _sample(root, inputs, "s0.jsonl", "--chunk", "1", "--shard", "0/2") + \
        _sample(root, inputs, "s1.jsonl", "--chunk", "1", "--shard", "1/2")
    assert sorted(shards, key=lambda r: r["task_id"]) == whole

    problems = [json.loads(line) for line in inputs["problems"].read_text().splitlines()]
    generator = Generator(str(root / "hf"), device="cpu")
    for t_index, temp in enumerate(TEMPS):
        # the seed scheme a resumed or sharded run relies on: base seed + 1_000_003 per temperature
        cfg = GenerationConfig(model=str(root / "hf"), n_samples=2, temperature=temp, max_new_tokens=6,
                               seed=3 + 1_000_003 * t_index)
        raw = generator.generate_texts([r["prompt"] for r in whole], [r["task_id"] for r in whole], cfg,
                                       stop_sequences(problems[0]))
        for rec, problem, outs in zip(whole, problems, raw):
            got = [s["response"] for s in rec["students"] if s["temperature"] == temp]
            assert got == [normalize_response(problem, o) for o in outs]
            if temp == 0:
                assert got[0] == got[1]  # greedy: decoded once, repeated
    assert any(len({s["response"] for s in r["students"] if s["temperature"] == 0.9}) == 2 for r in whole)


def test_resume_refuses_a_damaged_line_instead_of_dropping_later_problems(student, tmp_path):
    root, inputs = student
    out = tmp_path / "teacher_only.jsonl"
    args = ["sample", "--problems", str(inputs["problems"]), "--teacher", str(inputs["teacher"]),
            "--out", str(out), "--no-progress"]
    assert rrtf_main(args) == 0
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    out.write_text(lines[0] + lines[1][:30] + "\n" + lines[2])  # a complete line, damaged in the middle
    with pytest.raises(CodetronError, match=r"teacher_only.jsonl:2: bad JSON .*remove the line or use a new --out"):
        rrtf_main(args)
    assert out.read_text().count("\n") == 3  # nothing cut: the third problem's record is still there
    # a line torn at the end (a crash mid-write) is cut and its problem sampled again
    out.write_text(lines[0] + lines[1] + lines[2][:25])
    assert rrtf_main(args) == 0
    assert out.read_text() == "".join(lines)
