"""`codetron selfalign run` against a scripted OpenAI-compatible server: funnel, drop reasons, resume, output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codetron.errors import CodetronError
from codetron.preprocess.generate.selfalign.cli import EXIT_INCOMPLETE, main

from tests.selfalign.conftest import DOUBLE, DOUBLE_FOR, DOUBLE_TASK, DOUBLE_TESTS, answer


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_records(path: Path) -> list[dict]:
    """A records log as a run reads it back: one record per key, the later line winning (a seed is
    logged when generated, then again once executed)."""
    return list({r["key"]: r for r in read_jsonl(path)[1:]}.values())


def run_args(seeds: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["run", str(seeds), "-o", str(out), "--base-url", url, "--responses", "11", "--concurrency", "2",
            "--exec-timeout", "1", "--max-tokens", "256", "--quiet", "--backoff", "0.01", "--backoff-max", "0.05",
            *extra]


@pytest.fixture(scope="module")
def seeds_file(module_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seeds") / "seeds.jsonl"
    assert main(["seeds", str(module_corpus / "good.py"), "-o", str(out), "--typecheck", "off", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def ref(seeds_file, tmp_path_factory, fake_server):
    """One uninterrupted run: the reference the other runs must reproduce."""
    server = fake_server()
    out = tmp_path_factory.mktemp("ref") / "sa.jsonl"
    assert main(run_args(seeds_file, out, server.url)) == 0
    return {"out": out, "text": out.read_text(), "server": server, "posts": server.posts,
            "records": log_records(out.with_name("sa.records.jsonl")),
            "stats": json.loads(out.with_name("sa.stats.json").read_text())}


def test_funnel_and_every_drop_reason(ref):
    stats, recs = ref["stats"], {r["seed_id"]: r for r in ref["records"]}
    # 7 seeds; mean gets no concepts, clamp an empty instruction, shout one about "the code snippet";
    # scale, area, greet, tally reach I->R with 11 responses each; scale's are one per response rule
    # (one cut at max_tokens) and two that pass; area's 11 fail, greet's and tally's 11 pass
    assert stats["stages"] == {"seeds": 7, "concepts": 6, "instructions": 4, "responses": 44, "finished": 43,
                               "parsed": 40, "executed": 39, "passed": 26, "selected": 3}
    assert stats["dropped_items"] == {"concepts_truncated": 0, "concepts_unparsed": 1, "instruction_truncated": 0,
                                      "instruction_empty": 1, "instruction_mentions_snippet": 1,
                                      "no_passing_response": 1}
    assert stats["dropped_responses"] == {"truncated": 1, "response_unparsed": 1, "no_solution": 1, "incomplete": 1,
                                          "vacuous_tests": 1, "tests_failed": 12, "tests_timeout": 1,
                                          "tests_pass_wrong_impl": 2}
    assert recs["good.py:mean"]["rule"] == "concepts_unparsed"
    assert recs["good.py:clamp"]["rule"] == "instruction_empty"
    assert recs["good.py:shout"]["rule"] == "instruction_mentions_snippet"
    assert recs["good.py:area"]["rule"] == "no_passing_response"
    scale = recs["good.py:scale"]
    assert [e["rule"] for e in scale["responses"]] == ["response_unparsed", "no_solution", "incomplete",
                                                       "vacuous_tests", "tests_failed", "tests_timeout", None, None,
                                                       "truncated", "tests_pass_wrong_impl", "tests_pass_wrong_impl"]
    assert scale["responses"][3]["detail"] == "no assert reaches a function or class of the solution"
    assert scale["responses"][8]["detail"] == "finish_reason length"
    # `callable(f)` and `f is not None` hold for both stand-ins; `f(2) == 4 or True` for the one returning None
    assert [e["detail"] for e in scale["responses"][9:]] == ["also passes returns_none, raises",
                                                             "also passes returns_none"]
    assert [e["status"] for e in scale["responses"][9:]] == ["passed", "passed"]
    # one request per step per seed that got there, plus the model discovery (GET /v1/models)
    assert ref["server"].steps == {"S->C": 7, "C->I": 6, "I->R": 4}
    assert stats["requests"] == ref["posts"] + 1 == 18 and stats["retries"] == 0 and stats["complete"]
    # I->R asks for all responses in one request, with the published stop and the run's seeds
    body = next(b for b in ref["server"].bodies if b["n"] == 11)
    assert body["stop"] == ["## Example"] and body["temperature"] == 0.7 and body["model"] == "scripted"


def test_selection_and_output(ref):
    stats, recs = ref["stats"], {r["seed_id"]: r for r in ref["records"]}
    scale = recs["good.py:scale"]
    assert scale["status"] == "kept" and scale["selected"] in (6, 7)
    solution = DOUBLE if scale["selected"] == 6 else DOUBLE_FOR
    prose = "A list comprehension doubles each item." if scale["selected"] == 6 else "A loop appends each doubled item."
    full = answer(solution, DOUBLE_TESTS, prose)
    # sanitised: the response ends with its tests block; the chatter after it is cut
    assert scale["output"] == full[:full.index("The tests cover")].rstrip()
    assert scale["tests"].strip() == DOUBLE_TESTS
    # greet's instruction near-duplicates scale's, tally's quotes HumanEval/0: one pair is left
    assert stats["output"] == {"candidates": 3, "written": 1, "contaminated": 1, "exact_duplicate": 0,
                               "near_duplicate": 1}
    rows = read_jsonl(ref["out"])
    assert len(rows) == 1
    row = rows[0]
    assert row["instruction"] == scale["instruction"] and row["output"] == scale["output"] and row["input"] == ""
    assert row["source"] == "selfalign" and row["seed_id"] == "good.py:scale"
    assert row["concepts"] == ["scale logic", "return values", "arithmetic"]
    # the published pipeline's one category and three difficulties
    assert row["category"] == "code generation (function implementation)"
    assert row["difficulty"] in ("easy", "medium", "hard")


def test_budget_stop_torn_line_then_resume(ref, seeds_file, tmp_path, fake_server):
    server = fake_server()
    out = tmp_path / "sa.jsonl"
    args = run_args(seeds_file, out, server.url)
    assert main(args + ["--max-requests", "7"]) == EXIT_INCOMPLETE
    assert not out.exists()
    stats = json.loads((tmp_path / "sa.stats.json").read_text())
    assert stats["complete"] is False and stats["requests"] == 7
    assert server.posts == 6  # + the GET discovery: never more requests than the budget
    partial = log_records(tmp_path / "sa.records.jsonl")
    assert all(r["status"] != "pending" for r in partial)  # a budget stop still executes what it generated
    assert 0 < len(partial) < 7
    with open(tmp_path / "sa.records.jsonl", "a") as fh:  # a crash mid-write
        fh.write('{"key": "good.py:tally", "seed_id": "good.py:ta')
    before = server.posts
    assert main(args) == 0
    assert out.read_text() == ref["text"]
    done = log_records(tmp_path / "sa.records.jsonl")
    assert sorted(map(json.dumps, done)) == sorted(map(json.dumps, ref["records"]))
    # only the missing seeds were asked for: one request per step each reached
    new = [r for r in done if r["key"] not in {p["key"] for p in partial}]
    expected = sum(1 + bool(r["concepts"]) + bool(r["responses"]) for r in new)
    assert server.posts - before == expected
    # a complete log: running again asks nothing
    before = server.posts
    assert main(args) == 0 and server.posts == before


@pytest.mark.slow
def test_kill_mid_run_then_resume_loses_and_repeats_nothing(ref, seeds_file, tmp_path, fake_server):
    """SIGKILL while seeds are still being generated: every seed on disk at the kill (generated, not yet
    executed, among them) is never asked for again, the rest are, and the output equals an unbroken run's."""
    server = fake_server(delay=0.2)
    out = tmp_path / "sa.jsonl"
    args = run_args(seeds_file, out, server.url, "--concurrency", "1")
    log = tmp_path / "sa.records.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "codetron", "selfalign", *args], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 3):
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    on_disk = log_records(log)
    assert 2 <= len(on_disk) < 7, "the kill came too late to test anything"
    # seeds are logged as soon as generated; the first (scale) waits for its chunk's execution
    assert on_disk[0]["key"] == "good.py:scale" and on_disk[0]["status"] == "pending"
    before = server.posts
    assert main(args) == 0
    assert out.read_text() == ref["text"]
    done = log_records(log)
    assert sorted(map(json.dumps, done)) == sorted(map(json.dumps, ref["records"]))
    assert len(done) == 7 and all(r["status"] != "pending" for r in done)
    # no request for any seed that was on disk; one per step reached for every other seed
    kept = {r["key"] for r in on_disk}
    expected = sum(1 + bool(r["concepts"]) + bool(r["responses"]) for r in ref["records"] if r["key"] not in kept)
    assert server.posts - before == expected


