"""The Llama architecture trains on megatron-core in every layout from a converted Hugging Face model.

One tiny LlamaForCausalLM (GQA 4 heads / 2 KV groups, SwiGLU, RMSNorm, linear RoPE scaling, untied)
and one Qwen2ForCausalLM (QKV biases, tied) are converted with ``from_hf``; each conversion is the
shared start of a single-process run and of TP2xPP2 and TP4 runs (TP4 replicates each KV group on two
ranks), which must give the same losses and gradient norms step for step. A TP layout that read the
converted checkpoint's fused gate/up or QKV rows wrongly, or a SwiGLU that split fc1 the other way,
would start from another function and fail here; the single-process run itself is the model whose
logits tests/convert/test_llama.py compares with transformers.
"""
from __future__ import annotations

import pytest

from tests.train.conftest import VOCAB, assert_curves_match, read_log, run_train

ITERS = 5

LAYOUTS = {
    "tp2pp2": (4, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]),
    "tp4": (4, ["--parallel.tensor_model_parallel_size", "4"]),
}


def _converted(root, arch: str):
    from codetron.convert.from_hf import FromHFOptions, from_hf
    from tests.convert.test_llama import LINEAR, tiny_llama

    hf = tiny_llama(root / f"hf_{arch}", arch=arch, vocab=VOCAB, tie=arch == "qwen2",
                    rope=LINEAR if arch == "llama" else None, max_position_embeddings=256)
    out = root / f"init_{arch}"
    from_hf(hf, out, FromHFOptions(progress=False))
    return out


def _args(init, data: str) -> list[str]:
    return ["--config", str(init / "iter_0000000" / "codetron_config.yaml"), "--data.data_path", data,
            "--data.tokenizer", f"null:{VOCAB}", "--model.seq_length", "128", "--optim.train_iters", str(ITERS),
            "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2", "--optim.lr", "1e-3",
            "--optim.lr_warmup_iters", "1"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def runs(request, synthetic_data, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"llama_parity_{request.param}")
    init = _converted(root, request.param)
    out = {}
    for name, (nproc, extra) in {"ref": (1, []), **LAYOUTS}.items():
        proc = run_train(_args(init, synthetic_data) + extra + ["--logging.loss_log", str(root / f"{name}.jsonl")],
                         nproc=nproc, timeout=400)
        assert "finetune: loaded weights" in proc.stdout, proc.stdout[-2000:]
        out[name] = read_log(root / f"{name}.jsonl")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_single_process(runs, layout):
    assert_curves_match(runs["ref"], runs[layout], ITERS, layout)


def _cfg(**overrides):
    from codetron.megatron_ext.presets import resolve_config

    return resolve_config("debug-llama", overrides=overrides)


def test_debug_presets_build_the_llama_layer():
    """RMSNorm, SwiGLU, no linear biases (Qwen2: on q/k/v only), rotary positions with the scaling."""
    from codetron.megatron_ext.families import get

    from codetron.megatron_ext.presets import resolve_config

    for preset, qkv_bias in (("debug-llama", False), ("debug-qwen2", True)):
        m = resolve_config(preset).model
        fam = get(m.family)
        kw = fam.transformer_config_kwargs(m, None)
        assert kw["normalization"] == "RMSNorm" and kw["gated_linear_unit"] and not kw["add_bias_linear"]
        assert kw["add_qkv_bias"] is qkv_bias and kw["activation_func"].__name__ == "silu"
        gpt = fam.gpt_model_kwargs(m)
        assert gpt["position_embedding_type"] == "rope" and gpt["rotary_base"] == m.rotary_base
    llama = resolve_config("debug-llama").model
    gpt = get("llama").gpt_model_kwargs(llama)
    assert llama.rope_scaling == {"rope_type": "linear", "factor": 2.0} and gpt["seq_len_interpolation_factor"] == 2.0
    assert not gpt["rope_scaling"]
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    gpt = get("llama").gpt_model_kwargs(resolve_config("debug-llama", overrides={"model.rope_scaling": llama3}).model)
    assert gpt["rope_scaling"] and gpt["rope_scaling_factor"] == 8.0 and gpt["seq_len_interpolation_factor"] is None


def test_bad_rope_scaling_and_window_are_one_line():
    from codetron.errors import ConfigError
    from codetron.megatron_ext.validate import validate

    with pytest.raises(ConfigError, match="model.rope_scaling: rope_type 'yarn' is unsupported"):
        validate(_cfg(**{"model.rope_scaling": {"rope_type": "yarn", "factor": 4.0}}), world_size=1, check_data=False)
    with pytest.raises(ConfigError, match="llama3 RoPE with high_freq_factor 2.0 is unsupported"):
        validate(_cfg(**{"model.rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 2.0, "original_max_position_embeddings": 8192}}),
                 world_size=1, check_data=False)
    with pytest.raises(ConfigError, match="sliding_window"):
        validate(_cfg(**{"model.sliding_window": 16}), world_size=1, check_data=False)
    for tp in (1, 2, 4):  # 2 KV groups: split by TP2, replicated by TP4
        validate(_cfg(**{"parallel.tensor_model_parallel_size": tp}), world_size=4, check_data=False)


def test_llama_presets_have_the_published_shapes():
    """Parameter counts as the model cards publish them (CodeLlama and DeepSeek-Coder: 6.74B; Qwen2.5-Coder:
    1.54B with 1.31B non-embedding, 7.61B with 6.53B non-embedding), so every config.json number is in."""
    from codetron.megatron_ext.families import num_parameters
    from codetron.megatron_ext.presets import get_model_preset

    for name, billions, non_embedding in (("codellama-7b", 6.74, None), ("deepseek-coder-6.7b-base", 6.74, None),
                                          ("qwen2.5-coder-1.5b", 1.54, 1.31), ("qwen2.5-coder-7b", 7.61, 6.53)):
        m = get_model_preset(name).model
        total = num_parameters(m)
        assert abs(total / 1e9 - billions) < 0.01, (name, total)
        if non_embedding:
            embeddings = m.vocab_size * m.hidden_size * (1 if m.tie_embeddings else 2)
            assert abs((total - embeddings) / 1e9 - non_embedding) < 0.01, (name, total - embeddings)
        assert m.positions == m.seq_length and m.family == "llama" and bool(m.qkv_bias) is name.startswith("qwen")
    assert get_model_preset("deepseek-coder-6.7b-base").model.rope_scaling == {"rope_type": "linear", "factor": 4.0}
