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
from codetron.convert import manifest
from codetron.convert import to_hf as to_hf_module
from codetron.convert.manifest import MANIFEST, write_manifest
from codetron.convert.safety import discard_previous
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


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_overwrite_needs_the_flag_and_replaces_what_the_export_wrote(run_dir, tmp_path):
    out = tmp_path / "hf"
    report = to_hf(run_dir, out, ToHFOptions(progress=False))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["written_by"] == "codetron convert to-hf"
    assert set(manifest["files"]) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert manifest["files"]["config.json"] == {"bytes": (out / "config.json").stat().st_size,
                                               "sha256": hashlib.sha256((out / "config.json").read_bytes()).hexdigest()}
    # the source is recorded relative to the output (no absolute path of this machine), and resolves from it
    assert not Path(report["source"]).is_absolute()
    assert (out / report["source"]).resolve() == (run_dir / "iter_0000000").resolve()
    with pytest.raises(CodetronError, match=r"exists.*--overwrite"):
        to_hf(run_dir, out, ToHFOptions(progress=False))
    (out / "tokenizer.json").unlink()  # a listed file that is gone is nothing to protect
    to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True, max_shard_size="20KB"))
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 1 and "model.safetensors" not in shards  # the old single file went with the old export
    assert (out / "tokenizer.json").is_file()
    assert set(json.loads((out / MANIFEST).read_text())["files"]) == \
        {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert siblings(out) == ["hf"]  # old copy and temp dir both gone

    # an empty folder (e.g. made by a job script) is not "existing output"
    (tmp_path / "empty").mkdir()
    to_hf(run_dir, tmp_path / "empty", ToHFOptions(progress=False))
    assert (tmp_path / "empty" / "config.json").is_file()


def _nested_run(out: Path, run_dir: Path) -> None:
    shutil.copytree(run_dir, out / "proj" / "runs" / "other-run")


def _user_files(out: Path, run_dir: Path) -> None:
    (out / "NOTES.md").write_text("what I learned from this export")
    (out / "eval_results").mkdir()
    (out / "eval_results" / "metrics.json").write_text('{"pass@1": 0.31}')


def _edited_config(out: Path, run_dir: Path) -> None:
    cfg = (out / "generation_config.json").read_text()
    (out / "generation_config.json").write_text(cfg.replace('"bos_token_id": 0', '"bos_token_id": 9'))
    assert len(cfg) == len((out / "generation_config.json").read_text())  # same size: the hash catches it


def _link_instead_of_file(out: Path, run_dir: Path) -> None:
    (out / "config.json").unlink()
    (out / "config.json").symlink_to(run_dir / "iter_0000000" / "codetron_config.yaml")


def _no_manifest(out: Path, run_dir: Path) -> None:
    (out / MANIFEST).unlink()  # an output of an older codetron, or a folder copied by hand


@pytest.mark.parametrize("case, message", [
    ("nested-run", r"1 entry no export wrote \(proj/\)"),
    ("user-files", r"2 entries no export wrote \(NOTES\.md, eval_results/\)"),
    ("edited-config", r"generation_config\.json changed since the export wrote it and may hold your edits"),
    ("link", r"config\.json changed since"),
    ("no-manifest", rf"holds .*config\.json.* but no {MANIFEST}"),
])
def test_overwrite_refuses_what_no_export_wrote(run_dir, tmp_path, capsys, case, message):
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    {"nested-run": _nested_run, "user-files": _user_files, "edited-config": _edited_config,
     "link": _link_instead_of_file, "no-manifest": _no_manifest}[case](out, run_dir)
    before, before_run = tree_digest(out), tree_digest(run_dir)
    with pytest.raises(CodetronError, match=message) as exc:
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert str(exc.value).startswith(f"refusing to write {out}:") and "\n" not in str(exc.value)
    rc = codetron_main(["convert", "to-hf", str(run_dir), str(out), "--overwrite", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "refusing" in err, err
    assert tree_digest(out) == before and tree_digest(run_dir) == before_run
    assert siblings(out) == ["hf"]


def test_a_user_edit_is_kept_until_the_user_moves_it(run_dir, tmp_path):
    """The documented way out of an "edited" refusal: move the file away, then overwrite."""
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    _edited_config(out, run_dir)
    with pytest.raises(CodetronError, match="generation_config.json changed"):
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    (out / "generation_config.json").rename(tmp_path / "my_generation_config.json")
    to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert '"bos_token_id": 0' in (out / "generation_config.json").read_text()


def test_weight_shards_are_compared_by_size(run_dir, tmp_path, monkeypatch):
    """Files over HASH_LIMIT are not hashed: a same-size change is replaced, a size change refused."""
    monkeypatch.setattr(manifest, "HASH_LIMIT", 1024)
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    weights = out / "model.safetensors"
    assert "sha256" not in json.loads((out / MANIFEST).read_text())["files"]["model.safetensors"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert weights.read_bytes() != bytes(data)  # rewritten by the export
    with open(weights, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(CodetronError, match="model.safetensors changed since"):
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))


def test_a_crash_mid_export_leaves_the_old_export(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    before = tree_digest(out)

    def boom(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(to_hf_module, "save_hf_config", boom)  # after the weights, before the configs
    with pytest.raises(RuntimeError, match="disk gone"):
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True, dtype="bf16"))
    assert tree_digest(out) == before and siblings(out) == ["hf"]


def test_kill_9_mid_export_leaves_the_old_export(run_dir, tmp_path):
    """A conversion killed outright (OOM killer, scancel) after writing its weights: OUT is untouched;
    only the temp folder beside it is left (``.hf.*.tmp``), and the next run is not blocked by it."""
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    before = tree_digest(out)
    script = ("import os, signal, sys\n"
              "import codetron.convert.to_hf as m\n"
              "m.save_hf_config = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
              "from codetron.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([PYTHON, "-c", script, "convert", "to-hf", str(run_dir), str(out), "--overwrite",
                           "--dtype", "bf16", "--quiet"], env=subprocess_env(), capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert tree_digest(out) == before
    left = [n for n in siblings(out) if n != "hf"]
    assert len(left) == 1 and left[0].startswith(".hf.") and any((tmp_path / left[0]).glob("*.safetensors"))
    to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True, dtype="bf16"))
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_files_added_during_the_conversion_stop_the_swap(run_dir, tmp_path, monkeypatch):
    """OUT is checked again just before the swap: a conversion takes minutes."""
    out = tmp_path / "hf"
    to_hf(run_dir, out, ToHFOptions(progress=False))
    real = to_hf_module.save_hf_config

    def meanwhile(*args, **kwargs):
        (out / "NOTES.md").write_text("written while the export ran")
        return real(*args, **kwargs)

    monkeypatch.setattr(to_hf_module, "save_hf_config", meanwhile)
    with pytest.raises(CodetronError, match=r"no export wrote \(NOTES\.md\)"):
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert (out / "NOTES.md").read_text() == "written while the export ran" and siblings(out) == ["hf"]


def test_the_old_export_is_removed_by_its_manifest_only(tmp_path, capsys):
    """After the swap, a file that slipped in after the last check is kept, with the old folder."""
    old = tmp_path / "old"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "a.bin").write_bytes(b"a")
    write_manifest(old, "codetron convert to-hf")
    (old / "sub" / "late.txt").write_text("mine")
    discard_previous(old, tmp_path / "hf")
    assert (old / "sub" / "late.txt").read_text() == "mine" and not (old / "sub" / "a.bin").exists()
    err = capsys.readouterr().err
    assert err.startswith("warning:") and "sub/late.txt" in err and len(err.strip().splitlines()) == 1
    (old / "sub" / "late.txt").unlink()
    write_manifest(old, "codetron convert to-hf")
    discard_previous(old, tmp_path / "hf")
    assert not old.exists()


