"""Acceptance on a real Slurm: preemption -> checkpoint -> requeue -> resume, and array + merge."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest


pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ITERS = 120
PYTHON = sys.executable


def _loss_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("tiny") / "syn"), 256)


@pytest.mark.timeout(420)
def test_preempted_job_checkpoints_requeues_and_matches_uninterrupted_run(slurm_cluster, job_env, tiny_data, tmp_path, render):
    logs = tmp_path / "logs"
    render(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--python", PYTHON,
            "--log-dir", str(logs), "--data", tiny_data, "--tokenizer", "null:256", "-o", str(tmp_path),
            "--optim.train_iters", str(ITERS), "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "1"])
    script = tmp_path / "debug-tiny.sbatch"
    logs.mkdir()

    def submit(tag: str) -> tuple[str, Path, Path]:
        save, loss = tmp_path / f"ck-{tag}", tmp_path / f"loss-{tag}.jsonl"
        # Plain sbatch with environment overrides, as an operator would.
        job = slurm_cluster.sbatch(script, f"--job-name=tiny-{tag}", cwd=str(tmp_path),
                                   env={**job_env, "SAVE_DIR": str(save), "EXTRA_ARGS": f"--logging.loss_log {loss}"})
        return job, save, loss

    ref_job, ref_save, ref_loss = submit("ref")
    job, save, loss = submit("pre")
    # Signal the batch shell only, exactly as --signal=B:USR1@N does at the time limit.
    deadline = time.time() + 180
    while len(_loss_log(loss)) < 5:
        assert time.time() < deadline, f"no training progress; log: {_job_log(logs, job)}"
        assert slurm_cluster.states(job) in (["RUNNING"], ["PENDING"]), _job_log(logs, job)
        time.sleep(0.2)
    slurm_cluster.cmd("scancel", "--batch", "--signal=USR1", job)

    slurm_cluster.wait(ref_job, "COMPLETED", timeout=240)
    slurm_cluster.wait(job, "COMPLETED", timeout=240)
    text = _job_log(logs, job)
    info = slurm_cluster.job(job)
    assert info.get("Restarts") == "1", text
    assert "asking the trainer to checkpoint and exit" in text
    assert "run state preempted" in text and "requeueing job" in text
    assert "resumed from" in text and "run state finished" in text  # the second run, same job id, same log
    state = json.loads((save / "run_state.json").read_text())
    assert state["state"] == "finished" and state["iteration"] == ITERS

    ref, got = _loss_log(ref_loss), _loss_log(loss)
    steps = [r["step"] for r in got]
    assert steps == list(range(1, ITERS + 1)), "the resumed run must continue exactly where the first stopped"
    preempted_at = int(text.split("exit requested: checkpointed step ")[1].split()[0])
    assert 5 <= preempted_at < ITERS
    assert [r["step"] for r in ref] == steps
    # Same data order and schedule after the resume: the curves agree step for step.
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in ref], rtol=1e-5, atol=0)
    np.testing.assert_allclose([r["lr"] for r in got], [r["lr"] for r in ref], rtol=1e-9)
    np.testing.assert_allclose([r["grad_norm"] for r in got], [r["grad_norm"] for r in ref], rtol=1e-4)


def _job_log(logs: Path, job: str) -> str:
    files = list(logs.glob(f"*-{job}.out"))
    return files[0].read_text() if files else f"(no log for job {job} in {logs})"


def _documents(prefix: str) -> list[tuple]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(prefix)
    docs = ds.document_indices
    return [tuple(tuple(ds[s].tolist()) for s in range(docs[d], docs[d + 1])) for d in range(len(docs) - 1)]


@pytest.mark.timeout(300)
def test_preprocess_array_then_merge_equals_one_process(slurm_cluster, job_env, tmp_path, render):
    import subprocess

    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for f in range(8):
        with open(raw / f"part-{f}.jsonl", "w") as fh:
            for i in range(12):
                body = "\n".join(f"    x{j} = {int(rng.integers(1e6))} + {j} * {f}" for j in range(int(rng.integers(3, 15))))
                fh.write(json.dumps({"content": f"def f_{f}_{i}():\n{body}\n    return x0\n",
                                     "max_stars_repo_name": f"org/repo{f}", "max_stars_repo_path": f"src/m{i}.py",
                                     "max_stars_count": int(i * 7)}) + "\n")
    out = tmp_path / "data" / "code"
    render(["render", "preprocess", "--mode", "code", "--inputs", str(raw / "*.jsonl"), "--output", str(out),
            "--shards", "4", "--profile", "local-cpu", "--python", PYTHON, "--log-dir", str(tmp_path / "logs"),
            "-o", str(tmp_path), "--", "--workers", "1"])
    (tmp_path / "logs").mkdir()
    arr = slurm_cluster.sbatch(tmp_path / "preprocess-code.sbatch", cwd=str(tmp_path), env=job_env)
    merge = slurm_cluster.sbatch(tmp_path / "preprocess-code-merge.sbatch", f"--dependency=afterok:{arr}",
                                 cwd=str(tmp_path), env=job_env)
    slurm_cluster.wait(merge, "COMPLETED", timeout=240)
    assert slurm_cluster.states(arr) == ["COMPLETED"] * 4
    shards = sorted((tmp_path / "data" / "code.shards").glob("shard-*.idx"))
    assert [p.stem for p in shards] == [f"shard-{i:05d}" for i in range(4)]

    single = tmp_path / "single" / "code"
    proc = subprocess.run([PYTHON, "-m", "codetron", "preprocess", "code", str(raw / "*.jsonl"), "-o", str(single),
                           "--workers", "1", "--quiet"], env=job_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    merged, one = _documents(str(out)), _documents(str(single))
    assert len(one) == 96 and len(merged) == len(one)
    # Shards take every 4th file, so the merged order differs; the documents are the same.
    assert sorted(merged) == sorted(one)
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert summary["docs_kept"] == 96


def _rank_pid(job: str, rank: int) -> int | None:
    """PID of training rank ``rank`` of Slurm job ``job`` (found by its environment, not by name)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            environ, cmdline = (d / "environ").read_bytes().split(b"\0"), (d / "cmdline").read_bytes()
        except OSError:
            continue
        if (b"codetron\0train" in cmdline and b"multiprocessing" not in cmdline
                and f"SLURM_JOB_ID={job}".encode() in environ and f"SLURM_PROCID={rank}".encode() in environ):
            return int(d.name)
    return None


