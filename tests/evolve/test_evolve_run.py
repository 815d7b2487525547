"""The whole `codetron evolve` command against a real server on loopback: rounds, resume, faults, output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from codetron.errors import CodetronError
from codetron.preprocess.generate.evolve.cli import EXIT_INCOMPLETE, main
from codetron.preprocess.formats import wizardcoder_prompt


def evol_args(seeds_file, out: Path, url: str, *extra) -> list[str]:
    """The random tiny model almost never stops within 12 tokens and never answers the judge with
    Equal / Not Equal: keep truncated text and unparsed verdicts so that rounds have something to build
    on (the defaults, dropping both, are tested on their own)."""
    return ["evol", str(seeds_file), "-o", str(out), "--base-url", url, "--rounds", "2", "--max-tokens", "12",
            "--concurrency", "2", "--quiet", "--backoff", "0.01", "--backoff-max", "0.05", "--keep-truncated",
            "--judge-unparsed", "keep", *extra]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_requests(records: list[dict]) -> int:
    """Model calls implied by the log: evolve, + judge if it ran, + respond if the item got that far."""
    return sum(1 + ("judge" in r) + (r["output"] is not None) for r in records)


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, start_server, seed_records):
    server = start_server()
    root = tmp_path_factory.mktemp("evol-ref")
    seeds = root / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in seed_records))
    out = root / "evol.jsonl"
    assert main(evol_args(seeds, out, server.url)) == 0
    return {"seeds": seeds, "out": out, "text": out.read_text(), "server": server, "posts": server.posts,
            "records": read_jsonl(root / "evol.records.jsonl")[1:],
            "stats": json.loads((root / "evol.stats.json").read_text())}


def test_whole_run_against_server(ref_run):
    recs, stats = ref_run["records"], ref_run["stats"]
    assert sorted(r["key"] for r in recs) == sorted(f"{sid}:{r}" for sid in ("seeds.jsonl:1", "seeds.jsonl:2",
                                                                               "seeds.jsonl:3", "fib") for r in (1, 2))
    # the seed with an `input` field is evolved as instruction + input
    assert next(r for r in recs if r["key"] == "seeds.jsonl:2:1")["parent"] == "Reverse a string.\ns = 'abc'"
    # every request the client counted reached the server (+1: the GET /v1/models discovery)
    assert stats["requests"] == expected_requests(recs) + 1 == ref_run["posts"] + 1
    assert stats["complete"] and stats["retries"] == 0 and stats["backend"]["model"] == "tiny"
    assert stats["rounds"]["1"]["evolved"] == stats["rounds"]["2"]["evolved"] == 4
    assert sum(stats["eliminated"].values()) == sum(1 for r in recs if r["status"] == "dropped")
    rows = read_jsonl(ref_run["out"])
    kept = [r for r in recs if r["status"] == "kept"]
    # the seeds with an output are training data too (WizardCoder), written first as round 0
    assert stats["output"]["candidates"] == len(kept) + 3
    assert len(rows) == stats["output"]["written"] == len(kept) + 3 - stats["output"]["exact_duplicate"] \
        - stats["output"]["near_duplicate"] - stats["output"]["contaminated"]
    assert [r["source"] for r in rows[:3]] == ["seed"] * 3 and {r["round"] for r in rows[:3]} == {0}
    assert any(r["source"] == "evol-instruct" for r in rows)
    for row in rows[3:]:
        assert set(row) >= {"instruction", "input", "output", "source", "round", "method"}
        assert row["source"] == "evol-instruct" and row["output"]


def test_local_backend_gives_the_same_data(ref_run, tmp_path, tiny_model_dir):
    out = tmp_path / "local.jsonl"
    args = evol_args(ref_run["seeds"], out, "x")
    i = args.index("--base-url")
    args[i:i + 2] = ["--local-model", str(tiny_model_dir), "--device", "cpu"]
    assert main(args) == 0
    assert out.read_text() == ref_run["text"]


def test_budget_stop_then_resume_equals_uninterrupted(ref_run, tmp_path):
    out = tmp_path / "evol.jsonl"
    args = evol_args(ref_run["seeds"], out, ref_run["server"].url)
    assert main(args + ["--max-requests", "8"]) == EXIT_INCOMPLETE
    assert not out.exists()  # no partial training file
    partial = read_jsonl(tmp_path / "evol.records.jsonl")[1:]
    assert 0 < len(partial) < len(ref_run["records"])
    assert json.loads((tmp_path / "evol.stats.json").read_text())["complete"] is False
    # a torn last line (crash mid-write) is cut off and regenerated
    with open(tmp_path / "evol.records.jsonl", "a") as fh:
        fh.write('{"key": "fib:2", "seed_id": "fi')
    posts = ref_run["server"].posts
    assert main(args) == 0
    assert out.read_text() == ref_run["text"]
    # only the missing items were generated
    done = read_jsonl(tmp_path / "evol.records.jsonl")[1:]
    assert ref_run["server"].posts - posts == expected_requests(done[len(partial):])
    assert sorted(map(json.dumps, done)) == sorted(map(json.dumps, ref_run["records"]))


def test_more_rounds_resume_from_fewer(ref_run, tmp_path):
    out = tmp_path / "evol.jsonl"
    args = evol_args(ref_run["seeds"], out, ref_run["server"].url)
    one = args[:]
    one[one.index("--rounds") + 1] = "1"
    assert main(one) == 0
    round1 = read_jsonl(out)
    assert {r["round"] for r in round1} == {0, 1}
    posts = ref_run["server"].posts
    assert main(args) == 0
    new = [r for r in read_jsonl(tmp_path / "evol.records.jsonl")[1:] if r["round"] == 2]
    assert len(new) == 4 and ref_run["server"].posts - posts == expected_requests(new)
    assert out.read_text() == ref_run["text"]


def test_changed_settings_refuse_to_resume(ref_run, tmp_path):
    out = tmp_path / "evol.jsonl"
    shutil.copy(ref_run["out"].with_name("evol.records.jsonl"), tmp_path / "evol.records.jsonl")
    with pytest.raises(CodetronError, match="template='wizardcoder', this run has template='pangu'"):
        main(evol_args(ref_run["seeds"], out, ref_run["server"].url, "--template", "pangu"))
    # --restart starts over with the new template
    posts = ref_run["server"].posts
    assert main(evol_args(ref_run["seeds"], out, ref_run["server"].url, "--template", "pangu", "--rounds", "1",
                          "--restart")) == 0
    assert ref_run["server"].posts > posts
    assert {r["template"] for r in read_jsonl(out) if r["source"] != "seed"} == {"pangu"}


def test_flaky_server_run_recovers(ref_run, start_server, tmp_path):
    flaky = start_server(faults=["500", "drop", "429", "500", "drop"])
    out = tmp_path / "evol.jsonl"
    assert main(evol_args(ref_run["seeds"], out, flaky.url)) == 0
    assert out.read_text() == ref_run["text"]
    stats = json.loads((tmp_path / "evol.stats.json").read_text())
    assert stats["retries"] == flaky.injected == 5
    assert flaky.posts == ref_run["posts"] + 5


def test_server_down_stops_cleanly(ref_run, start_server, tmp_path):
    dead = start_server(faults=["500"] * 100)
    out = tmp_path / "evol.jsonl"
    rc = main(evol_args(ref_run["seeds"], out, dead.url, "--max-retries", "1", "--max-failures", "1"))
    assert rc == EXIT_INCOMPLETE and not out.exists()
    # bounded: at most (failures allowed + in-flight) items x 2 attempts
    assert dead.posts <= (1 + 1 + 2 * 2) * 2


def test_output_feeds_preprocess(ref_run, tmp_path, tiny_model_dir):
    from codetron.preprocess.cli import main as preprocess_main

    rc = preprocess_main(["instruct", str(ref_run["out"]), "-o", str(tmp_path / "sft"), "--tokenizer",
                          str(tiny_model_dir / "tokenizer.json"), "--workers", "0", "--dedup", "none",
                          "--no-decontaminate", "--quiet"])
    assert rc == 0
    summary = json.loads((tmp_path / "sft.summary.json").read_text())
    rows = read_jsonl(ref_run["out"])
    # sft layout: every pair is one document of two sequences (prompt, response + EOD)
    assert summary["docs_kept"] == len(rows) and summary["sequences"] == 2 * len(rows)
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    prompt = tok.encode(wizardcoder_prompt(rows[0]["instruction"]), add_special_tokens=False).ids
    response = tok.encode(rows[0]["output"], add_special_tokens=False).ids
    tokens = np.fromfile(tmp_path / "sft.bin", dtype=np.uint16)
    assert tokens[:len(prompt) + len(response)].tolist() == prompt + response


def test_seed_errors_name_the_line(tmp_path, ref_run):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"output": "no instruction"}\n')
    with pytest.raises(CodetronError, match=r"bad.jsonl:2: no non-empty 'instruction' field"):
        main(evol_args(bad, tmp_path / "o.jsonl", ref_run["server"].url))


def test_seeds_are_written_by_default(ref_run, tmp_path):
    out = tmp_path / "evol.jsonl"
    assert main(evol_args(ref_run["seeds"], out, ref_run["server"].url, "--rounds", "1")) == 0
    rows = read_jsonl(out)
    seeds = [r for r in rows if r["source"] == "seed"]
    # seeds with an output come first (the one without an output is not training data)
    assert [r["seed_id"] for r in seeds] == ["seeds.jsonl:1", "seeds.jsonl:2", "fib"]
    assert rows[:3] == seeds and seeds[1]["instruction"] == "Reverse a string.\ns = 'abc'"
    assert main(evol_args(ref_run["seeds"], out, ref_run["server"].url, "--rounds", "1", "--no-seeds")) == 0
    assert read_jsonl(out) == rows[3:]


def test_output_decontaminates_and_dedups(tmp_path):
    from codetron.preprocess.generate.output import OutputConfig, write_output
    from codetron.preprocess.quality import load_humaneval

    he = load_humaneval()[0]
    rows = [
        {"instruction": "Sort a list of integers in descending order using merge sort.", "input": "", "output": "a"},
        {"instruction": "Complete this function.\n" + he["prompt"], "input": "", "output": "pass"},
        {"instruction": "Write code.", "input": "", "output": he["canonical_solution"] * 2},
        {"instruction": "Sort a list of integers  in descending order using merge sort.", "input": "", "output": "b"},
        {"instruction": "Sort a list of integers in descending order using merge sort, please.", "input": "",
         "output": "c"},
        {"instruction": "Parse an ISO-8601 date string into a datetime object without third-party packages.",
         "input": "", "output": "d"},
    ]
    out = tmp_path / "o.jsonl"
    counts = write_output(rows, str(out), OutputConfig(dedup="near", near_threshold=0.5))
    assert [r["output"] for r in read_jsonl(out)] == ["a", "d"]
    assert counts == {"candidates": 6, "written": 2, "contaminated": 1 + int(len(he["canonical_solution"].split()) >= 7),
                      "exact_duplicate": 1, "near_duplicate": 1} or counts["contaminated"] == 2


def _default_args(seeds, out, url, *extra):
    """evol_args without the flags that keep truncated text and unparsed judge answers."""
    args = evol_args(seeds, out, url, *extra)
    args.remove("--keep-truncated")
    i = args.index("--judge-unparsed")
    del args[i:i + 2]
    return args


def test_defaults_drop_truncated_and_unparsed_and_say_so(ref_run, tmp_path, capsys):
    """A random model cut at 12 tokens that cannot answer "Equal"/"Not Equal" yields no evolved data,
    and the final line says why, rule by rule."""
    out = tmp_path / "evol.jsonl"
    assert main(_default_args(ref_run["seeds"], out, ref_run["server"].url)) == 0
    stats = json.loads((tmp_path / "evol.stats.json").read_text())
    recs = read_jsonl(tmp_path / "evol.records.jsonl")[1:]
    rules = {r["rule"] for r in recs}
    assert all(r["status"] == "dropped" for r in recs)
    assert "truncated_instruction" in rules and rules <= {"truncated_instruction", "judge_unparsed",
                                                          "truncated_response", "sorry_short", "stopwords_only",
                                                          "empty_instruction"}
    # the same evolutions were kept by the reference run, which keeps truncated text
    same = {r["key"]: r["instruction"] for r in ref_run["records"] if r["round"] == 1}
    assert {r["key"]: r["instruction"] for r in recs if r["round"] == 1} == same
    assert [r["source"] for r in read_jsonl(out)] == ["seed"] * 3
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"truncated_instruction {stats['eliminated']['truncated_instruction']}" in line
    assert f"{stats['judge']['unparsed']} unparsed" in line and "eliminated:" in line


def test_judge_on_its_own_server(ref_run, start_server, tmp_path):
    judge = start_server()
    out = tmp_path / "evol.jsonl"
    gen_before = ref_run["server"].posts
    assert main(evol_args(ref_run["seeds"], out, ref_run["server"].url, "--judge-base-url", judge.url)) == 0
    recs = read_jsonl(tmp_path / "evol.records.jsonl")[1:]
    judged = sum("judge" in r for r in recs)
    assert judged > 0 and judge.posts == judged
    # the generator server saw only evolution and response requests
    assert ref_run["server"].posts - gen_before == sum(1 + (r["output"] is not None) for r in recs)
    stats = json.loads((tmp_path / "evol.stats.json").read_text())
    assert stats["judge_backend"] == {"backend": "openai", "base_url": judge.url, "model": "tiny", "api": "chat"}
    assert stats["requests"] == expected_requests(recs) + 2  # + one /v1/models discovery per server
    # same greedy judge, same seeds: the data equals the single-server run
    assert out.read_text() == ref_run["text"]


def test_permanent_500_names_the_http_error(ref_run, start_server, tmp_path, capsys):
    dead = start_server(faults=["500"] * 100)
    out = tmp_path / "evol.jsonl"
    rc = main(evol_args(ref_run["seeds"], out, dead.url, "--max-retries", "20", "--max-requests", "6"))
    assert rc == EXIT_INCOMPLETE and not out.exists()
    err = capsys.readouterr().err
    assert "request budget spent; last error: " in err and "HTTP 500: injected failure" in err
    assert "HTTP 500: injected failure" in json.loads((tmp_path / "evol.stats.json").read_text())["last_error"]
    rc = main(evol_args(ref_run["seeds"], tmp_path / "b.jsonl", dead.url, "--max-retries", "1",
                        "--max-failures", "0"))
    assert rc == EXIT_INCOMPLETE and "HTTP 500: injected failure" in capsys.readouterr().err


def test_on_error_skip_counts_bad_seed_lines(ref_run, tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Reverse a string.", "output": "s[::-1]"}\n'
                     '{"instruction": "broken json\n'
                     '{"output": "no instruction"}\n'
                     '{"id": "a", "instruction": "Add two numbers.", "output": "a + b"}\n'
                     '{"id": "a", "instruction": "Duplicate id.", "output": "x"}\n')
    with pytest.raises(CodetronError, match=r"seeds.jsonl:2: "):
        main(evol_args(seeds, tmp_path / "o.jsonl", ref_run["server"].url))
    out = tmp_path / "ok.jsonl"
    assert main(evol_args(seeds, out, ref_run["server"].url, "--on-error", "skip", "--rounds", "1")) == 0
    stats = json.loads((tmp_path / "ok.stats.json").read_text())
    assert stats["seeds"] == 2 and stats["seed_errors"]["skipped"] == 3
    assert [e.split(":")[1] for e in stats["seed_errors"]["first"]] == ["2", "3", "5"]
    err = capsys.readouterr().err
    assert "skipped 3 bad seed lines (first: " in err and "3 bad seed lines skipped" in err.splitlines()[-1]
    assert [r["seed_id"] for r in read_jsonl(out) if r["source"] == "seed"] == ["seeds.jsonl:1", "a"]
