"""`codetron selfalign seeds`: documented functions from raw code, every drop rule, decontamination, pyright."""
from __future__ import annotations

import ast
import json
import shutil

import pytest

from codetron.errors import CodetronError, ConfigError
from codetron.preprocess.generate.selfalign.cli import main
from codetron.preprocess.generate.selfalign.seeds import SeedConfig, gather_seeds

from tests.selfalign.conftest import MBPP_LIKE


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seeds_cmd(corpus, out, *extra):
    return ["seeds", str(corpus), "-o", str(out), "--max-lines", "25", "--typecheck", "off", "--quiet", *extra]


def test_every_rule_drops_what_it_names(corpus, tmp_path):
    out = tmp_path / "seeds.jsonl"
    assert main(seeds_cmd(corpus, out)) == 0
    seeds = read_jsonl(out)
    stats = json.loads((tmp_path / "seeds.stats.json").read_text())
    # the seven good functions survive, in file order; nothing else does
    assert [s["name"] for s in seeds] == ["scale", "mean", "clamp", "shout", "area", "greet", "tally",
                                          "weighted_total", "private_helper"]
    assert stats["dropped"] == {"parse_error": 1, "no_arguments": 1, "no_return": 1, "placeholder": 2,
                                "too_long": 1, "contaminated": 1, "exact_duplicate": 1, "near_duplicate": 1,
                                "typecheck": 0}
    # 5 files; documented functions: 7 good + 5 rule cases + 4 in dups.py + HumanEval/0 (undocumented skipped)
    assert stats["files"] == 5 and stats["functions"] == 17 and stats["written"] == stats["seeds"] == 9
    by_name = {s["name"]: s for s in seeds}
    assert by_name["scale"]["id"] == "good.py:scale" and by_name["private_helper"]["source"] == "pkg/dups.py"
    # a seed carries the imports it uses (and only those), so it parses and runs on its own
    assert by_name["mean"]["seed"].startswith("import math\n\n\ndef mean(values):")
    assert by_name["tally"]["seed"].startswith("from collections import Counter\n\n\ndef tally(words):")
    assert by_name["scale"]["seed"].startswith("def scale(")
    for s in seeds:
        ast.parse(s["seed"])


def test_mbpp_benchmark_file_decontaminates(corpus, tmp_path):
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text("".join(json.dumps(r) + "\n" for r in MBPP_LIKE))
    out = tmp_path / "seeds.jsonl"
    assert main(seeds_cmd(corpus, out, "--benchmark", str(mbpp))) == 0
    assert "private_helper" not in [s["name"] for s in read_jsonl(out)]
    assert json.loads((tmp_path / "seeds.stats.json").read_text())["dropped"]["contaminated"] == 2
    # without decontamination HumanEval/0 itself becomes a seed
    assert main(seeds_cmd(corpus, out, "--no-decontaminate")) == 0
    assert "has_close_elements" in [s["name"] for s in read_jsonl(out)]


def test_records_input_and_stdlib(tmp_path):
    from tests.selfalign.conftest import GOOD

    recs = tmp_path / "stack.jsonl"
    recs.write_text(json.dumps({"content": GOOD, "path": "repo/good.py"}) + "\n"
                    + json.dumps({"content": "def x(:"}) + "\n")
    report = gather_seeds([str(recs)], SeedConfig(typecheck="off"), progress=False)
    assert [s["id"] for s in report.seeds][:2] == ["repo/good.py:scale", "repo/good.py:mean"]
    assert report.stats()["dropped"]["parse_error"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no code"}) + "\n")
    with pytest.raises(CodetronError, match=r"bad.jsonl:1: no code field"):
        gather_seeds([str(bad)], SeedConfig(typecheck="off"), progress=False)


def test_bad_settings_fail_in_one_line(corpus, tmp_path):
    with pytest.raises(ConfigError, match="--benchmark .*nope.jsonl: no such file"):
        main(seeds_cmd(corpus, tmp_path / "s.jsonl", "--benchmark", str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="--max-lines"):
        main(seeds_cmd(corpus, tmp_path / "s.jsonl", "--min-lines", "30"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.py").write_text("def f():\n    'doc'\n    return 1\n")
    with pytest.raises(CodetronError, match="no seed survived the filters"):
        main(seeds_cmd(empty, tmp_path / "s.jsonl"))


def test_typecheck_without_pyright_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pyright on it
    out = tmp_path / "seeds.jsonl"
    assert main(seeds_cmd(corpus, out)[:-3] + ["--typecheck", "auto", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if "pyright not installed (" in ln] == [
        "codetron selfalign: pyright not installed (npm install -g pyright); type-check filter skipped"]
    assert json.loads((tmp_path / "seeds.stats.json").read_text())["typecheck"] == "skipped: pyright not installed"
    with pytest.raises(CodetronError, match="--typecheck pyright: pyright is not on PATH"):
        main(seeds_cmd(corpus, out)[:-3] + ["--typecheck", "pyright", "--quiet"])


def test_pyright_drops_seeds_with_type_errors(tmp_path):
    if shutil.which("pyright") is None:
        pytest.skip("pyright is not installed (npm install -g pyright); the filter is optional")
    src = tmp_path / "typed.py"
    src.write_text('def ok(x: int) -> int:\n    """Add one."""\n    return x + 1\n\n\n'
                   'def wrong(x: int) -> str:\n    """Claims str, returns int."""\n    return x + 1\n\n\n'
                   'def unknown(x):\n    """Uses a name that exists nowhere."""\n    return undefined_helper(x)\n')
    report = gather_seeds([str(src)], SeedConfig(typecheck="pyright"), progress=False)
    assert [s["name"] for s in report.seeds] == ["ok"]
    assert report.counts["typecheck"] == 2 and report.typecheck.startswith("pyright")
