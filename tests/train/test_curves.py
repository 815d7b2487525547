"""`codetron curves`: loss logs in, a comparison table and a PNG out, as users run it."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codetron.errors import CodetronError
from codetron.megatron_ext.curves import read_log, smooth, table


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _rec(step, loss, **extra):
    return {"step": step, "loss": loss, "grad_norm": 1.0 / step, "lr": 1e-3, "tokens_per_s": 100.0,
            "real_tokens_per_s": 80.0 + step, "skipped": False, **extra}


def test_resumed_steps_keep_the_later_record_and_skipped_steps_are_left_out(tmp_path):
    log = _write(tmp_path / "run.jsonl", [
        _rec(1, 5.0), _rec(2, 4.0), _rec(3, 3.5),
        # resumed from the step-2 checkpoint: step 3 is logged again, and that is the curve
        _rec(3, 3.0), {**_rec(4, float("nan")), "skipped": True}, _rec(5, 2.0),
    ])
    run = read_log(f"{log}=resumed")
    assert run.label == "resumed"
    assert run.steps == [1, 2, 3, 5]
    assert run.series["loss"] == [5.0, 4.0, 3.0, 2.0]
    assert run.series["real_tokens_per_s"] == [81.0, 82.0, 83.0, 85.0]


def test_extra_loss_terms_become_their_own_curves(tmp_path):
    log = _write(tmp_path / "rrtf.jsonl", [_rec(1, 2.0, **{"rank loss": 0.5, "ft loss": 1.5}),
                                           _rec(2, 1.0, **{"rank loss": 0.25, "ft loss": 0.75})])
    run = read_log(str(log))
    assert run.label == "rrtf"
    assert run.series["rank loss"] == [0.5, 0.25] and run.series["ft loss"] == [1.5, 0.75]


def test_table_numbers():
    from codetron.megatron_ext.curves import Run

    r = Run("a", None, steps=[1, 2, 3], series={"loss": [3.0, 1.0, 2.0], "real_tokens_per_s": [10.0, 20.0, 40.0]})
    row = table([r]).splitlines()[2].split()
    # first, last, min, mean of the last ten, and tokens/s without the warm-up step
    assert row == ["a", "3", "3.0000", "2.0000", "1.0000", "2.0000", "30.0"]


def test_smooth_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([1.0, 3.0], 1) == [1.0, 3.0]


@pytest.mark.parametrize("content,where", [('{"step": 1, "loss": 2}\nnot json\n', ":2:"), ('{"loss": 2}\n', ":1:")])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, content, where):
    log = tmp_path / "bad.jsonl"
    log.write_text(content)
    with pytest.raises(CodetronError, match=f"bad.jsonl{where}"):
        read_log(str(log))


def test_cli_writes_a_png_and_prints_the_table(tmp_path):
    a = _write(tmp_path / "a.jsonl", [_rec(s, 5.0 / s) for s in range(1, 6)])
    b = _write(tmp_path / "b.jsonl", [_rec(s, 5.0 / s + 0.01) for s in range(1, 6)])
    out = tmp_path / "charts" / "cmp.png"
    proc = subprocess.run([sys.executable, "-m", "codetron", "curves", f"{a}=bf16", f"{b}=fp32", "-o", str(out),
                           "--smooth", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:4]}
    assert float(rows["bf16"][3]) == pytest.approx(1.0) and float(rows["fp32"][3]) == pytest.approx(1.01)
    assert not [p for p in out.parent.iterdir() if p.name != "cmp.png"], "temp files left behind"


def test_cli_missing_log_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codetron", "curves", str(tmp_path / "nope.jsonl"), "-o",
                           str(tmp_path / "x.png")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "nope.jsonl: no such loss log" in proc.stderr
    assert not (tmp_path / "x.png").exists()
