"""Fused kernels are turned on only where they import; each one left off says why in one line.

The GPU machines these decisions are for are not here, so "CUDA present" and "kernel X imports" are
faked by replacing the two probes of ``codetron.megatron_ext.fusions``.
"""
import pytest
import torch
import torch.nn.functional as F

from codetron.megatron_ext import fusions

ALL_KERNELS = {"triton", "fused_weight_gradient_mlp_cuda", "scaled_upper_triang_masked_softmax_cuda",
               "scaled_masked_softmax_cuda", "apex", "apex.contrib.layer_norm.layer_norm"}
FLAGS = ("masked_softmax", "bias_dropout", "bias_gelu", "gradient_accumulation", "persist_layer_norm")


@pytest.fixture
def gpu_with(monkeypatch):
    """``gpu_with({...})``: a CUDA machine on which exactly these modules import."""
    def make(present: set[str]):
        monkeypatch.setattr(fusions, "cuda_available", lambda: True)
        monkeypatch.setattr(fusions, "importable", lambda name: name in present)
    return make


def flags(f: fusions.Fusions) -> dict[str, bool]:
    return {k: getattr(f, k) for k in FLAGS}


def test_cpu_turns_everything_off_in_one_line():
    f = fusions.choose("local", "bf16", explicit_masks=False)
    assert not any(flags(f).values())
    assert f.lines == ("fusions off (no CUDA; their kernels are CUDA-only): masked softmax, bias-dropout-add, "
                       "bias-GELU, gradient-accumulation, persistent layer norm",)


def test_gpu_without_te_apex_or_megatron_kernels(gpu_with):
    """The bare GPU machine of benchmarks/gpu_check.sh: CUDA torch (with triton), nothing else."""
    gpu_with({"triton"})
    f = fusions.choose("sdpa", "bf16", explicit_masks=False)
    assert flags(f) == dict(masked_softmax=False, bias_dropout=True, bias_gelu=True, gradient_accumulation=False,
                            persist_layer_norm=False)
    assert f.lines == (
        "fusion masked softmax off: sdpa attention does its own softmax",
        "fusion gradient-accumulation off: apex's fused_weight_gradient_mlp_cuda does not import (megatron's own "
        "linear layers need it, GPTModel's output layer included even under TransformerEngine)",
        "fusion persistent layer norm off: apex is not installed (megatron uses torch's LayerNorm, which has no such "
        "kernel)",
    )


def test_local_spec_on_gpu_needs_megatron_softmax_kernels(gpu_with):
    gpu_with({"triton"})
    f = fusions.choose("local", "bf16", explicit_masks=False)
    assert not f.masked_softmax
    assert ("fusion masked softmax off: scaled_upper_triang_masked_softmax_cuda / scaled_masked_softmax_cuda do not "
            "import (the megatron-core wheel does not ship them; a Megatron-LM source build or apex --cuda_ext does)"
            in f.lines)
    # One of the two kernels is not enough: megatron's causal path sizes its blocks with the other.
    gpu_with({"triton", "scaled_upper_triang_masked_softmax_cuda"})
    assert not fusions.choose("local", "bf16", explicit_masks=False).masked_softmax


def test_everything_present_turns_everything_on(gpu_with):
    gpu_with(ALL_KERNELS)
    f = fusions.choose("local", "bf16", explicit_masks=False)
    assert all(flags(f).values()) and f.lines == ()


@pytest.mark.parametrize("impl,precision,masks,why", [
    ("local", "fp32", False, "megatron's fused softmax only runs on bf16/fp16 scores"),
    ("local", "bf16", True, "packed SFT passes a block mask, which megatron's causal softmax kernel ignores"),
    ("transformer_engine", "bf16", False, "transformer_engine attention does its own softmax"),
])
def test_masked_softmax_only_where_it_computes_the_right_thing(gpu_with, impl, precision, masks, why):
    gpu_with(ALL_KERNELS)
    f = fusions.choose(impl, precision, explicit_masks=masks)
    assert not f.masked_softmax
    assert f"fusion masked softmax off: {why}" in f.lines


def test_te_keeps_its_own_layer_norm_and_needs_apex_for_grad_accumulation(gpu_with):
    gpu_with({"triton", "transformer_engine"})
    f = fusions.choose("transformer_engine", "bf16", explicit_masks=False)
    assert flags(f) == dict(masked_softmax=False, bias_dropout=True, bias_gelu=True, gradient_accumulation=False,
                            persist_layer_norm=False)
    assert "fusion persistent layer norm off: TransformerEngine brings its own LayerNorm" in f.lines


