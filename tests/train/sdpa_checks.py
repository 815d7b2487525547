"""SDPA core attention against megatron's local DotProductAttention on real GPTModels (one CPU
process), run as a child by test_sdpa.py so the process group and CPU patches stay out of pytest.

    python tests/train/sdpa_checks.py WORKDIR  ->  prints one JSON line of measurements
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

V, SEQ = 256, 64


def max_rel_diff(a: dict, b: dict) -> float:
    """Largest difference of any parameter's gradient, relative to that gradient's largest entry."""
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp(min=1e-12)) for k in a)


def logits_and_grads(model, tokens, positions, mask):
    """fp32 logits, and every parameter's gradient of a loss that weighs all logits differently."""
    model.zero_grad(set_to_none=True)
    logits = model(tokens, positions, mask)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(7))
    (logits * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def padding_mask(lengths_left: list[int], lengths_right: list[int]) -> torch.Tensor:
    """Causal mask with padding (True = masked): row r is padded by lengths_left[r] tokens in front
    (those queries see no real key at all) and lengths_right[r] behind."""
    rows = []
    for left, right in zip(lengths_left, lengths_right):
        real = torch.ones(SEQ, dtype=torch.bool)
        real[:left] = False
        real[SEQ - right:] = False
        allowed = torch.ones(SEQ, SEQ, dtype=torch.bool).tril() & real[None, :]
        rows.append(~allowed)
    return torch.stack(rows).unsqueeze(1)


def sft_batch(work: Path):
    """A packed SFT micro-batch exactly as the training loop builds it (real SFT dataset + collate)."""
    from codetron.megatron_ext.objectives import get_objective
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.tokenizer_info import NullTokenizer
    from tests.objectives.conftest import synthetic_sft_pairs, write_sft

    cfg = resolve_config("debug-tiny", overrides={"model.seq_length": SEQ, "model.transformer_impl": "sdpa",
                                                  "data.mode": "sft", "data.split": "100,0,0"})
    cfg.data.data_path = [write_sft(str(work / "sft"), synthetic_sft_pairs(60, V, seed=4, max_len=30), V)]
    obj = get_objective("sft")
    ds, _ = obj.build_datasets(cfg, NullTokenizer(V), 2, 0)
    return obj.collate([ds[0], ds[1]])


def main(work: str) -> None:
    from codetron.megatron_ext.config import ModelConfig, ParallelConfig
    from codetron.megatron_ext.model import build_model
    from codetron.megatron_ext.parallel import LaunchEnv, init_distributed
    from codetron.megatron_ext.sdpa import SDPADotProductAttention

    init_distributed(ParallelConfig(), 1234, LaunchEnv(0, 1, 0, "single"))
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, V, (2, SEQ), generator=g)
    positions = torch.arange(SEQ).expand(2, SEQ)
    packed = sft_batch(Path(work))
    cases = {
        "causal": (tokens, positions, None),
        "padded": (tokens, positions, padding_mask([10, 0], [0, 14])),
        "packed": (packed["tokens"], packed["position_ids"], packed["attention_mask"]),
    }
    # Documents (and the padded tail) per packed row: position ids restart at 0 for each.
    out: dict = {"packed_segments": (packed["position_ids"] == 0).sum(dim=1).tolist()}
    for groups in (1, 2, 4):  # MQA (StarCoder), GQA, MHA
        m = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=groups,
                        seq_length=SEQ, transformer_impl="local")
        local = build_model(m, ParallelConfig(), V)
        m.transformer_impl = "sdpa"
        sdpa = build_model(m, ParallelConfig(), V)
        core = sdpa.decoder.layers[0].self_attention.core_attention
        assert isinstance(core, SDPADotProductAttention), type(core)
        sdpa.load_state_dict(local.state_dict())  # no parameters of its own: the same checkpoint keys
        for name, (tok, pos, mask) in cases.items():
            la, ga = logits_and_grads(local, tok, pos, mask)
            lb, gb = logits_and_grads(sdpa, tok, pos, mask)
            with torch.no_grad():
                unmasked = sdpa(tok, pos, None)
            out[f"{name}/g{groups}"] = {"logits": float((la - lb).abs().max()), "grads": max_rel_diff(ga, gb),
                                        "logit_scale": float(la.abs().max()),
                                        "mask_effect": float((unmasked - lb).abs().max()),
                                        "finite": bool(torch.isfinite(lb).all())}

    # Attention dropout: applied in training only, drawn from megatron's model-parallel RNG tracker.
    from megatron.core import tensor_parallel

    m = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=SEQ, transformer_impl="sdpa",
                    attention_dropout=0.5)
    model = build_model(m, ParallelConfig(), V)

    def run(seed: int):
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
        with torch.no_grad():
            return model(tokens, positions, None)

    a, b, c = run(5), run(5), run(6)
    model.eval()
    d = run(5)
    m.attention_dropout = 0.0
    nodrop = build_model(m, ParallelConfig(), V)
    nodrop.load_state_dict(model.state_dict())
    nodrop.eval()
    with torch.no_grad():
        e = nodrop(tokens, positions, None)
    out["dropout"] = {"same_seed": float((a - b).abs().max()), "other_seed": float((a - c).abs().max()),
                      "train_vs_eval": float((a - d).abs().max()), "eval_vs_nodrop": float((d - e).abs().max())}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])