def _wait_for(what: str, cond, timeout: float, log) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}; log:\n{log()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.timeout(420)
def test_killed_rank_requeues_and_scancel_ends_the_job(slurm_cluster, job_env, tiny_data, tmp_path, render):
    """One job, hostile submit environment: a rank killed with -9 requeues (run state "failed" in
    between, not "running"), the requeued run resumes, then scancel ends it CANCELLED for good."""
    import os
    import signal

    logs, save = tmp_path / "logs", tmp_path / "ck"
    render(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--python", PYTHON,
            "--log-dir", str(logs), "--data", tiny_data, "--tokenizer", "null:256", "-o", str(tmp_path),
            "--optim.train_iters", "5000", "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--checkpoint.save_interval", "5"])
    logs.mkdir()
    # What a login shell that once ran torchrun may still export: none of it may reach the ranks.
    stale = {"MASTER_ADDR": "10.255.255.1", "MASTER_PORT": "1", "RANK": "5", "WORLD_SIZE": "9", "LOCAL_RANK": "3"}
    job = slurm_cluster.sbatch(tmp_path / "debug-tiny.sbatch", cwd=str(tmp_path), env={**job_env, **stale, "SAVE_DIR": str(save)})
    log = lambda: _job_log(logs, job)  # noqa: E731
    state = lambda: json.loads((save / "run_state.json").read_text())["state"]  # noqa: E731

    _wait_for("a first checkpoint", lambda: (save / "latest_checkpointed_iteration.txt").exists(), 200, log)
    pid = _rank_pid(job, 1)
    assert pid is not None, log()
    os.kill(pid, signal.SIGKILL)
    _wait_for("the requeue", lambda: slurm_cluster.job(job).get("Restarts") == "1", 60, log)
    assert state() == "failed", log()  # the killed trainer could not say so itself
    assert "a rank was killed (exit 1" in log() and "requeueing job" in log()

    _wait_for("the resumed run", lambda: "resumed from" in log() and state() == "running", 200, log)
    slurm_cluster.cmd("scancel", job)
    slurm_cluster.wait(job, "CANCELLED", timeout=60)
    time.sleep(3)  # a self-requeue would show by now (the job leaves CANCELLED at once)
    info = slurm_cluster.job(job)
    assert (info.get("JobState"), info.get("Restarts")) == ("CANCELLED", "1"), log()
    text = log()
    assert "cancelled: not requeueing" in text and text.count("requeueing job") == 1
    assert state() == "cancelled"

    # Slurm's rendezvous, not the stale one; a port below the kernel's ephemeral range.
    masters = [line.rsplit("master ", 1)[1] for line in text.splitlines() if "[codetron] job" in line]
    assert len(masters) == 2
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for master in masters:
        addr, port = master.rsplit(":", 1)
        assert addr == "localhost" and 20000 <= int(port) < low, master


