"""Sliding-window attention on real StarCoder2-shaped GPTModels (one CPU process), run as a child by
test_starcoder2.py so the process group and CPU patches stay out of pytest.

The reference is the same weights without a window, given a dense mask built here from the
definition (query i sees key j when ``0 <= i - j < W``), through megatron's plain local spec.

    python tests/train/starcoder2_checks.py WORKDIR  ->  prints one JSON line of measurements
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

V, SEQ, WINDOW = 256, 96, 24


def dense_window(seq: int, window: int) -> torch.Tensor:
    """[1, 1, s, s], True = masked."""
    i = torch.arange(seq).view(-1, 1)
    j = torch.arange(seq).view(1, -1)
    allowed = (i - j >= 0) & (i - j < window)
    return ~allowed.view(1, 1, seq, seq)


def packed_mask(seq: int, starts: list[int]) -> torch.Tensor:
    """Block-diagonal causal mask of documents starting at ``starts`` (as packed SFT builds it)."""
    doc = torch.zeros(seq, dtype=torch.long)
    for s in starts[1:]:
        doc[s:] += 1
    allowed = (doc.view(-1, 1) == doc.view(1, -1)) & torch.ones(seq, seq, dtype=torch.bool).tril()
    return ~allowed.view(1, 1, seq, seq)


def main(work: str) -> None:
    from codetron.megatron_ext.config import ParallelConfig
    from codetron.megatron_ext.model import build_model
    from codetron.megatron_ext.parallel import LaunchEnv, init_distributed
    from codetron.megatron_ext.presets import get_model_preset
    from codetron.megatron_ext.window import WindowedDotProductAttention

    init_distributed(ParallelConfig(), 1234, LaunchEnv(0, 1, 0, "single"))
    tokens = torch.randint(0, V, (2, SEQ), generator=torch.Generator().manual_seed(3))
    positions = torch.arange(SEQ).expand(2, SEQ)

    base = get_model_preset("debug-starcoder2").model
    full_cfg = type(base)(**{**vars(base), "sliding_window": None, "seq_length": SEQ, "transformer_impl": "local",
                             "init_method_std": 0.2})
    full = build_model(full_cfg, ParallelConfig(), V).eval()
    out: dict = {"window": WINDOW}
    window_mask = dense_window(SEQ, WINDOW)
    docs = packed_mask(SEQ, [0, 50])  # the second document is longer than the window
    with torch.no_grad():
        ref_causal = full(tokens, positions, None)
        ref_window = full(tokens, positions, window_mask)
        ref_packed = full(tokens, positions, docs | window_mask)
        ref_packed_nowindow = full(tokens, positions, docs)
    out["window_effect_early"] = float((ref_window[:, :WINDOW] - ref_causal[:, :WINDOW]).abs().max())
    out["window_effect_late"] = float((ref_window[:, WINDOW:] - ref_causal[:, WINDOW:]).abs().max())
    out["logit_scale"] = float(ref_window.abs().max())
    for impl in ("local", "sdpa"):
        cfg = type(base)(**{**vars(full_cfg), "sliding_window": WINDOW, "transformer_impl": impl})
        model = build_model(cfg, ParallelConfig(), V).eval()
        model.load_state_dict(full.state_dict())
        core = model.decoder.layers[0].self_attention.core_attention
        with torch.no_grad():
            got = model(tokens, positions, None)
            got_packed = model(tokens, positions, docs)
        out[impl] = {
            "core": type(core).__name__,
            "windowed_core": isinstance(core, WindowedDotProductAttention) if impl == "local" else None,
            "vs_dense_window": float((got - ref_window).abs().max()),
            "packed_vs_dense": float((got_packed - ref_packed).abs().max()),
            # the window changes packed rows too (megatron's own softmax would have dropped the block mask)
            "packed_window_effect": float((got_packed - ref_packed_nowindow).abs().max()),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])
