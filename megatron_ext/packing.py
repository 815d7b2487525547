"""Sequence packing: several short samples per row, each attending only to itself.

A packed row holds samples back to back; position ids restart at 0 for each sample and attention
is confined to each sample, so a packed row computes exactly what the samples would compute one per
row (tests check the loss to 1e-5). Two ways to tell attention where samples end, picked by the
layer implementation (``model.transformer_impl``):

* ``local`` (pure torch, CPU) and ``sdpa``: an explicit block-diagonal causal mask ``[b, 1, s, s]``
  (True = masked), applied by megatron-core's DotProductAttention or by torch's SDPA
  (memory-efficient kernel on CUDA).
* ``transformer_engine`` (GPU): no mask at all; the micro-batch is flattened to one row of ``b*s``
  tokens in the ``thd`` layout and ``PackedSeqParams`` carries ``cu_seqlens`` (cumulative sample
  lengths), which TE hands to its flash/cuDNN varlen kernels as ``padding_causal`` attention. This is
  what keeps flash attention usable with packing (an arbitrary mask would rule it out).

Each row's unused tail is one more "sample" of padding with zero loss weight.
"""
from __future__ import annotations

import numpy as np
import torch


def pack_first_fit(lengths: np.ndarray, capacity: int, window: int = 16) -> list[list[int]]:
    """Group item indices (in the given order) into rows of at most ``capacity`` positions.

    First fit over the last ``window`` open rows: nearly as tight as first-fit over all rows but
    O(n * window), and items stay in roughly the given (shuffled) order so rows mix at random.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths.tolist()):
        if n > capacity:
            raise ValueError(f"item {i} has {n} positions, more than the row capacity {capacity}")
        lo = max(0, len(rows) - window)
        for r in range(lo, len(rows)):
            if room[r] >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(capacity - n)
    return rows


def segment_lengths(seq_lens: torch.Tensor) -> list[list[int]]:
    """Rows of zero-padded segment lengths ``[b, k]`` -> lists of the non-zero lengths."""
    return [[int(n) for n in row if n > 0] for row in seq_lens.tolist()]


def block_causal_mask(seq_lens: torch.Tensor, seq_length: int) -> torch.Tensor:
    """``[b, 1, s, s]`` bool mask, True where attention is *not* allowed (megatron's convention):
    position i sees j iff both lie in the same segment and j <= i."""
    rows = segment_lengths(seq_lens)
    seg = torch.stack([torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in rows])  # [b, s]
    if seg.shape[1] != seq_length:
        raise ValueError(f"segment lengths sum to {seg.shape[1]}, expected {seq_length}")
    same = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(seq_length, seq_length, dtype=torch.bool).tril()
    return ~(same & causal).unsqueeze(1)


def cu_seqlens(seq_lens: torch.Tensor, seq_length: int) -> tuple[torch.Tensor, int]:
    """Cumulative segment boundaries of the micro-batch flattened to one row of ``b*s`` tokens
    (``thd`` layout), as int32 starting at 0, and the longest segment."""
    rows = segment_lengths(seq_lens)
    flat = [n for r in rows for n in r]
    if any(sum(r) != seq_length for r in rows):
        raise ValueError(f"every row's segments must sum to {seq_length}")
    cu = torch.zeros(len(flat) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(flat, dtype=torch.int64), 0).to(torch.int32)
    return cu, max(flat)


def packed_seq_params(cu: torch.Tensor, max_seqlen: int):
    """megatron-core ``PackedSeqParams`` for TransformerEngine attention in the ``thd`` layout."""
    from megatron.core.packed_seq_params import PackedSeqParams

    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=int(max_seqlen), max_seqlen_kv=int(max_seqlen))