@pytest.mark.parametrize("text, message", [
    ("{not json", "not a readable export manifest"),
    ('{"written_by": "codetron convert to-hf", "files": {"../outside.txt": {"bytes": 1}}}',
     "not a valid export manifest \\(entry '../outside.txt'\\)"),
    ('{"written_by": "codetron convert to-hf", "files": {"/etc/passwd": {"bytes": 1}}}', "entry '/etc/passwd'"),
    ('{"written_by": "codetron convert to-hf", "files": []}', "'files' is not an object"),
])
def test_a_bad_manifest_is_refused_in_one_line(run_dir, tmp_path, text, message):
    out = tmp_path / "hf"
    out.mkdir()
    (out / MANIFEST).write_text(text)
    (tmp_path / "outside.txt").write_text("x")
    with pytest.raises(CodetronError, match=message) as exc:
        to_hf(run_dir, out, ToHFOptions(progress=False, overwrite=True))
    assert "\n" not in str(exc.value) and (tmp_path / "outside.txt").exists()


def test_from_hf_overwrite_follows_the_same_rule(hf_model, run_dir, tmp_path):
    meg = tmp_path / "meg"
    report = from_hf(hf_model, meg, FromHFOptions(progress=False))
    assert (meg / report["source"]).resolve() == hf_model.resolve()
    with pytest.raises(CodetronError, match=r"exists.*--overwrite"):
        from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2))
    # a training run saved into the converted folder, and a tracker it moved on
    shutil.copytree(meg / "iter_0000000", meg / "iter_0000010")
    before = tree_digest(meg)
    with pytest.raises(CodetronError, match=r"refusing .*1 entry no export wrote \(iter_0000010/\)"):
        from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2, overwrite=True))
    shutil.rmtree(meg / "iter_0000010")
    (meg / "latest_checkpointed_iteration.txt").write_text("1")
    with pytest.raises(CodetronError, match=r"latest_checkpointed_iteration\.txt changed since"):
        from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2, overwrite=True))
    (meg / "latest_checkpointed_iteration.txt").write_text("0")
    assert tree_digest(meg) == {k: v for k, v in before.items() if not k.startswith("iter_0000010")}
    from_hf(hf_model, meg, FromHFOptions(progress=False, tp=2, overwrite=True))
    assert "tensor_model_parallel_size: 2" in (meg / "iter_0000000" / "codetron_config.yaml").read_text()
    # each command replaces only its own outputs
    with pytest.raises(CodetronError, match="is a `codetron convert from-hf` output"):
        to_hf(run_dir, meg, ToHFOptions(progress=False, overwrite=True))
    assert siblings(meg) == ["meg"]


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
