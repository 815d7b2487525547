"""benchmarks/gpu_check.sh cannot rot: its CPU dry run goes through every step of the GPU check at toy
sizes, its stored CPU fp32 reference curve is what today's code produces, and its numbers add up."""
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
REFERENCE = ROOT / "benchmarks" / "results" / "debug_tiny_cpu_fp32.jsonl"


def run_script(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=subprocess_env(PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "report.txt"
    proc = run_script("--cpu-dry-run", "--out", str(out))
    return proc.stdout, out.read_text()


@pytest.mark.slow
def test_reference_curve_is_what_the_documented_command_writes(tmp_path):
    fresh = tmp_path / "ref.jsonl"
    run_script("--write-reference", str(fresh))
    got, stored = read_jsonl(fresh), read_jsonl(REFERENCE)
    assert len(got) == len(stored) == 20
    for g, s in zip(got, stored):
        # Regenerate with `benchmarks/gpu_check.sh --write-reference` after an intended numerics change.
        assert abs(g["loss"] - s["loss"]) < 1e-4, (g, s)
    assert stored[-1]["loss"] < stored[0]["loss"] - 0.3  # the curve moves: a comparison against it means something


@pytest.mark.slow
def test_dry_run_compares_bf16_with_the_stored_fp32_curve(dry_run):
    stdout, report = dry_run
    assert report.strip() in stdout  # the file holds what was printed
    assert "transformer_impl sdpa -> sdpa" in report
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([+-][0-9.]+)$", report, re.M)
    stored = read_jsonl(REFERENCE)
    assert [int(r[0]) for r in rows] == list(range(1, 21))
    for (_, ref, got, diff), s in zip(rows, stored):
        assert float(ref) == pytest.approx(s["loss"], abs=1e-5)
        assert float(got) - float(ref) == pytest.approx(float(diff), abs=2e-5)
    worst = float(re.search(r"max \|diff\| ([0-9.]+) over 20 of 20 steps \(tolerance 0.02\): PASS", report).group(1))
    assert worst == pytest.approx(max(abs(float(r[3])) for r in rows), abs=1e-5)
    assert 0 < worst < 5e-3  # bf16 really ran (not fp32), and on CPU it tracks fp32 closely


@pytest.mark.slow
def test_dry_run_throughput_numbers_add_up(dry_run):
    from codetron.megatron_ext.flops import flops_per_token
    from codetron.megatron_ext.presets import resolve_config

    _, report = dry_run
    assert "peak 0.01 TFLOP/s per device (assumed for the dry run)" in report
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.e-]+)\s+([0-9.]+)%\s+([0-9.]+)\s+[0-9.]+GiB$",
                      report, re.M)
    assert [int(r[0]) for r in rows] == [256, 64]
    for seq, tok_s, real_s, tflops, mfu, step_s in rows:
        seq, tok_s = int(seq), float(tok_s)
        model = resolve_config("starcoderbase-1b", overrides={
            "model.num_layers": 2, "model.hidden_size": 64, "model.num_attention_heads": 4,
            "model.max_position_embeddings": 256, "model.seq_length": seq}).model
        expect = tok_s * flops_per_token(model, 256, seq) / 1e12
        assert float(tflops) == pytest.approx(expect, rel=2e-3)
        assert float(mfu) == pytest.approx(100 * expect / 0.01, abs=0.06)
        assert float(real_s) == pytest.approx(tok_s, rel=1e-6)  # synthetic pretraining rows hold no padding
        assert float(step_s) == pytest.approx(seq / tok_s, abs=6e-4)  # micro-batch 1, global batch 1


def test_curve_verdict_fails_on_a_shifted_or_short_curve():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    ref = [{"step": i, "loss": 5.0 - 0.03 * i} for i in range(1, 21)]
    close = [{"step": r["step"], "loss": r["loss"] + 0.004} for r in ref]
    far = [dict(r) for r in close]
    far[12]["loss"] += 0.05
    assert gpu_check.curve_verdict(ref, close)[1]
    lines, ok = gpu_check.curve_verdict(ref, far)
    assert not ok and lines[-1] == "max |diff| 0.05400 over 20 of 20 steps (tolerance 0.02): FAIL"
    assert not gpu_check.curve_verdict(ref, close[:19])[1]  # a run that stopped early fails too


def test_wheel_folder_and_install_target_are_ignored_by_git():
    proc = subprocess.run(["git", "check-ignore", ".whl/x.whl", ".gpu-site/numpy"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.stdout.split() == [".whl/x.whl", ".gpu-site/numpy"]
