"""``data.num_workers``: micro-batches are read in DataLoader worker processes, and a run trains
exactly as with in-process loading (every sample is a function of its index alone)."""
import os

import pytest
import torch

from codetron.megatron_ext.training import MicroBatches
from tests.train.conftest import base_args, read_log, run_train


class _IndexedSamples:
    """Sample ``i`` is ``[i, i+1, i+2]``, tagged with the process that read it."""

    def __len__(self):
        return 50

    def __getitem__(self, i):
        return {"tokens": torch.arange(i, i + 3), "pid": os.getpid()}


def _collate(samples):
    return {"tokens": torch.stack([s["tokens"] for s in samples]),
            "pids": torch.tensor([s["pid"] for s in samples])}


def _batches(num_workers, dp_rank=1):
    # global batch 8, micro 2, DP2 -> 2 micro-batches per rank per step; steps 5 and 6 wrap past 50 samples
    return MicroBatches(_IndexedSamples(), _collate, 8, 2, dp_rank, 2, num_workers=num_workers)


def test_workers_read_the_same_micro_batches_in_other_processes():
    inline = [[b["tokens"].tolist() for b in step] for step in _batches(0).steps(4, 7)]
    worker_steps = list(_batches(2).steps(4, 7))
    assert [[b["tokens"].tolist() for b in step] for step in worker_steps] == inline
    # rank 1 of DP2, step 4: samples 4*8 + m*2*2 + 1*2 + [0, 1] -> 34, 35 then 38, 39
    assert [row[0] for row in inline[0][0]] == [34, 35] and [row[0] for row in inline[0][1]] == [38, 39]
    assert [row[0] for row in inline[2][1]] == [4, 5]  # step 6: 48 + 4 + 2 = 54, past 50 samples: wraps
    pids = {int(p) for step in worker_steps for b in step for p in b["pids"]}
    assert os.getpid() not in pids and len(pids) >= 1


def test_loading_leaves_the_dropout_stream_alone():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    for workers in (0, 2):
        list(_batches(workers).steps(0, 2))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow  # two DP2 runs, each rank with 2 loader processes: 28 CPU-seconds, the most of any fast test
def test_training_with_loader_workers_matches_in_process_loading(synthetic_data, tmp_path):
    """DP2 with dropout on: same losses and grad norms, bit for bit, with 0 and 2 workers per rank."""
    logs = {}
    for workers in (0, 2):
        logs[workers] = tmp_path / f"w{workers}.jsonl"
        run_train(base_args(synthetic_data, 3) + ["--data.num_workers", str(workers),
                                                  "--model.hidden_dropout", "0.1",
                                                  "--logging.loss_log", str(logs[workers])], nproc=2)
    a, b = read_log(logs[0]), read_log(logs[2])
    assert [r["step"] for r in a] == [1, 2, 3]
    assert [(r["loss"], r["grad_norm"]) for r in a] == [(r["loss"], r["grad_norm"]) for r in b]


def test_negative_worker_count_fails_in_one_line_before_any_process_group(synthetic_data):
    proc = run_train(base_args(synthetic_data, 1) + ["--data.num_workers", "-1"], check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == "codetron train: error: data.num_workers -1 must be >= 0 (0 = load batches in the training process)"
