"""StarCoder2 on megatron-core's knobs: GQA, RoPE, sliding window, untied output.

* sliding window: the local and SDPA specs with a window smaller than the sequence equal the
  window-less model given a dense mask built from the definition, for causal and packed batches;
* layouts: the tiny StarCoder2 (4 heads, 2 KV groups) trains identically in one process, TP2xPP2
  (TP splits the groups), TP4 (beyond the groups: megatron-core replicates each group on two ranks)
  and TP2xPP2xVPP2, from one shared initial checkpoint;
* bad input: KV groups TP cannot split, a GPTBigCode config or checkpoint given to a StarCoder2 preset.
"""
from __future__ import annotations

import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from tests.conftest import run_check_script
from tests.helpers.runs import parity_runs
from tests.train.conftest import VOCAB, assert_curves_match

ITERS = 5


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return run_check_script("tests/train/starcoder2_checks.py", tmp_path_factory.mktemp("sc2_checks"))


def test_window_is_really_applied(checks):
    # inside the first window nothing changes; past it every position sees fewer keys
    assert checks["window_effect_early"] == 0.0
    assert checks["window_effect_late"] > 0.1 * checks["logit_scale"]


@pytest.mark.parametrize("impl", ["local", "sdpa"])
def test_sliding_window_matches_dense_mask(checks, impl):
    r = checks[impl]
    assert r["vs_dense_window"] < 1e-5, r
    assert r["packed_vs_dense"] < 1e-5, r  # packed SFT rows keep their block mask under the window
    assert r["packed_window_effect"] > 0.1, r
    if impl == "local":
        assert r["windowed_core"], r


def sc2_args(data: str, iters: int) -> list[str]:
    return ["--preset", "debug-starcoder2", "--data.data_path", data, "--data.tokenizer", f"null:{VOCAB}",
            "--optim.train_iters", str(iters), "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "1"]


LAYOUTS = {
    "tp2pp2": (4, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]),
    "tp4": (4, ["--parallel.tensor_model_parallel_size", "4"]),
    "tp2pp2_vpp2": (4, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2",
                        "--parallel.virtual_pipeline_model_parallel_size", "2"]),
}


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    done = parity_runs(tmp_path_factory.mktemp("sc2_parity"), sc2_args(synthetic_data, 0),
                       {name: (nproc, sc2_args(synthetic_data, ITERS) + extra)
                        for name, (nproc, extra) in {"ref": (1, []), **LAYOUTS}.items()}, save=False)
    return {name: run.log for name, run in done.items()}


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_starcoder2_layout_matches_single_process(runs, layout):
    assert_curves_match(runs["ref"], runs[layout], ITERS, layout)


def _cfg(**overrides):
    from codetron.megatron_ext.presets import resolve_config

    return resolve_config("debug-starcoder2", overrides=overrides)


def test_kv_groups_tp_cannot_split_is_one_line():
    from codetron.megatron_ext.validate import validate

    # 6 heads / 2 KV groups over TP3: heads split, groups neither split nor replicate evenly
    cfg = _cfg(**{"model.hidden_size": 96, "model.num_attention_heads": 6, "parallel.tensor_model_parallel_size": 3,
                  "optim.global_batch_size": 6})
    with pytest.raises(ConfigError, match=r"num_query_groups 2 \(KV heads\) cannot be split over tensor_model_parallel_size 3"):
        validate(cfg, world_size=3, check_data=False)
    for tp in (1, 2, 4):  # up to the groups and beyond them, as megatron-core allows
        validate(_cfg(**{"parallel.tensor_model_parallel_size": tp}), world_size=4, check_data=False)


def test_gpt_bigcode_config_for_a_starcoder2_preset_is_one_line():
    from codetron.megatron_ext.validate import validate

    with pytest.raises(ConfigError, match="model.family gpt_bigcode contradicts preset debug-starcoder2"):
        validate(_cfg(**{"model.family": "gpt_bigcode", "model.sliding_window": None}), world_size=1,
                 check_data=False)
    with pytest.raises(ConfigError, match="sliding_window needs model.family starcoder2"):
        from codetron.megatron_ext.presets import resolve_config

        validate(resolve_config("debug-tiny", overrides={"model.sliding_window": 16}), world_size=1, check_data=False)


def test_gpt_bigcode_checkpoint_for_a_starcoder2_preset_is_one_line(tmp_path):
    from codetron.megatron_ext.config import TrainConfig
    from codetron.megatron_ext.presets import check_family, resolve_config

    it = tmp_path / "ckpt" / "iter_0000000"
    it.mkdir(parents=True)
    (it / "metadata.json").write_text("{}")
    (it / "codetron_config.yaml").write_text(TrainConfig(model=resolve_config("debug-tiny").model).to_yaml())
    (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").write_text("0")
    cfg = _cfg(**{"checkpoint.load": str(tmp_path / "ckpt"), "checkpoint.finetune": True})
    with pytest.raises(ConfigError, match="checkpoint.load is a gpt_bigcode model but model.family is starcoder2"):
        check_family(cfg)


def test_starcoder2_presets_have_the_published_shapes():
    from codetron.megatron_ext.presets import get_model_preset

    # total parameters as published (3.03B, 7.17B, 15.96B by the model cards' counts)
    for name, billions in (("starcoder2-3b", 3.03), ("starcoder2-7b", 7.17), ("starcoder2-15b", 15.96)):
        m = get_model_preset(name).model
        assert m.family == "starcoder2" and m.sliding_window == 4096 and m.positions == 16384
        assert abs(families.num_parameters(m) / 1e9 - billions) < 0.01, (name, families.num_parameters(m))