@pytest.mark.timeout(600)
def test_usr1_to_the_tasks_and_to_the_shell_with_periodic_saves(slurm_cluster, job_env, tiny_data, tmp_path, render):
    """`scancel -s USR1 JOB` (no -b) reaches every process of the step: the checkpoint writers and
    their results Manager too. With periodic saves on, they used to die of it (BrokenPipeError in the
    exit save, requeued as a killed rank). Now both ways checkpoint and requeue, and the curve of the
    twice-interrupted run equals an uninterrupted one."""
    iters = 100
    logs = tmp_path / "logs"
    render(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--python", PYTHON,
            "--log-dir", str(logs), "--data", tiny_data, "--tokenizer", "null:256", "-o", str(tmp_path),
            "--optim.train_iters", str(iters), "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "1", "--checkpoint.save_interval", "3"])
    logs.mkdir()
    runs = {}
    for tag in ("ref", "sig"):
        save, loss = tmp_path / f"ck-{tag}", tmp_path / f"loss-{tag}.jsonl"
        runs[tag] = (slurm_cluster.sbatch(tmp_path / "debug-tiny.sbatch", f"--job-name=tiny-{tag}", cwd=str(tmp_path),
                                          env={**job_env, "SAVE_DIR": str(save),
                                               "EXTRA_ARGS": f"--logging.loss_log {loss}"}), save, loss)
    job, save, loss = runs["sig"]
    log = lambda: _job_log(logs, job)  # noqa: E731

    # 1: to the tasks, after periodic checkpoints were written
    _wait_for("two periodic checkpoints", lambda: len(_loss_log(loss)) >= 7
              and (save / "latest_checkpointed_iteration.txt").exists(), 200, log)
    slurm_cluster.cmd("scancel", "--signal=USR1", job)
    _wait_for("the first requeue", lambda: slurm_cluster.job(job).get("Restarts") == "1", 120, log)
    # 2: to the batch shell (what --signal=B:USR1@N does at the time limit), after the resume saved again
    _wait_for("the resumed run's checkpoints", lambda: log().count("resumed from") == 1
              and log().count("saved checkpoint") >= 4, 200, log)
    slurm_cluster.cmd("scancel", "--batch", "--signal=USR1", job)
    slurm_cluster.wait(runs["ref"][0], "COMPLETED", timeout=300)
    slurm_cluster.wait(job, "COMPLETED", timeout=300)

    text = log()
    assert slurm_cluster.job(job).get("Restarts") == "2", text
    assert text.count("exit requested: checkpointed step") == 2 and text.count("run state preempted") == 2, text
    assert "BrokenPipe" not in text and "Traceback" not in text and "a rank was killed" not in text, text
    assert text.count("requeueing job") == 2 and "run state finished" in text
    state = json.loads((save / "run_state.json").read_text())
    assert (state["state"], state["iteration"], state["checkpoint"]) == ("finished", iters, iters)
    ref, got = _loss_log(runs["ref"][2]), _loss_log(loss)
    assert [r["step"] for r in got] == [r["step"] for r in ref] == list(range(1, iters + 1))
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in ref], rtol=1e-5, atol=0)
