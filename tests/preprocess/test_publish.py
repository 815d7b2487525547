"""Stopping a run (SIGTERM as Slurm sends it, Ctrl-C) and publishing .bin/.idx/summary safely."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.indexed import IndexInfo
from codetron.preprocess.pipeline import run
from codetron.preprocess.publish import check_dataset, marker_path
from tests.preprocess.conftest import REPO, make_cfg, read_docs, write_jsonl

DOCS_A = [{"content": f"def f{i}(x):\n    return x * {i} + {i % 7}\n"} for i in range(40)]
DOCS_B = [{"content": f"class C{i}:\n    value = '{'v' * (i % 5)}'\n"} for i in range(25)]


def _dataset(tmp_path, docs, name="ds"):
    src = write_jsonl(tmp_path / f"{name}-{len(docs)}.jsonl", docs)
    return run(make_cfg([src], tmp_path / name))


def _files(prefix) -> dict[str, bytes]:
    return {ext: Path(f"{prefix}{ext}").read_bytes() for ext in (".bin", ".idx", ".summary.json") if Path(f"{prefix}{ext}").exists()}


def test_summary_fingerprints_the_pair(tmp_path):
    s = _dataset(tmp_path, DOCS_A)
    prefix = tmp_path / "ds"
    assert s["files"]["bin_bytes"] == os.path.getsize(f"{prefix}.bin") and s["files"]["idx_bytes"] == os.path.getsize(f"{prefix}.idx")
    check_dataset(prefix)
    assert not os.path.exists(marker_path(prefix))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_stop_between_renames_is_refused_by_readers(tmp_path, monkeypatch):
    """A kill after the new .bin was renamed but before the .idx: readers must refuse the pair."""
    import codetron.preprocess.publish as publish

    _dataset(tmp_path, DOCS_A)
    prefix = tmp_path / "ds"
    old = _files(prefix)
    real_replace = os.replace
    calls = []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the .idx rename: the process "dies" here
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(publish.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        _dataset(tmp_path, DOCS_B)
    monkeypatch.setattr(publish.os, "replace", real_replace)
    now = _files(prefix)
    assert now[".bin"] != old[".bin"] and now[".idx"] == old[".idx"]  # the mismatched state a kill leaves
    assert ".summary.json" not in now  # the old summary no longer vouches for anything
    for reader in (check_dataset, IndexInfo):
        with pytest.raises(CodetronError, match=r"stopped while publishing.*ds\.incomplete"):
            reader(prefix)
    # megatron's training config check refuses it too, before any process group starts
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.validate import validate

    cfg = resolve_config(preset="debug-tiny")
    cfg.data.data_path, cfg.data.tokenizer = [str(prefix)], None
    with pytest.raises(CodetronError, match="^data.data_path: .*stopped while publishing"):
        validate(cfg, 1)
    # no temp files were left behind, and a rerun repairs the dataset
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    _dataset(tmp_path, DOCS_B)
    check_dataset(prefix)
    assert len(read_docs(prefix)) == len(DOCS_B)


def test_pair_from_two_runs_is_refused(tmp_path):
    """Same sizes, different index: only the summary's digest tells them apart."""
    a = tmp_path / "a"
    b = tmp_path / "b"
    docs = [{"content": "total = total + 1\n" * (i + 1)} for i in range(10)]
    run(make_cfg([write_jsonl(tmp_path / "a.jsonl", docs)], a))
    run(make_cfg([write_jsonl(tmp_path / "b.jsonl", docs[::-1])], b))
    assert os.path.getsize(f"{a}.idx") == os.path.getsize(f"{b}.idx") and Path(f"{a}.idx").read_bytes() != Path(f"{b}.idx").read_bytes()
    Path(f"{b}.idx").write_bytes(Path(f"{a}.idx").read_bytes())
    IndexInfo(b)  # sizes agree, so the structural check alone cannot see it
    with pytest.raises(CodetronError, match="b.idx is not the index .*b.summary.json describes"):
        check_dataset(b)
    Path(f"{b}.bin").write_bytes(Path(f"{b}.bin").read_bytes() + b"\0\0")
    with pytest.raises(CodetronError, match="does not match its index"):
        check_dataset(b)


# --- signals ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """Enough code that 2 workers are still busy several seconds after the first chunk is written."""
    d = tmp_path_factory.mktemp("sig")
    src = sorted(Path(os.__file__).parent.glob("*.py"))
    recs = [{"content": src[i % len(src)].read_text() + f"\n# copy {i}\n"} for i in range(300)]
    return write_jsonl(d / "in.jsonl", recs)


def _live_in_group(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.parametrize("sig,to_group", [(signal.SIGTERM, True), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["term-job-step", "term-main-only", "ctrl-c"])
def test_signal_stops_cleanly(tmp_path, big_input, sig, to_group):
    """Slurm's scancel signals every process of the step (job-step) or, with --signal, the main one."""
    out = tmp_path / "out"
    out.mkdir()
    _dataset(out, DOCS_A)  # an earlier dataset at the same prefix must survive untouched
    old = _files(out / "ds")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "codetron", "preprocess", "code", str(big_input), "-o", str(out / "ds"),
                          "--workers", "2", "--chunk-docs", "8", "--quiet", "--no-decontaminate"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if any(f.stat().st_size > 0 for f in out.glob(".ds.bin.*")):
            break  # workers are producing
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be stopped; make the input bigger"
    if to_group:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    err = err.decode()
    name = signal.Signals(sig).name
    assert p.returncode == 128 + sig, err
    assert err.strip().splitlines() == [f"codetron preprocess: error: stopped by {name}: nothing written, "
                                        f"{out / 'ds'}.bin/.idx/.summary.json left as they were"], err
    assert sorted(f.name for f in out.iterdir() if f.name.startswith((".", "ds."))) == ["ds.bin", "ds.idx", "ds.summary.json"]  # no temp files
    assert _files(out / "ds") == old
    time.sleep(0.2)
    assert _live_in_group(p.pid) == [], "worker processes outlived the run"
