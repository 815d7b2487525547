"""Checkpoint bookkeeping: keep-last-K, partial saves never count, signal-triggered save, NaN policy."""
import json
import os
import signal
import subprocess
import time

import pytest

from codetron.megatron_ext import checkpointing
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.train.conftest import base_args, read_log, run_train


@pytest.mark.slow
def test_interval_saves_keep_last_k_and_partial_dirs_never_count(synthetic_data, tmp_path):
    save = tmp_path / "run"
    run_train(base_args(synthetic_data, 6) + ["--checkpoint.save", str(save), "--checkpoint.save_interval", "2",
                                              "--checkpoint.keep_last", "2"])
    kept = sorted(p.name for p in save.glob("iter_*"))
    assert kept == ["iter_0000004", "iter_0000006"]
    assert checkpointing.latest_iteration(save) == 6
    assert json.loads((save / "run_state.json").read_text())["state"] == "finished"
    assert (save / "iter_0000006" / "codetron_config.yaml").read_text().startswith("preset: debug-tiny")
    # a save killed half-way leaves a directory the tracker does not point to
    (save / "iter_0000008").mkdir()
    (save / "iter_0000008" / "garbage.distcp").write_bytes(b"\0" * 10)
    assert checkpointing.latest_iteration(save) == 6
    assert checkpointing.resolve_checkpoint_dir(save).name == "iter_0000006"


def test_sigusr1_checkpoints_and_exits_cleanly(synthetic_data, tmp_path):
    save = tmp_path / "run"
    log = tmp_path / "loss.jsonl"
    cmd = [PYTHON, "-m", "codetron", "train", *base_args(synthetic_data, 400), "--checkpoint.save", str(save),
           "--logging.loss_log", str(log)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    state = json.loads((save / "run_state.json").read_text())
    assert state["state"] == "preempted" and 2 <= state["iteration"] < 400
    assert checkpointing.latest_iteration(save) == state["iteration"]
    assert len(read_log(log)) == state["iteration"]


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_loss_policy(synthetic_data, tmp_path, policy):
    log = tmp_path / "loss.jsonl"
    proc = run_train(base_args(synthetic_data, 4) + ["--optim.lr", "1e30", "--optim.clip_grad", "0",
                                                     "--optim.lr_warmup_iters", "0", "--logging.on_nan", policy,
                                                     "--logging.loss_log", str(log)], check=False)
    if policy == "stop":
        assert proc.returncode == 2
        err = [line for line in proc.stderr.splitlines() if line.startswith("codetron train: error:")]
        assert len(err) == 1 and "stopping" in err[0] and ("loss is nan" in err[0] or "grad norm is" in err[0])
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
        recs = read_log(log)
        assert len(recs) == 4 and any(r["skipped"] for r in recs)
