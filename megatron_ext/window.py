"""Sliding-window attention (StarCoder2) on the layer implementations that run on CPU.

megatron-core carries the window as ``TransformerConfig.window_size = (left, right)``: a query at
position i sees keys ``[i - left, i + right]``. StarCoder2's ``sliding_window = W`` (Hugging Face:
key j is visible from query i when ``i - W < j <= i``) is therefore ``(W - 1, 0)``. TransformerEngine
takes that tuple as it is. The local spec's softmax builds the window mask itself, but *replaces*
any mask the batch brings with it -- packed SFT rows would attend across documents inside the
window -- so :class:`WindowedDotProductAttention` hands it the union of the two masks instead.
"""
from __future__ import annotations

import torch
from megatron.core.transformer.dot_product_attention import DotProductAttention


def window_size(sliding_window: int | None) -> tuple[int, int] | None:
    """megatron-core's ``window_size`` for a Hugging Face ``sliding_window``."""
    return None if sliding_window is None else (sliding_window - 1, 0)


def window_mask(sq: int, sk: int, window: tuple[int, int], device=None) -> torch.Tensor:
    """``[sq, sk]`` bool mask, True = masked (megatron's convention), for the last ``sq`` queries of
    ``sk`` keys: key j is visible from query i when ``-window[1] <= i - j <= window[0]``."""
    q = torch.arange(sk - sq, sk, device=device).unsqueeze(1)
    k = torch.arange(sk, device=device).unsqueeze(0)
    return ((q - k) > window[0]) | ((k - q) > window[1])


def with_window(attention_mask: torch.Tensor | None, window: tuple[int, int], sq: int, sk: int,
                device) -> torch.Tensor:
    """The batch's mask (``[b|1, 1, sq|1, sk]``, or None = causal) with the window applied on top."""
    mask = window_mask(sq, sk, window, device).view(1, 1, sq, sk)
    return mask if attention_mask is None else attention_mask | mask


class WindowedDotProductAttention(DotProductAttention):
    """megatron-core's local core attention, with the window applied to explicit masks too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Taken out of the softmax, which would overwrite the batch's mask with it.
        self.window = self.scale_mask_softmax.window_size
        self.scale_mask_softmax.window_size = None

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if self.window is not None:
            # [s, b, heads, d] inputs
            attention_mask = with_window(attention_mask, self.window, query.size(0), key.size(0), query.device)
        return super().forward(query, key, value, attention_mask, attn_mask_type=attn_mask_type,
                               attention_bias=attention_bias, packed_seq_params=packed_seq_params)
