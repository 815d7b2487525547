"""Step line and loss-report reduction: extra loss terms, real (non-pad) tokens beside positions."""
import json
import subprocess

import numpy as np
import pytest
import torch

from codetron.megatron_ext.config import LoggingConfig, ModelConfig
from codetron.megatron_ext.metrics import (LM_LOSS, REAL_TOKENS, StepLogger, StepReport, real_token_count, reduce_reports,
                                  with_real_tokens)
from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env
from tests.train.conftest import read_log, run_train


def _rep(s, n):
    return torch.tensor([float(s), float(n)])


def test_step_line_prints_extra_terms_after_the_loss_and_real_tokens_beside_positions(capsys, tmp_path):
    log = tmp_path / "loss.jsonl"
    logger = StepLogger(LoggingConfig(loss_log=str(log)), ModelConfig(), 256, world_size=1, enabled=True,
                        tensorboard_dir=None)
    logger.log_step(7, 20, 2.5, 0.75, 1e-3, tokens=4000, seconds=2.0, real_tokens=3000.0,
                    extras={"rank loss": 0.125, "ft loss": 2.375})
    logger.close()
    line = capsys.readouterr().out.strip()
    assert line.startswith("step      7/20 | loss 2.500000 | rank loss 0.125000 | ft loss 2.375000 | grad_norm 0.7500 | "
                           "lr 1.000e-03 | tok/s    2000.0 (real    1500.0) | mfu   n/a | mem "), line
    rec = read_log(log)[0]
    assert rec["loss"] == 2.5 and rec["rank_loss"] == 0.125 and rec["ft_loss"] == 2.375
    assert rec["tokens_per_s"] == 2000.0 and rec["real_tokens_per_s"] == 1500.0


def test_step_line_without_extras_keeps_the_documented_columns(capsys):
    logger = StepLogger(LoggingConfig(), ModelConfig(), 256, world_size=1, enabled=True, tensorboard_dir=None)
    logger.log_step(1, 2, 5.0, None, 0.0, tokens=100, seconds=1.0)
    cols = [c.split()[0] for c in capsys.readouterr().out.strip().split(" | ")]
    assert cols == ["step", "loss", "grad_norm", "lr", "tok/s", "mfu", "mem"]


def test_real_token_count_is_the_extent_up_to_the_last_target():
    mask = torch.tensor([
        [0, 0, 1, 1, 1, 0, 0, 0],   # prompt 2, response 3, then padding -> 5 real positions
        [1, 1, 1, 1, 1, 1, 1, 1],   # full pretraining row -> 8
        [0, 0, 0, 0, 0, 0, 0, 0],   # no target at all (megatron's batch-padding sample) -> 0
        [0, 1, 0, 0, 1, 1, 0, 0],   # packed: doc (prompt 1, resp 1), doc (prompt 2, resp 2), pad -> 6
    ], dtype=torch.float32)
    assert int(real_token_count(mask)) == 5 + 8 + 0 + 6
    # norm-target-loss weights (1/n) count the same as ones
    assert int(real_token_count(mask * 0.25)) == 19


def test_with_real_tokens_adds_the_count_to_the_report_and_keeps_the_loss():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1.0]])

    def loss_fn(out):
        s = (out * mask).sum()
        return s, mask.sum().int(), {LM_LOSS: torch.stack([s.detach(), mask.sum()])}

    out = torch.arange(8.0).view(2, 4)
    loss, n, rep = with_real_tokens(loss_fn, mask)(out)
    assert float(loss) == 1 + 2 + 4 + 5 + 6 + 7 and int(n) == 6
    assert rep[REAL_TOKENS].tolist() == [3.0 + 4.0, 1.0] and rep[LM_LOSS].tolist() == [25.0, 6.0]
    assert with_real_tokens(loss_fn, None) is loss_fn