def test_changed_settings_refuse_to_resume(ref, seeds_file, tmp_path, fake_server):
    server = fake_server()
    out = tmp_path / "sa.jsonl"
    shutil.copy(ref["out"].with_name("sa.records.jsonl"), tmp_path / "sa.records.jsonl")
    with pytest.raises(CodetronError, match="responses=11, this run has responses=4"):
        main(run_args(seeds_file, out, server.url) + ["--responses", "4"])
    assert server.posts == 0
    assert main(run_args(seeds_file, out, server.url) + ["--responses", "4", "--restart"]) == 0
    assert json.loads((tmp_path / "sa.stats.json").read_text())["stages"]["responses"] == 16


def test_flaky_server_and_chat_api_give_the_same_data(ref, seeds_file, tmp_path, fake_server):
    server = fake_server(faults=["503", "503", "503"])
    out = tmp_path / "sa.jsonl"
    assert main(run_args(seeds_file, out, server.url, "--api", "chat")) == 0
    assert out.read_text() == ref["text"]
    stats = json.loads((tmp_path / "sa.stats.json").read_text())
    assert stats["retries"] == 3 and server.posts == ref["posts"] + 3
    # chat: system prompt and few-shot text in one user message (StarCoder2-Instruct's template rejects system)
    first = next(b for b in server.bodies if b["n"] == 11)
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert first["messages"][0]["content"].startswith("You are a careful coding assistant.")


