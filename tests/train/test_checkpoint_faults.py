"""Fault injection on checkpoints: signals to the whole process group, damaged checkpoints, a full
disk. Each fault must lose nothing that was checkpointed and say what happened in one line."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from codetron.errors import CodetronError
from codetron.megatron_ext import checkpointing, manifest
from codetron.megatron_ext.config import CheckpointConfig
from codetron.megatron_ext.helper_signals import EXIT_SIGNALS, held_signals
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.train.conftest import base_args, read_log, run_train


def _wait_for(cond, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"trainer ended before {what}: {proc.communicate()[0][-3000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", sorted(EXIT_SIGNALS))
def test_processes_started_under_held_signals_never_see_them(sig):
    """The mechanism: a child started inside held_signals() (fork+exec, as the resource tracker is)
    survives the signal that kills one started outside; the parent's own mask comes back."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    # Each child resets the signals' dispositions (an ignored signal stays ignored through exec, and a
    # test runner may ignore some), then says it is running: a signal that reaches a child between fork
    # and exec runs the parent's Python handler there and is lost, so under load a fixed sleep raced.
    # Only the mask may decide who survives.
    sleeper = [PYTHON, "-c", "import signal, time\nfor s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):\n"
               "    signal.signal(s, signal.SIG_DFL)\nprint('ready', flush=True)\ntime.sleep(60)"]
    with held_signals():
        held = subprocess.Popen(sleeper, stdout=subprocess.PIPE, text=True)
    plain = subprocess.Popen(sleeper, stdout=subprocess.PIPE, text=True)
    try:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
        assert [held.stdout.readline(), plain.stdout.readline()] == ["ready\n"] * 2
        for proc in (held, plain):
            proc.send_signal(sig)
        assert plain.wait(timeout=10) != 0
        time.sleep(0.5)
        assert held.poll() is None, "a helper started with the signals held died of one"
    finally:
        for proc in (held, plain):
            proc.kill()
            proc.wait()


_HELPERS_MASKS = """
import os, signal
from codetron.megatron_ext import checkpointing
with checkpointing._writers_die_with_parent():
    pass
for pid in os.listdir("/proc"):
    try:
        stat, status = open(f"/proc/{pid}/stat").read(), open(f"/proc/{pid}/status").read()
    except OSError:
        continue
    if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
        blocked = int(next(l for l in status.splitlines() if l.startswith("SigBlk")).split()[1], 16)
        ignored = int(next(l for l in status.splitlines() if l.startswith("SigIgn")).split()[1], 16)
        print(" ".join(s.name for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
                       if not (blocked | ignored) & (1 << (s - 1))) or "none")
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the helpers' signal masks from /proc")
def test_the_checkpoint_helpers_start_deaf_to_exit_signals():
    """In a fresh process (no resource tracker yet, which unblocked INT and TERM in the caller and so
    let the results Manager, since removed, die of scancel's TERM): the one helper a save starts
    before its writers, multiprocessing's resource tracker, ignores or blocks all three, and the
    writers' results queue is in-process (no Manager process is started)."""
    proc = subprocess.run([PYTHON, "-c", _HELPERS_MASKS], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:-1] == ["none"], proc.stdout  # the tracker, deaf to all


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_signal_to_the_whole_process_group_after_periodic_saves(synthetic_data, tmp_path, sig):
    """What `scancel --signal=USR1 JOB` (no -b) does: Slurm signals every process of the step, the
    checkpoint writers and the resource tracker included. They used to die of it; the exit save then
    failed with BrokenPipeError."""
    save, log = tmp_path / "run", tmp_path / "loss.jsonl"
    cmd = [PYTHON, "-m", "codetron", "train", *base_args(synthetic_data, 400), "--checkpoint.save", str(save),
           "--checkpoint.save_interval", "2", "--logging.loss_log", str(log)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        _wait_for(lambda: (save / checkpointing.TRACKER).exists() and log.exists()
                  and len(log.read_text().splitlines()) >= 5, 180, proc, "two periodic checkpoints")
        os.killpg(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "BrokenPipe" not in out, out[-3000:]
    state = json.loads((save / "run_state.json").read_text())
    assert state["state"] == "preempted", state
    assert checkpointing.latest_iteration(save) == state["iteration"] == len(read_log(log))
    assert f"exit requested: checkpointed step {state['iteration']}" in out


# ---- damaged checkpoints -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run8(tmp_path_factory, synthetic_data):
    """8 steps saved at 2, 4, 6 and 8 (all kept), with their loss log."""
    root = tmp_path_factory.mktemp("run8")
    run_train(base_args(synthetic_data, 8) + ["--checkpoint.save", str(root / "ck"), "--checkpoint.save_interval", "2",
                                              "--checkpoint.keep_last", "0", "--logging.loss_log", str(root / "loss.jsonl")])
    return root


def _copy(run8: Path, dest: Path) -> Path:
    shutil.copytree(run8 / "ck", dest)
    return dest


def _flip_byte(path: Path, at: int | None = None) -> None:
    """A same-size corruption: one byte in the middle of the file inverted."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _shard(ck: Path, it: int) -> Path:
    return max((ck / f"iter_{it:07d}").glob("*.distcp"), key=lambda p: p.stat().st_size)


# damage -> (how, what the one line names). A damaged tracker leaves the checkpoints to choose from:
# the newest intact one is iter_8 itself; every other damage makes iter_8 unusable, so iter_6.
DAMAGE = {
    "tracker garbage": (lambda ck: (ck / checkpointing.TRACKER).write_bytes(b"\x00\xffgarbage"),
                        r"checkpoint tracker is damaged: .*latest_checkpointed_iteration\.txt holds '.*garbage', "
                        r"not an iteration number; "),
    "tracker empty": (lambda ck: (ck / checkpointing.TRACKER).write_text(""),
                      r"checkpoint tracker is damaged: .*latest_checkpointed_iteration\.txt holds '', not an "),
    "tracker dangling": (lambda ck: shutil.rmtree(ck / "iter_0000008"),
                         r"checkpoint tracker is damaged: .*txt points to iteration 8 but .*iter_0000008 is missing; "),
    "common.pt truncated": (lambda ck: os.truncate(ck / "iter_0000008" / "common.pt", 100),
                            r"checkpoint iter_0000008 is damaged: .*iter_0000008/common\.pt is truncated \(100 of "
                            r"\d+ bytes\); "),
    "common.pt corrupt, same size": (lambda ck: _flip_byte(ck / "iter_0000008" / "common.pt"),
                                     r"checkpoint iter_0000008 is damaged: .*iter_0000008/common\.pt is corrupt "
                                     r"\(crc32 [0-9a-f]{8}, the manifest says [0-9a-f]{8}\); "),
    "shard corrupt, same size": (lambda ck: _flip_byte(_shard(ck, 8)),
                                 r"checkpoint iter_0000008 is damaged: .*iter_0000008/__0_\d\.distcp is corrupt "),
    ".metadata missing": (lambda ck: (ck / "iter_0000008" / ".metadata").unlink(),
                          r"checkpoint iter_0000008 is damaged: .*iter_0000008/\.metadata is missing; "),
    "metadata.json missing": (lambda ck: (ck / "iter_0000008" / "metadata.json").unlink(),
                              r"checkpoint iter_0000008 is damaged: .*iter_0000008/metadata\.json is missing; "),
    "manifest garbage": (lambda ck: (ck / "iter_0000008" / manifest.MANIFEST).write_text("{not json"),
                         r"checkpoint iter_0000008 is damaged: .*codetron_manifest\.json is unreadable "),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_damage_falls_back_to_the_newest_intact_checkpoint_in_one_line(run8, tmp_path, damage):
    ck = _copy(run8, tmp_path / "ck")
    assert checkpointing.resume_source(CheckpointConfig(save=str(ck)), hashes=True) == (ck / "iter_0000008", False)
    make, named = DAMAGE[damage]
    make(ck)
    said: list[str] = []
    got, _ = checkpointing.resume_source(CheckpointConfig(save=str(ck)), said.append, hashes=True)
    want = ck / ("iter_0000008" if damage in ("tracker garbage", "tracker empty") else "iter_0000006")
    assert got == want
    assert len(said) == 1 and "\n" not in said[0]
    assert re.match(named + rf".*resuming from {re.escape(str(want))}, the newest intact checkpoint$", said[0]), said[0]
    # the size-only check (before any process group) misses only the same-size corruptions
    quick, _ = checkpointing.resume_source(CheckpointConfig(save=str(ck)))
    assert quick == (ck / "iter_0000008" if "same size" in damage else want)


def test_nothing_intact_is_one_line_naming_the_first_damage(run8, tmp_path):
    ck = _copy(run8, tmp_path / "ck")
    for it in (2, 4, 6, 8):
        _flip_byte(_shard(ck, it))
    with pytest.raises(CodetronError, match=r"iter_0000008/__0_\d\.distcp is corrupt .*; no intact checkpoint to "
                                            r"fall back to under "):
        checkpointing.resume_source(CheckpointConfig(save=str(ck)), hashes=True)


def test_pruning_keeps_intact_checkpoints_and_drops_damaged_and_abandoned_ones(run8, tmp_path):
    ck = _copy(run8, tmp_path / "ck")
    _flip_byte(ck / "iter_0000004" / "common.pt")
    os.truncate(_shard(ck, 6), 10)
    (ck / "iter_0000009").mkdir()  # a partial save past the newest
    (ck / "iter_0000009" / "__0_0.distcp").write_bytes(b"\0" * 10)
    # keep_last 2 after a save of 8: 8 and the newest older one of the right sizes (pruning reads no
    # data: hashing every kept checkpoint at each save would read them all again). 6 is truncated
    # and goes; 4 stays (its corruption is found when a resume reads it); 2 is one too many.
    checkpointing._prune(ck, 2, 8)
    assert sorted(p.name for p in ck.glob("iter_*")) == ["iter_0000004", "iter_0000008"]
    checkpointing._prune(ck, 1, 4)  # after a fallback to 4 and its re-save: 8 is from an abandoned timeline
    assert sorted(p.name for p in ck.glob("iter_*")) == ["iter_0000004"]


@pytest.mark.slow
def test_training_resumes_past_a_same_size_corrupt_shard_and_matches(run8, synthetic_data, tmp_path):
    ck = _copy(run8, tmp_path / "ck")
    bad = _shard(ck, 8)
    _flip_byte(bad)
    log = tmp_path / "resumed.jsonl"
    proc = run_train(base_args(synthetic_data, 10) + ["--checkpoint.save", str(ck), "--checkpoint.save_interval", "2",
                                                      "--checkpoint.keep_last", "2", "--logging.loss_log", str(log)])
    warnings = [line for line in proc.stdout.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint iter_0000008 is damaged: {bad} is "
                                                         f"corrupt (crc32 "), proc.stdout[-3000:]
    assert warnings[0].endswith(f"resuming from {ck / 'iter_0000006'}, the newest intact checkpoint")
    assert f"resumed from {ck / 'iter_0000006'} at step 6" in proc.stdout
    assert "Traceback" not in proc.stderr
    first = {r["step"]: r["loss"] for r in read_log(run8 / "loss.jsonl")}
    again = read_log(log)
    assert [r["step"] for r in again] == [7, 8, 9, 10]
    assert [r["loss"] for r in again[:2]] == [first[7], first[8]]
    # step 8 saved again, whole; keep_last 2 left 8 and 10, both verified
    assert sorted(p.name for p in ck.glob("iter_*")) == ["iter_0000008", "iter_0000010"]
    for it in (8, 10):
        assert checkpointing.checkpoint_damage(ck / f"iter_{it:07d}", hashes=True) is None
    state = json.loads((ck / "run_state.json").read_text())
    assert (state["state"], state["iteration"], state["checkpoint"]) == ("finished", 10, 10)


@pytest.mark.slow
def test_two_ranks_hash_in_shares_and_fall_back_together(synthetic_data, tmp_path):
    """TP2: each rank hashes half the files when saving and when resuming; a corrupt shard sends both
    ranks to the same older checkpoint, said once."""
    ck, log = tmp_path / "ck", tmp_path / "loss.jsonl"
    tp2 = ["--parallel.tensor_model_parallel_size", "2", "--checkpoint.save", str(ck), "--checkpoint.save_interval", "2",
           "--checkpoint.keep_last", "0"]
    run_train(base_args(synthetic_data, 4) + tp2 + ["--logging.loss_log", str(log)], nproc=2)
    files = manifest.read(ck / "iter_0000004")
    assert sorted(files) == manifest.listing(ck / "iter_0000004") and len(files) >= 6
    assert all(manifest.file_crc32(ck / "iter_0000004" / n) == e["crc32"] for n, e in files.items())
    bad = _shard(ck, 4)
    _flip_byte(bad)
    proc = run_train(base_args(synthetic_data, 6) + tp2 + ["--logging.loss_log", str(tmp_path / "again.jsonl")],
                     nproc=2)
    warnings = [line for line in proc.stdout.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint iter_0000004 is damaged: {bad} is corrupt")
    assert f"resumed from {ck / 'iter_0000002'} at step 2" in proc.stdout
    first = {r["step"]: r["loss"] for r in read_log(log)}
    again = read_log(tmp_path / "again.jsonl")
    assert [r["step"] for r in again] == [3, 4, 5, 6]
    assert [r["loss"] for r in again[:2]] == pytest.approx([first[3], first[4]], rel=1e-6, abs=0)


@pytest.mark.slow
def test_checkpoint_verify_cli_names_each_damage(run8, tmp_path):
    ck = _copy(run8, tmp_path / "ck")
    ok = _codetron("checkpoint", "verify", str(ck))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == f"tracker: iteration 8 ({ck / checkpointing.TRACKER})"
    assert re.search(r"^iter_0000006 ok: 6 files, \d+ bytes, sizes and crc32 checked$", ok.stdout, re.M), ok.stdout
    assert ok.stdout.splitlines()[-1] == f"resume: {ck / 'iter_0000008'}"
    bad = _shard(ck, 8)
    _flip_byte(bad)
    (ck / checkpointing.TRACKER).write_text("junk")
    got = _codetron("checkpoint", "verify", str(ck))
    assert got.returncode == 1
    lines = got.stdout.splitlines()
    assert lines[0] == f"tracker DAMAGED: {ck / checkpointing.TRACKER} holds 'junk', not an iteration number"
    assert [x for x in lines if x.startswith("iter_0000008")] == [
        f"iter_0000008 DAMAGED: {bad} is corrupt (crc32 {manifest.file_crc32(bad)}, the manifest says "
        f"{manifest.read(ck / 'iter_0000008')[bad.name]['crc32']})"]
    assert lines[-1] == f"resume: {ck / 'iter_0000006'}"
    # --sizes-only reads no data: the same-size corruption passes, as documented
    quick = _codetron("checkpoint", "verify", "--sizes-only", str(ck))
    assert "iter_0000008 ok: 6 files" in quick.stdout and "sizes checked" in quick.stdout
    none = _codetron("checkpoint", "verify", str(tmp_path))
    assert none.returncode == 2 and none.stderr.strip() == (
        f"codetron checkpoint: error: {tmp_path}: no checkpoints (no iter_* directory, no {checkpointing.TRACKER})")


def _codetron(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "codetron", *argv], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)


# ---- a full disk ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real file system of a given size (tmpfs, needs root), unmounted afterwards."""
    mounted: list[Path] = []

    def make(size_bytes: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); needs root")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


CKPT_BYTES = 2_820_191  # one debug-tiny checkpoint with its Adam state, 28xxxxx with the config (run8's manifests)


def _train_on(disk: Path, synthetic_data, tmp_path, fake_free: bool = False) -> subprocess.CompletedProcess:
    args = ["train", *base_args(synthetic_data, 6), "--checkpoint.save", str(disk / "ck"), "--checkpoint.save_interval",
            "3", "--logging.loss_log", str(tmp_path / "loss.jsonl")]
    code = "import sys; from codetron.cli import main; sys.exit(main(sys.argv[1:]))"
    if fake_free:  # the free-space check sees plenty, so the save itself meets ENOSPC
        code = ("import shutil; real = shutil.disk_usage; "
                "shutil.disk_usage = lambda p: real(p)._replace(free=10**15); " + code)
    return subprocess.run([PYTHON, "-c", code, *args], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=240)


def _assert_failed_cleanly(proc, ck: Path, message: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.fullmatch(message, proc.stderr.strip().splitlines()[-1]), proc.stderr.strip().splitlines()[-1]
    state = json.loads((ck / "run_state.json").read_text())
    assert (state["state"], state["iteration"], state["checkpoint"]) == ("failed", 6, 3)
    # the previous checkpoint is whole and still the tracker's; nothing of the failed save is left
    assert checkpointing.latest_iteration(ck) == 3
    assert checkpointing.checkpoint_damage(ck / "iter_0000003", hashes=True) is None
    assert sorted(p.name for p in ck.glob("iter_*")) == ["iter_0000003"]


@pytest.mark.slow
def test_free_space_check_stops_before_a_save_that_cannot_fit(small_disk, synthetic_data, tmp_path):
    disk = small_disk(int(CKPT_BYTES * 1.6))
    proc = _train_on(disk, synthetic_data, tmp_path)
    ck = disk / "ck"
    _assert_failed_cleanly(proc, ck, (
        rf"codetron train: error: {re.escape(str(ck))}: \d+ bytes free, checkpoint 6 needs about 28\d{{5}} \(the "
        rf"size of iter_0000003\); not saving; the previous checkpoint {re.escape(str(ck / 'iter_0000003'))} is "
        rf"intact; free space or move checkpoint.save, then resume"))


@pytest.mark.slow
def test_disk_full_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(small_disk, synthetic_data, tmp_path):
    disk = small_disk(int(CKPT_BYTES * 1.6))
    proc = _train_on(disk, synthetic_data, tmp_path, fake_free=True)
    ck = disk / "ck"
    _assert_failed_cleanly(proc, ck, (
        rf"codetron train: error: {re.escape(str(ck / 'iter_0000006'))}: no space left on device while saving "
        rf"checkpoint 6; it needs more than the \d+ bytes written \(the last checkpoint took 28\d{{5}}\), \d+ "
        rf"bytes are free after removing the partial save; the previous checkpoint "
        rf"{re.escape(str(ck / 'iter_0000003'))} is intact"))
