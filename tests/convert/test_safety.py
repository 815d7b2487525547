"""Conversion never destroys its input, carries the HF side files through, and fails in one line.

Every test here builds its model with ``from-hf`` from a tiny random GPTBigCode (no training), so the
module runs in seconds; the two ``convert check`` runs are subprocesses (the check starts a process
group).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from codetron.cli import main as codetron_main
from codetron.convert.from_hf import FromHFOptions, from_hf
from codetron.convert.to_hf import ToHFOptions, to_hf
from codetron.errors import CodetronError
from tests.conftest import subprocess_env
from tests.convert.conftest import PYTHON, check_json, run, tiny_hf_model

# A tokenizer_config.json as hub models ship it (transformers 4.x style): fields that a config
# rebuilt from tokenizer.json loses.
TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "additional_special_tokens": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
    "bos_token": "<|endoftext|>",
    "chat_template": "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|endoftext|>\n{% endfor %}",
    "clean_up_tokenization_spaces": True,
    "eos_token": "<|endoftext|>",
    "model_max_length": 64,
    "pad_token": "[PAD]",
    "padding_side": "left",
    "tokenizer_class": "GPT2Tokenizer",
    "unk_token": "<|endoftext|>",
    "vocab_size": 321,
}
GENERATION_CONFIG = {"bos_token_id": 0, "eos_token_id": [0, 320], "pad_token_id": 320, "do_sample": True,
                     "temperature": 0.2, "top_p": 0.95, "max_new_tokens": 512, "repetition_penalty": 1.05,
                     "transformers_version": "4.44.0"}
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
              "chat_template.jinja")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file below ``root`` (hidden ones too) -> sha256: what "untouched" means."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory, tokenizer_json) -> Path:
    """A hub-style HF folder: weights, config, tokenizer.json and its side files."""
    hf = tiny_hf_model(tmp_path_factory.mktemp("hf") / "sc")
    shutil.copy(tokenizer_json, hf / "tokenizer.json")
    # indent 2 with a trailing newline, like the hub's files; any rewrite would change the bytes
    (hf / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    (hf / "special_tokens_map.json").write_text(json.dumps(
        {k: TOKENIZER_CONFIG[k] for k in ("additional_special_tokens", "bos_token", "eos_token", "pad_token",
                                          "unk_token")}, indent=2) + "\n")
    (hf / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    (hf / "chat_template.jinja").write_text(TOKENIZER_CONFIG["chat_template"])
    return hf


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, hf_model) -> Path:
    """A megatron checkpoint folder that also holds what a training run keeps next to it."""
    run_root = tmp_path_factory.mktemp("runs") / "run"
    from_hf(hf_model, run_root, FromHFOptions(progress=False))
    (run_root / "run_state.json").write_text('{"state": "running"}')
    (run_root / "tensorboard").mkdir()
    (run_root / "tensorboard" / "events.out.tfevents.1").write_bytes(b"\x00" * 64)
    return run_root


# ------------------------------------------------------------------ outputs that would destroy input

def _to_hf_outputs(run_dir: Path, tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    another_run = tmp_path / "another_run"
    shutil.copytree(run_dir, another_run)
    (another_run / "config.json").write_text("{}")  # even with HF-looking files it holds a run
    return {  # name -> (checkpoint argument, output)
        "same": (run_dir, run_dir),
        "iter-dir-in-run": (run_dir / "iter_0000000", run_dir),
        "inside": (run_dir, run_dir / "hf"),
        "contains": (run_dir, run_dir.parent),
        "non-hf-folder": (run_dir, other),
        "another-run": (run_dir, another_run),
        "symlink-to-input": (run_dir, _symlink(tmp_path / "link", run_dir)),
    }


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target, target_is_directory=True)
    return link


@pytest.mark.parametrize("case", ["same", "iter-dir-in-run", "inside", "contains", "non-hf-folder",
                                  "another-run", "symlink-to-input"])
def test_to_hf_refuses_outputs_that_overlap_the_run(run_dir, tmp_path, case):
    ckpt, out = _to_hf_outputs(run_dir, tmp_path)[case]
    before_run, before_parent = tree_digest(run_dir), sorted(p.name for p in run_dir.parent.iterdir())
    before_out = tree_digest(out) if out.is_dir() else None
    with pytest.raises(CodetronError, match="refusing") as exc:
        to_hf(ckpt, out, ToHFOptions(progress=False, overwrite=True))  # --overwrite does not unlock these
    assert str(out) in str(exc.value) and "\n" not in str(exc.value)
    assert tree_digest(run_dir) == before_run
    assert sorted(p.name for p in run_dir.parent.iterdir()) == before_parent  # no temp dir left
    if before_out is not None:
        assert tree_digest(out) == before_out


def test_to_hf_cli_same_folder_is_one_line_and_keeps_the_run(run_dir, capsys):
    before = tree_digest(run_dir)
    rc = codetron_main(["convert", "to-hf", str(run_dir), str(run_dir), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("codetron convert: error:"), err
    assert "is the input" in err
    assert tree_digest(run_dir) == before


@pytest.mark.parametrize("case", ["same", "inside", "contains", "training-run"])
def test_from_hf_refuses_outputs_that_overlap_the_source(hf_model, run_dir, tmp_path, case):
    out = {"same": hf_model, "inside": hf_model / "meg", "contains": hf_model.parent, "training-run": run_dir}[case]
    before_hf, before_run = tree_digest(hf_model), tree_digest(run_dir)
    with pytest.raises(CodetronError, match="refusing"):
        from_hf(hf_model, out, FromHFOptions(progress=False, overwrite=True))
    assert tree_digest(hf_model) == before_hf and tree_digest(run_dir) == before_run
    assert not (hf_model / "meg").exists()


def test_overwrite_needs_the_flag_and_a_previous_output(run_dir, hf_model, tmp_path):
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    (out / "stale.txt").write_text("from an older export")
    with pytest.raises(CodetronError, match=r"exists.*--overwrite"):
        to_hf(run_dir, out, ToHFOptions(progress=False))
    assert (out / "stale.txt").exists()
    to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # old copy and temp dir both gone

    meg = tmp_path / "meg"
    from_hf(hf_model, meg, FromHFOptions(progress=False))
    with pytest.raises(CodetronError, match=r"exists.*--overwrite"):
        from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2))
    from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2, overwrite=True))
    assert "tensor_model_parallel_size: 2" in (meg / "iter_0000000" / "codetron_config.yaml").read_text()
    # an empty folder (e.g. made by a job script) is not "existing output"
    (tmp_path / "empty").mkdir()
    from_hf(hf_model, tmp_path / "empty", FromHFOptions(progress=False))
    assert (tmp_path / "empty" / "latest_checkpointed_iteration.txt").is_file()


# ------------------------------------------------------------------------ HF side files carried through

def test_tokenizer_and_generation_files_round_trip_byte_identical(hf_model, run_dir, tmp_path):
    back = tmp_path / "back"
    report = to_hf(run_dir, back, ToHFOptions(progress=False))
    for name in SIDE_FILES:
        assert (back / name).read_bytes() == (hf_model / name).read_bytes(), name
    assert set(report["tokenizer_files"]) >= set(SIDE_FILES) - {"generation_config.json"}
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(back))
    assert tok.padding_side == "left" and tok.pad_token == "[PAD]"
    assert "<fim_middle>" in tok.all_special_tokens
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        "<|user|>\nhi<|endoftext|>\n"
    gen = GenerationConfig.from_pretrained(str(back))
    assert (gen.temperature, gen.top_p, gen.max_new_tokens, gen.eos_token_id) == (0.2, 0.95, 512, [0, 320])


def test_moved_checkpoint_still_converts(hf_model, tmp_path):
    original = tmp_path / "a" / "meg"
    from_hf(hf_model, original, FromHFOptions(progress=False))
    moved = tmp_path / "b" / "meg"
    shutil.copytree(original, moved)
    shutil.rmtree(tmp_path / "a")
    to_hf(moved, tmp_path / "hf", ToHFOptions(progress=False))
    for name in SIDE_FILES:
        assert (tmp_path / "hf" / name).read_bytes() == (hf_model / name).read_bytes(), name
    # the same from another working directory, through the CLI, with relative paths
    proc = subprocess.run([PYTHON, "-m", "codetron", "convert", "to-hf", "meg", "../hf2", "--quiet"],
                          cwd=tmp_path / "b", env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = "tokenizer_config.json"
    assert (tmp_path / "hf2" / name).read_bytes() == (hf_model / name).read_bytes()


# ------------------------------------------------------------------------------ bf16 check, truncation

def _truncate_to_bf16(src: Path, dst: Path) -> None:
    """A plausible converter bug: fp32 -> bf16 by dropping the low 16 bits instead of rounding."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(str(src / "model.safetensors"))
    chopped = {k: (v.view(torch.int32) & ~0xFFFF).view(torch.float32).to(torch.bfloat16) for k, v in weights.items()}
    (dst / "model.safetensors").unlink()
    save_file(chopped, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dst / "config.json").read_text())
    cfg["dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(cfg))


@pytest.mark.slow  # two `convert check` subprocesses, ~25 s each on 2 busy cores
def test_bf16_check_passes_and_a_wrong_bf16_conversion_fails(run_dir, tmp_path):
    proc = run([PYTHON, "-m", "codetron", "convert", "to-hf", str(run_dir), str(tmp_path / "bf16"), "--dtype", "bf16",
                "--check", "--quiet"], check=False)
    assert proc.returncode == 0 and "check passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    # the same weights converted by truncation differ from correct rounding by at most one bf16 ulp
    # per weight -- as small as bf16 storage itself -- and must still fail
    to_hf(run_dir, tmp_path / "fp32", ToHFOptions(progress=False))
    _truncate_to_bf16(tmp_path / "fp32", tmp_path / "chopped")
    res = check_json(run_dir, tmp_path / "chopped")
    assert not res["ok"] and res["max_abs_diff"] > res["atol"], res


def test_truncated_distcp_is_one_line_naming_the_file(run_dir, hf_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    shard = next((broken / "iter_0000000").glob("*.distcp"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CodetronError, match=rf"{shard.name}: truncated"):
        to_hf(broken, tmp_path / "out", ToHFOptions(progress=False))
    assert not (tmp_path / "out").exists()
    for argv in (["to-hf", str(broken), str(tmp_path / "out"), "--quiet"], ["check", str(broken), str(hf_model)]):
        rc = codetron_main(["convert", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and str(shard) in err, err
