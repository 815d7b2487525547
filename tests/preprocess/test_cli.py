import json
import subprocess
import sys

from codetron.cli import main as codetron_main
from codetron.preprocess.cli import build_parser
from tests.preprocess.conftest import REPO, SAMPLES


def test_help_lists_subcommands(capsys):
    help_text = build_parser().format_help()
    for sub in ("train-tokenizer", "code", "commitpack", "instruct", "merge", "git-commits", "inspect"):
        assert sub in help_text


def test_cli_end_to_end_and_inspect(tmp_path, capsys):
    assert codetron_main(["preprocess", "instruct", str(SAMPLES / "evol_instruct_sample.json"), "-o", str(tmp_path / "sft"),
                          "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "10 of 12 documents" in out and "contaminated 1" in out and "exact_duplicate 1" in out
    summary = json.loads((tmp_path / "sft.summary.json").read_text())
    assert summary["layout"] == "sft" and summary["config"]["instruct"]["template"] == "wizardcoder"
    assert codetron_main(["preprocess", "inspect", str(tmp_path / "sft"), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "layout sft" in out and "### Response:" in out and "<|endoftext|>" in out


def test_user_errors_are_one_line(tmp_path, capsys):
    rc = codetron_main(["preprocess", "code", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing.jsonl: no such file or directory" in err
    rc = codetron_main(["preprocess", "code", str(SAMPLES / "the_stack_sample.jsonl"), "-o", str(tmp_path / "o"), "--field", "bogus"])
    assert rc == 2 and "--field 'bogus'" in capsys.readouterr().err
    rc = codetron_main(["preprocess", "code", str(SAMPLES / "the_stack_sample.jsonl"), "-o", str(tmp_path / "o"), "--layout", "sft"])
    assert rc == 2 and "--layout sft needs prompt/response data" in capsys.readouterr().err


def test_train_tokenizer_cli(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    proc = subprocess.run([sys.executable, "-m", "codetron", "preprocess", "train-tokenizer", str(src), "-o", str(tmp_path / "tok"),
                           "--vocab-size", "300"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "vocab" in proc.stdout and (tmp_path / "tok" / "tokenizer.json").is_file()
