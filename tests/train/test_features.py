"""Activation recompute changes memory, not numbers; validation runs on the held-out split."""
import pytest

from tests.train.conftest import base_args, read_log, run_train


@pytest.mark.slow
def test_full_recompute_matches_and_validation_reports(synthetic_data, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    proc = run_train(base_args(synthetic_data, 4) + ["--logging.loss_log", str(a), "--logging.eval_interval", "2",
                                                     "--logging.eval_iters", "1"])
    valid = [line for line in proc.stdout.splitlines() if "valid loss" in line]
    assert len(valid) == 2 and all(float(line.split("valid loss")[1].split("|")[0]) > 0 for line in valid)
    run_train(base_args(synthetic_data, 4) + ["--logging.loss_log", str(b), "--logging.eval_interval", "2",
                                              "--logging.eval_iters", "1", "--model.recompute", "full"])
    for x, y in zip(read_log(a), read_log(b)):
        assert abs(x["loss"] - y["loss"]) < 1e-6 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-6


@pytest.mark.slow
def test_clip_grad_zero_trains_unclipped_and_logs_the_real_norm(synthetic_data, tmp_path):
    """optim.clip_grad 0 (the starcoder2-instruct recipe: upstream --max_grad_norm -1) gives the same steps as
    a clip no gradient reaches, and the log still carries the measured norm, not megatron-core's 0.0; a
    clip that bites changes the run, so the comparison can fail."""
    logs = {}
    for name, clip in (("off", "0"), ("huge", "1e9"), ("tight", "1e-3")):
        logs[name] = tmp_path / f"{name}.jsonl"
        run_train(base_args(synthetic_data, 3) + ["--optim.clip_grad", clip, "--logging.loss_log", str(logs[name])])
    off, huge, tight = (read_log(logs[n]) for n in ("off", "huge", "tight"))
    for x, y in zip(off, huge):
        assert abs(x["loss"] - y["loss"]) < 1e-6 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-5, (x, y)
    assert all(r["grad_norm"] > 1e-3 for r in off)
    assert abs(tight[-1]["loss"] - off[-1]["loss"]) > 1e-4
