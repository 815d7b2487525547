"""Damaged, foreign and half-written checkpoints: one line and a safe way on, never a hang or a leak."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from codetron.errors import CodetronError, ConfigError
from codetron.megatron_ext import checkpointing
from codetron.megatron_ext.config import CheckpointConfig
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.train.conftest import base_args, read_log, run_train


@pytest.fixture(scope="module")
def run6(tmp_path_factory, synthetic_data):
    """6 steps saved at 3 and 6, with their loss log."""
    root = tmp_path_factory.mktemp("run6")
    run_train(base_args(synthetic_data, 6) + ["--checkpoint.save", str(root / "ck"), "--checkpoint.save_interval", "3",
                                              "--logging.loss_log", str(root / "loss.jsonl")])
    return root


def _copy(run6: Path, dest: Path) -> Path:
    shutil.copytree(run6 / "ck", dest)
    return dest


def _truncate(path: Path, size: int = 1000) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(run6, synthetic_data, tmp_path):
    ck = _copy(run6, tmp_path / "ck")
    bad = ck / "iter_0000006" / "__0_1.distcp"
    _truncate(bad)
    log = tmp_path / "resumed.jsonl"
    proc = run_train(base_args(synthetic_data, 6) + ["--checkpoint.save", str(ck), "--logging.loss_log", str(log)])
    warnings = [line for line in proc.stdout.splitlines() if "is damaged" in line]
    assert warnings == [f"warning: checkpoint iter_0000006 is damaged: {bad} is truncated (1000 of "
                        f"{(run6 / 'ck' / 'iter_0000006' / '__0_1.distcp').stat().st_size} bytes); resuming from "
                        f"{ck / 'iter_0000003'}, the newest intact checkpoint"]
    assert f"resumed from {ck / 'iter_0000003'} at step 3" in proc.stdout
    assert "Traceback" not in proc.stderr
    # The steps after the fallback are the first run's steps 4-6, exactly.
    first = {r["step"]: r["loss"] for r in read_log(run6 / "loss.jsonl")}
    again = read_log(log)
    assert [r["step"] for r in again] == [4, 5, 6]
    assert [r["loss"] for r in again] == [first[s] for s in (4, 5, 6)]
    # ... and step 6 was saved again, whole this time
    assert checkpointing.checkpoint_damage(ck / "iter_0000006") is None
    assert checkpointing.latest_iteration(ck) == 6


def test_no_intact_checkpoint_is_one_line_naming_the_file(run6, tmp_path):
    ck = _copy(run6, tmp_path / "ck")
    for it in (3, 6):
        _truncate(ck / f"iter_{it:07d}" / "__0_0.distcp")
    with pytest.raises(CodetronError, match=r"iter_0000006/__0_0\.distcp is truncated .*no intact checkpoint"):
        checkpointing.resume_source(CheckpointConfig(save=str(ck)))
    # A truncated .metadata (the index of all the rest) and a missing data file are named as well.
    _truncate(ck / "iter_0000006" / ".metadata", 10)
    assert checkpointing.checkpoint_damage(ck / "iter_0000006").startswith(f"{ck / 'iter_0000006' / '.metadata'} is truncated (10 of ")
    # a checkpoint from before manifests is checked against megatron's index itself
    (ck / "iter_0000006" / "codetron_manifest.json").unlink()
    assert checkpointing.checkpoint_damage(ck / "iter_0000006").startswith(f"{ck / 'iter_0000006' / '.metadata'} is unreadable (")
    (ck / "iter_0000003" / "__0_0.distcp").unlink()
    assert checkpointing.checkpoint_damage(ck / "iter_0000003") == f"{ck / 'iter_0000003' / '__0_0.distcp'} is missing"
    # A damaged iter_* directory given as checkpoint.load is an error, not a fallback.
    with pytest.raises(CodetronError, match="checkpoint.load .*iter_0000003 is damaged"):
        checkpointing.resume_source(CheckpointConfig(load=str(ck / "iter_0000003")))


def test_a_load_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="checkpoint.load: .*empty holds no checkpoint"):
        checkpointing.resume_source(CheckpointConfig(load=str(tmp_path / "empty")))
    assert checkpointing.resume_source(CheckpointConfig(save=str(tmp_path / "empty"))) == (None, False)


def test_own_checkpoints_win_over_load_after_a_requeue(run6, tmp_path):
    """A run started from --checkpoint.load that was requeued continues its own checkpoints."""
    own = _copy(run6, tmp_path / "own")
    shutil.rmtree(own / "iter_0000006")
    (own / checkpointing.TRACKER).write_text("3")
    got = checkpointing.resume_source(CheckpointConfig(save=str(own), load=str(run6 / "ck")))
    assert got == (own / "iter_0000003", False)
    assert checkpointing.resume_source(CheckpointConfig(save=str(tmp_path / "fresh"), load=str(run6 / "ck"))) \
        == (run6 / "ck" / "iter_0000006", False)


def test_other_model_shape_is_one_line_before_any_process_group(run6, synthetic_data, tmp_path):
    import torch.distributed as dist

    from codetron.megatron_ext.presets import resolve_config

    ck = _copy(run6, tmp_path / "ck")
    cfg = resolve_config("debug-tiny", overrides={"model.num_layers": 2, "model.hidden_size": 32})
    with pytest.raises(ConfigError, match=r"num_layers 4 vs 2, hidden_size 64 vs 32"):
        checkpointing.check_same_model(ck / "iter_0000006", cfg.model, 256)
    assert not dist.is_initialized()
    # a vocabulary that pads to other embedding rows is a shape change too; one that pads the same is not
    same = resolve_config("debug-tiny").model
    with pytest.raises(ConfigError, match="padded vocab 256 vs 384"):
        checkpointing.check_same_model(ck / "iter_0000006", same, 300)
    checkpointing.check_same_model(ck / "iter_0000006", same, 250)

    proc = run_train(base_args(synthetic_data, 8) + ["--checkpoint.save", str(ck), "--model.num_layers", "2"], check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"codetron train: error: {ck / 'iter_0000006'}: another model shape than this run's (checkpoint vs run: "
        f"num_layers 4 vs 2); use the preset/model settings of {ck / 'iter_0000006' / 'codetron_config.yaml'}, "
        f"or another checkpoint.save"]
    assert "codetron train |" not in proc.stdout  # the start-up banner comes right before the process groups


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux) to find the writer processes")
def test_kill_9_during_a_save_leaves_no_checkpoint_writer_running(synthetic_data, tmp_path):
    """megatron-core forks a writer per file bucket; killed with -9 mid-save, the trainer used to leave
    them running (reparented to PID 1) for minutes."""
    cmd = [PYTHON, "-m", "codetron", "train", *base_args(synthetic_data, 500), "--checkpoint.save", str(tmp_path / "ck"),
           "--checkpoint.save_interval", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: set[int] = set()
    try:
        deadline = time.time() + 180
        # the resource tracker is there from the first save on; a second child is a writer
        while len(kids := _children(proc.pid)) < 2:
            assert proc.poll() is None and time.time() < deadline, "no checkpoint writer seen"
            time.sleep(0.002)
        family = set(kids) | {g for k in kids for g in _children(k)}
        os.kill(proc.pid, signal.SIGSTOP)  # no writer forked between this snapshot and the kill
        family |= set(_children(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while any(_alive(p) for p in family) and time.time() < deadline:
            time.sleep(0.1)
        assert not [p for p in family if _alive(p)], "checkpoint writer processes outlived the killed trainer"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in family:  # only the processes this test started, by PID
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