def test_reduce_reports_sums_every_key_in_one_process():
    dicts = [{LM_LOSS: _rep(6.0, 3), "rank loss": _rep(1.0, 2), "ft loss": _rep(5.0, 2), REAL_TOKENS: _rep(10, 1)},
             {LM_LOSS: _rep(2.0, 1), "rank loss": _rep(0.5, 1), "ft loss": _rep(1.5, 1), REAL_TOKENS: _rep(7, 1)}]
    r = reduce_reports(dicts, exit_local=True)
    assert r.loss == 8.0 / 4 and r.want_exit and r.real_tokens == 17.0
    assert r.extras() == {"rank loss": 1.5 / 3, "ft loss": 6.5 / 3}  # in the objective's order
    assert list(r.extras()) == ["rank loss", "ft loss"]
    # a rank whose reports are copies (TP rank > 0) contributes nothing
    silent = reduce_reports(dicts, reporting=False)
    assert silent.sums == {} and silent.loss == 0.0 and not silent.want_exit and silent.real_tokens is None
    assert StepReport(sums={LM_LOSS: 3.0}, counts={LM_LOSS: 0.0}).loss == 3.0  # no tokens: no division by 0


REDUCE_2RANKS = r"""
import json, sys, torch, torch.distributed as dist
from codetron.megatron_ext.metrics import reduce_reports
dist.init_process_group("gloo")
r = dist.get_rank()
# rank 0 plays a first pipeline stage (no reports) that asks to exit; rank 1 the last stage
dicts = [] if r == 0 else [{"lm loss": torch.tensor([4.0, 2.0]), "rank loss": torch.tensor([1.0, 2.0])},
                           {"lm loss": torch.tensor([2.0, 2.0]), "rank loss": torch.tensor([3.0, 2.0])}]
rep = reduce_reports(dicts, exit_local=(r == 0))
with open(f"{sys.argv[1]}/rank{r}.json", "w") as f:
    json.dump({"rank": r, "sums": rep.sums, "counts": rep.counts, "exit": rep.want_exit}, f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_reduce_reports_agrees_on_keys_across_ranks_that_hold_none(tmp_path):
    script = tmp_path / "reduce.py"
    script.write_text(REDUCE_2RANKS)
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path)], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(r["rank"] for r in out) == [0, 1]
    for rec in out:
        assert rec["sums"] == {"lm loss": 6.0, "rank loss": 4.0} and rec["counts"] == {"lm loss": 4.0, "rank loss": 4.0}
        assert list(rec["sums"]) == ["lm loss", "rank loss"] and rec["exit"] is True


@pytest.mark.slow
def test_sft_run_reports_real_tokens_and_pretraining_has_no_padding(tmp_path, synthetic_data):
    """Every SFT document is 30 tokens (prompt 10, response 19 + EOD): a row of 64 positions holds 29
    real inputs and 35 pads, so real tok/s is exactly 29/64 of positional tok/s in every step."""
    from tests.objectives.conftest import write_sft

    vocab, eod = 256, 255
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 250, 10).tolist(), rng.integers(0, 250, 19).tolist() + [eod]) for _ in range(64)]
    sft = write_sft(str(tmp_path / "sft"), pairs, vocab)
    common = ["--preset", "debug-tiny", "--data.tokenizer", f"null:{vocab}", "--model.seq_length", "64",
              "--optim.train_iters", "2", "--optim.global_batch_size", "4", "--optim.micro_batch_size", "2",
              "--data.split", "100,0,0"]
    log = tmp_path / "sft.jsonl"
    out = run_train(common + ["--data.data_path", sft, "--data.mode", "sft", "--data.pack", "false",
                              "--data.eod_mask_loss", "false", "--logging.loss_log", str(log)]).stdout
    assert "(real " in out
    for rec in read_log(log):
        assert rec["real_tokens_per_s"] / rec["tokens_per_s"] == pytest.approx(29 / 64, rel=1e-12)
    log = tmp_path / "pre.jsonl"
    run_train(common + ["--data.data_path", synthetic_data, "--logging.loss_log", str(log)])
    for rec in read_log(log):
        assert rec["real_tokens_per_s"] == pytest.approx(rec["tokens_per_s"], rel=1e-12)