def test_no_triton_no_jit_fusions(gpu_with):
    gpu_with(ALL_KERNELS - {"triton"})
    f = fusions.choose("local", "bf16", explicit_masks=False)
    assert not f.bias_dropout and not f.bias_gelu and f.masked_softmax and f.gradient_accumulation
    why = "triton does not import, so torch.compile (megatron's jit_fuser) cannot fuse on CUDA"
    assert f"fusion bias-dropout-add off: {why}" in f.lines and f"fusion bias-GELU off: {why}" in f.lines


def test_apex_without_fast_layer_norm(gpu_with):
    gpu_with(ALL_KERNELS - {"apex.contrib.layer_norm.layer_norm"})
    f = fusions.choose("sdpa", "bf16", explicit_masks=False)
    assert not f.persist_layer_norm
    assert ("fusion persistent layer norm off: apex.contrib.layer_norm.layer_norm does not import "
            "(apex built without --fast_layer_norm)" in f.lines)


def test_transformer_config_takes_the_decisions(gpu_with):
    """What reaches megatron: flags from the decision; F.gelu only with the bias-GELU fusion on, since
    megatron's unfused path would apply F.gelu as exact erf GELU."""
    from codetron.megatron_ext.config import DataConfig, ModelConfig, OptimConfig, ParallelConfig
    from codetron.megatron_ext.model import gelu_tanh, transformer_config

    m = ModelConfig(transformer_impl="local")
    tc = transformer_config(m, ParallelConfig(), OptimConfig(precision="fp32"))
    assert tc.activation_func is gelu_tanh
    assert not (tc.masked_softmax_fusion or tc.bias_dropout_fusion or tc.bias_activation_fusion
                or tc.gradient_accumulation_fusion or tc.persist_layer_norm)

    gpu_with(ALL_KERNELS)
    tc = transformer_config(m, ParallelConfig(), OptimConfig(precision="bf16"), DataConfig(mode="pretrain"))
    assert tc.masked_softmax_fusion and tc.bias_dropout_fusion and tc.bias_activation_fusion
    assert tc.gradient_accumulation_fusion and tc.persist_layer_norm
    assert tc.activation_func is F.gelu
    # Packed SFT data carries block masks: the causal softmax kernel must stay off. Without data
    # (conversion, checks) masks are assumed.
    assert not transformer_config(m, ParallelConfig(), OptimConfig(precision="bf16"),
                                  DataConfig(mode="sft", pack=True)).masked_softmax_fusion
    assert not transformer_config(m, ParallelConfig(), OptimConfig(precision="bf16")).masked_softmax_fusion


def test_megatron_bias_gelu_is_the_tanh_form():
    """GPTBigCode's activation is gelu_pytorch_tanh; megatron's fused bias-GELU (forward and its hand
    written backward) must compute exactly that, not erf GELU, for the fusion to be allowed."""
    from megatron.core.fusions import fused_bias_gelu as fbg

    # The undecorated functions: torch.compile on CPU would need a C++ toolchain; the math is the same.
    fwd = getattr(fbg.bias_gelu, "_torchdynamo_orig_callable", fbg.bias_gelu)
    bwd = getattr(fbg.bias_gelu_back, "_torchdynamo_orig_callable", fbg.bias_gelu_back)
    y = torch.linspace(-6, 6, 4001, dtype=torch.float64)
    bias = torch.tensor(0.25, dtype=torch.float64)
    x = (y + bias).requires_grad_()
    ref = F.gelu(x, approximate="tanh")
    (grad_ref,) = torch.autograd.grad(ref.sum(), x)
    assert (fwd(bias, y) - ref.detach()).abs().max() < 1e-8
    assert (bwd(torch.ones_like(y), bias, y) - grad_ref).abs().max() < 1e-8
    assert (fwd(bias, y) - F.gelu(x.detach())).abs().max() > 1e-4  # erf GELU is measurably different


def test_announce_prints_each_line_once_from_rank_zero(monkeypatch, capsys):
    f = fusions.Fusions(lines=("fusion test-only line off: because",))
    monkeypatch.setattr(fusions, "_ANNOUNCED", set())
    monkeypatch.setenv("RANK", "1")
    assert fusions.announce(f) == []
    monkeypatch.setenv("RANK", "0")
    assert fusions.announce(f) == ["fusion test-only line off: because"]
    assert fusions.announce(f) == []
    assert capsys.readouterr().out == "fusion test-only line off: because\n"


def test_import_probe_is_honest():
    assert fusions.importable("json")
    assert not fusions.importable("scaled_masked_softmax_cuda")  # the megatron-core wheel does not ship it
