"""``model.transformer_impl: sdpa``: torch SDPA core attention equals megatron's local attention.

Same weights, fp32 on CPU: logits within 1e-5 and every parameter gradient within 1e-5 (relative to
its largest entry) for causal, padded (including queries that see no key at all) and packed SFT
batches, with MQA, GQA and MHA. Then a TP2 training run with SDPA (and selective recompute, which
re-runs the SDPA core attention in backward) follows the local spec's loss curve.
"""
import json
import subprocess

import pytest
import torch

from codetron.errors import ConfigError
from tests.conftest import PYTHON, ROOT, run_check_script, subprocess_env
from tests.train.conftest import base_args, read_log, run_train


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return run_check_script("tests/train/sdpa_checks.py", tmp_path_factory.mktemp("sdpa_checks"))


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("case", ["causal", "padded", "packed"])
def test_sdpa_logits_and_grads_match_local_spec(checks, case, groups):
    r = checks[f"{case}/g{groups}"]
    assert r["finite"], r  # fully masked query rows: NaN in some SDPA kernels
    assert r["logits"] < 1e-5, r
    assert r["grads"] < 1e-5, r
    assert r["logit_scale"] > 0.5  # logits are not trivially small, so 1e-5 is a real bound
    if case != "causal":
        assert r["mask_effect"] > 1e-2, r  # the mask changes the result: it really was applied


def test_packed_batch_holds_several_documents_per_row(checks):
    # the shuffle is salted by the dataset's (tmp) path: rows held [2, 3], [3, 4], [4, 3] documents
    assert all(n >= 2 for n in checks["packed_segments"]), checks["packed_segments"]


def test_attention_dropout_uses_the_model_parallel_rng_and_only_in_training(checks):
    d = checks["dropout"]
    assert d["same_seed"] == 0.0  # the tracker's seed fixes the dropout pattern
    assert d["other_seed"] > 1e-3 and d["train_vs_eval"] > 1e-3  # dropout really is applied in training
    assert d["eval_vs_nodrop"] == 0.0  # and not at all in eval


def test_auto_picks_te_then_sdpa_on_gpu_else_local(monkeypatch):
    from codetron.megatron_ext import model as model_mod
    from codetron.megatron_ext.config import ModelConfig

    cfg = ModelConfig(transformer_impl="auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(model_mod, "have_transformer_engine", lambda: True)
    assert model_mod.resolve_impl(cfg) == "transformer_engine"
    monkeypatch.setattr(model_mod, "have_transformer_engine", lambda: False)
    assert model_mod.resolve_impl(cfg) == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert model_mod.resolve_impl(cfg) == "local"
    assert model_mod.resolve_impl(ModelConfig(transformer_impl="sdpa")) == "sdpa"  # explicit sdpa runs on CPU too


def test_unknown_impl_is_a_config_error_before_any_process_group():
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.validate import validate

    cfg = resolve_config("debug-tiny", overrides={"model.transformer_impl": "flash"})
    with pytest.raises(ConfigError, match="model.transformer_impl .*sdpa"):
        validate(cfg, 1, check_data=False)


@pytest.mark.slow
def test_tp2_training_with_sdpa_and_selective_recompute_follows_local(synthetic_data, tmp_path):
    tp2 = ["--parallel.tensor_model_parallel_size", "2"]
    local, sdpa = tmp_path / "local.jsonl", tmp_path / "sdpa.jsonl"
    run_train(base_args(synthetic_data, 6) + tp2 + ["--model.transformer_impl", "local",
                                                     "--logging.loss_log", str(local)], nproc=2)
    proc = run_train(base_args(synthetic_data, 6) + tp2 + ["--model.transformer_impl", "sdpa", "--model.recompute",
                                                            "selective", "--logging.loss_log", str(sdpa)], nproc=2)
    a, b = read_log(local), read_log(sdpa)
    assert len(a) == len(b) == 6
    assert a[-1]["loss"] < a[0]["loss"] - 0.05  # it trains, so the curves compared are not flat
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) < 1e-5, (x, y)
        assert abs(x["grad_norm"] - y["grad_norm"]) < 1e-4 * max(1.0, x["grad_norm"]), (x, y)
    # Fusions are announced once, from rank 0 only, with the reason.
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("fusions off")]
    assert lines == ["fusions off (no CUDA; their kernels are CUDA-only): masked softmax, bias-dropout-add, "
                     "bias-GELU, gradient-accumulation, persistent layer norm"], lines
