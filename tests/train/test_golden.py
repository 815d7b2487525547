"""A short deterministic debug-tiny run reproduces the stored golden loss curve.

Regenerate (after an intended numerics change only) with ``python -m tests.train.regen_golden``; the
test itself only reads the file.
"""
import json

from tests.train.regen_golden import GOLDEN, STEPS, golden_run


def test_golden_loss_curve(synthetic_data, tmp_path):
    got = golden_run(synthetic_data, tmp_path)
    want = json.loads(GOLDEN.read_text())["loss"]
    assert len(got) == len(want) == STEPS
    for step, (g, w) in enumerate(zip(got, want), 1):
        assert abs(g - w) < 2e-4, f"step {step}: loss {g} vs golden {w}"
    assert want[-1] < want[0] - 0.1
