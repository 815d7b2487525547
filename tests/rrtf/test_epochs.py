"""``optim.train_epochs``: train_iters from the dataset size, for RRTF pairs and SFT rows."""
import math

import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext.config import TrainConfig
from codetron.megatron_ext.objectives import resolve_train_epochs
from codetron.megatron_ext.tokenizer_info import NullTokenizer
from tests.rrtf.conftest import VOCAB, read_jsonl, run_cli, synthetic_pairs


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory) -> str:
    from codetron.megatron_ext.rrtf.pairs import write_pairs

    prefix = str(tmp_path_factory.mktemp("small") / "pairs")
    write_pairs(prefix, synthetic_pairs(15), VOCAB, VOCAB - 1)
    return prefix


def _cfg(prefix, epochs, gbs=8, split="1,0,0", mode="rrtf") -> TrainConfig:
    cfg = TrainConfig()
    cfg.data.data_path, cfg.data.mode, cfg.data.split = [prefix], mode, split
    cfg.optim.train_epochs, cfg.optim.global_batch_size = epochs, gbs
    return cfg


@pytest.mark.parametrize("epochs, gbs, split, rows, iters", [
    (2, 8, "1,0,0", 30, 8),        # 15 pairs = 30 rows; 60 rows / 8 -> 7.5 -> 8 steps
    (6, 10, "1,0,0", 30, 18),      # the recipe's 6 epochs: exactly 180 / 10
    (2, 8, "80,20,0", 24, 6),      # only the train split's 12 pairs count
    (0.1, 3, "1,0,0", 30, 1),      # 3 rows in 3-row batches: one step, whatever 0.1 x 30 is in binary
])
def test_rrtf_epochs_become_train_iters(small_pairs, capsys, epochs, gbs, split, rows, iters):
    cfg = _cfg(small_pairs, epochs, gbs, split)
    resolve_train_epochs(cfg, NullTokenizer(VOCAB), rank0=True)
    assert cfg.optim.train_iters == iters == math.ceil(epochs * rows / gbs - 1e-9)
    out = capsys.readouterr().out
    assert f"train_epochs {epochs:g} over {rows} rows at global batch {gbs} -> train_iters {iters}" in out
    assert "replaces optim.train_iters 20" in out  # the default it overrode is named


def test_epochs_none_keeps_train_iters(small_pairs, capsys):
    cfg = _cfg(small_pairs, None)
    cfg.optim.train_iters = 7
    resolve_train_epochs(cfg, NullTokenizer(VOCAB), rank0=True)
    assert cfg.optim.train_iters == 7 and capsys.readouterr().out == ""


def test_bad_epochs_are_config_errors_before_any_process_group(small_pairs):
    from codetron.megatron_ext.validate import validate

    cfg = _cfg(small_pairs, 0)
    with pytest.raises(ConfigError, match=r"optim.train_epochs 0(\.0)?: must be a number > 0"):
        validate(cfg, 1)
    cfg = _cfg(small_pairs, 2, mode="pretrain")
    with pytest.raises(ConfigError, match="optim.train_epochs: data.mode pretrain has no epoch"):
        validate(cfg, 1)
    cfg = _cfg(small_pairs, 2)
    cfg.data.rrtf_loss = "dpo"
    with pytest.raises(ConfigError, match="data.rrtf_loss 'dpo': choose from paper, weighted"):
        validate(cfg, 1)


def test_rrtf_recipe_trains_six_epochs_with_the_paper_loss():
    from codetron.megatron_ext.presets import RECIPES, resolve_config

    cfg = resolve_config(recipe="rrtf")
    assert cfg.optim.train_epochs == 6 and cfg.data.rrtf_loss == "paper"
    assert RECIPES["rrtf"].settings.train_epochs == 6  # a typed training setting, not an unread note


@pytest.mark.slow
def test_tiny_rrtf_run_trains_the_epoch_count(small_pairs, tmp_path):
    """2 epochs of 15 pairs at 8 rows per step: ceil(60 / 8) = 8 steps, the LR schedule sized to
    them, and the step line shows both RRTF terms."""
    log = tmp_path / "loss.jsonl"
    proc = run_cli(["train", "--preset", "debug-tiny", "--data.data_path", small_pairs, "--data.tokenizer",
                    f"null:{VOCAB}", "--data.mode", "rrtf", "--optim.train_epochs", "2",
                    "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2", "--model.seq_length", "64",
                    "--model.num_layers", "2", "--optim.lr_warmup_iters", "0", "--optim.lr_decay_style", "linear",
                    "--optim.lr", "1e-3", "--optim.min_lr", "1e-4", "--logging.loss_log", str(log)], timeout=300)
    assert "train_epochs 2 over 30 rows at global batch 8 -> train_iters 8" in proc.stdout
    assert "training finished at step 8" in proc.stdout
    rows = read_jsonl(log)
    assert [r["step"] for r in rows] == list(range(1, 9))
    # linear decay over the resolved 8 steps ends at min_lr; over the default 20 it would still be high
    assert rows[-1]["lr"] == pytest.approx(1e-4, rel=1e-6)
    step_lines = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("step ")]
    assert len(step_lines) == 8
    assert all("rank loss" in line and "ft loss" in line for line in step_lines), step_lines[0]