def test_bad_input_fails_before_any_request(seeds_file, tmp_path, fake_server):
    server = fake_server()
    out = tmp_path / "sa.jsonl"
    with pytest.raises(CodetronError, match="--fewshots 9: must be between 1 and 4"):
        main(run_args(seeds_file, out, server.url, "--fewshots", "9"))
    bad = tmp_path / "fewshot.txt"
    bad.write_text("### System: I->R\nx\n\n### System: C->I\ny\n\n### System: S->C\nz\n\n### Example 1\n[Code]\ncode\n"
                   "\n[Property]\ncategory: a\n\n[Instruction]\ni\n\n[Solution]\n\n[Response]\nr\n")
    with pytest.raises(CodetronError, match=r"fewshot.txt:10: \[Property\] needs the lines"):
        main(run_args(seeds_file, out, server.url, "--fewshot", str(bad)))
    with pytest.raises(CodetronError, match="--benchmark .*: no benchmark text"):
        empty = tmp_path / "b.jsonl"
        empty.write_text('{"task_id": 1}\n')
        main(run_args(seeds_file, out, server.url, "--benchmark", str(empty)))
    assert server.posts == 0 and not (tmp_path / "sa.records.jsonl").exists()


def test_benchmark_file_decontaminates_the_output(seeds_file, tmp_path, fake_server):
    """An MBPP-shaped benchmark given with --benchmark removes pairs that HumanEval alone would keep."""
    server = fake_server()
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps({"task_id": 7, "text": DOUBLE_TASK.format(name="double_list"), "code": "pass"}) + "\n")
    out = tmp_path / "sa.jsonl"
    assert main(run_args(seeds_file, out, server.url, "--limit", "1")) == 0
    assert json.loads((tmp_path / "sa.stats.json").read_text())["output"]["written"] == 1
    posts = server.posts
    # the log is complete: the second run only filters again, with the benchmark added
    assert main(run_args(seeds_file, out, server.url, "--limit", "1", "--benchmark", str(mbpp))) == 0
    assert server.posts == posts and out.read_text() == ""
    assert json.loads((tmp_path / "sa.stats.json").read_text())["output"]["contaminated"] == 1


def test_output_feeds_preprocess_with_starcoder2_template(ref, tmp_path, repo_root):
    from tokenizers import Tokenizer

    from codetron.preprocess.cli import main as preprocess_main
    from codetron.templates import starcoder2_instruct_prompt

    tok_path = repo_root / "data" / "tokenizer" / "tokenizer.json"
    rc = preprocess_main(["instruct", str(ref["out"]), "-o", str(tmp_path / "sft"), "--tokenizer", str(tok_path),
                          "--template", "starcoder2-instruct", "--workers", "0", "--dedup", "none",
                          "--no-decontaminate", "--quiet"])
    assert rc == 0
    row = read_jsonl(ref["out"])[0]
    tok = Tokenizer.from_file(str(tok_path))
    prompt = tok.encode(starcoder2_instruct_prompt(row["instruction"]), add_special_tokens=False).ids
    response = tok.encode(row["output"], add_special_tokens=False).ids
    dtype = np.uint16 if tok.get_vocab_size() < 65500 else np.int32
    tokens = np.fromfile(tmp_path / "sft.bin", dtype=dtype)
    # the prompt starts with BOS, StarCoder2's <|endoftext|> (starcoder2-self-align train.py:51, add_bos)
    bos = tok.token_to_id("<|endoftext|>")
    assert tokens[:1 + len(prompt) + len(response) + 1].tolist() == [bos] + prompt + response + [bos]
    assert starcoder2_instruct_prompt("X").endswith("\n\n### Instruction\nX\n\n### Response\n")
