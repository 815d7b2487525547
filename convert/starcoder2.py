"""StarCoder2 (``Starcoder2ForCausalLM``) <-> megatron-core checkpoints: the family's two plans.

The same streaming machinery as GPTBigCode (``to_hf.py`` plans HF tensors with producers that read
one layer slice; ``from_hf.py`` plans megatron chunks as the target layout stores them), driven by
the StarCoder2 name table in ``mapping.py``. What differs is named there: three HF tensors per
fused QKV (``qkv_split`` / ``qkv_merge``, grouped-query attention), and no position table (RoPE).
"""
from __future__ import annotations

from pathlib import Path

import torch

from codetron.errors import CodetronError
from codetron.convert import mapping as M
from codetron.megatron_ext.config import ModelConfig

POSITION_TABLE = "embedding.position_embeddings.weight"


def layer_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer megatron tensor shapes (without the layer axis); LayerNorms and biases of size h
    are the default."""
    h, qkv = model.hidden_size, M.qkv_rows(model.num_attention_heads, model.num_query_groups, model.head_dim)
    return {
        "self_attention.linear_qkv.weight": (qkv, h), "self_attention.linear_qkv.bias": (qkv,),
        "self_attention.linear_proj.weight": (h, h),
        "mlp.linear_fc1.weight": (model.ffn, h), "mlp.linear_fc1.bias": (model.ffn,),
        "mlp.linear_fc2.weight": (h, model.ffn),
    }


def hf_shapes(model: ModelConfig, meg_suffix: str) -> tuple[tuple[int, ...], ...]:
    """Shapes of the HF tensor(s) one layer's megatron tensor maps to."""
    h, hd = model.hidden_size, model.head_dim
    q, kv = model.num_attention_heads * hd, model.num_query_groups * hd
    if meg_suffix == "self_attention.linear_qkv.weight":
        return (q, h), (kv, h), (kv, h)
    if meg_suffix == "self_attention.linear_qkv.bias":
        return (q,), (kv,), (kv,)
    return (layer_shapes(model).get(meg_suffix, (h,)),)


def _split(model: ModelConfig, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return M.qkv_split(t, model.num_attention_heads, model.num_query_groups, model.head_dim)


# ---- megatron -> HF ----------------------------------------------------------------------------

def plan_to_hf(reader, model: ModelConfig, vocab: int, dtype: torch.dtype | None, cfg_path: Path):
    """Every Starcoder2ForCausalLM tensor in write order, each read on demand (cf. ``to_hf.plan_tensors``)."""
    from codetron.convert.safetensors_io import PlannedTensor
    from codetron.convert.to_hf import _expect_shape, vocab_rows

    h, L = model.hidden_size, model.num_layers
    M.check_kv_groups(model.num_attention_heads, model.num_query_groups, 1, f"{cfg_path}: model.num_query_groups")
    output, lm_head = M.STARCODER2_UNTIED_OUTPUT
    missing = [k for k in [*M.STARCODER2_GLOBAL_MAP, *(M.LAYERS + s for s in M.STARCODER2_LAYER_MAP)]
               if not reader.has(k)]
    if not model.tie_embeddings and not reader.has(output):
        missing.append(output)
    if missing:
        raise CodetronError(f"{reader.path}: checkpoint lacks {missing[0]} ({len(missing)} model tensors missing); "
                            f"not a StarCoder2 model written by codetron train")
    if reader.has(POSITION_TABLE):
        raise CodetronError(f"{reader.path}: checkpoint has a learned position table ({POSITION_TABLE}) but "
                            f"{cfg_path.name} says model.family starcoder2 (RoPE); it is a gpt_bigcode checkpoint")
    padded = reader.shape(M.WORD_EMBEDDINGS)[0]
    if padded < vocab:
        raise CodetronError(f"{reader.path}: word embeddings have {padded} rows but model.vocab_size is {vocab}")
    shapes = layer_shapes(model)
    for suffix in M.STARCODER2_LAYER_MAP:
        _expect_shape(reader, M.LAYERS + suffix, (L, *shapes.get(suffix, (h,))), cfg_path)
    _expect_shape(reader, M.WORD_EMBEDDINGS, (padded, h), cfg_path)

    def out_dtype(key: str) -> torch.dtype:
        return dtype or reader.dtype(key)

    def unpadded_rows(key: str):
        return vocab_rows(reader, key, vocab)

    last_split: dict[tuple[str, int], tuple[torch.Tensor, ...]] = {}

    def qkv_part(key: str, layer: int, part: int) -> torch.Tensor:
        # q, k and v are planned one after the other: one read of the fused slice serves all three
        if (key, layer) not in last_split:
            last_split.clear()
            last_split[(key, layer)] = tuple(t.contiguous() for t in _split(model, reader.read(key, layer)))
        return last_split[(key, layer)][part]

    plan = [PlannedTensor(M.STARCODER2_GLOBAL_MAP[M.WORD_EMBEDDINGS], (vocab, h), out_dtype(M.WORD_EMBEDDINGS),
                          lambda: unpadded_rows(M.WORD_EMBEDDINGS))]
    for i in range(L):
        for suffix in M.STARCODER2_LAYER_MAP:
            key = M.LAYERS + suffix
            names, shapes_hf = M.starcoder2_layer_names(i, suffix), hf_shapes(model, suffix)
            for part, (name, shape) in enumerate(zip(names, shapes_hf)):
                if len(names) > 1:
                    fn = (lambda key=key, i=i, part=part: qkv_part(key, i, part))
                else:
                    fn = (lambda key=key, i=i: reader.read(key, i))
                plan.append(PlannedTensor(name, shape, out_dtype(key), fn))
    for key in ("decoder.final_layernorm.weight", "decoder.final_layernorm.bias"):
        _expect_shape(reader, key, (h,), cfg_path)
        plan.append(PlannedTensor(M.STARCODER2_GLOBAL_MAP[key], (h,), out_dtype(key), lambda key=key: reader.read(key)))
    if not model.tie_embeddings:
        _expect_shape(reader, output, (padded, h), cfg_path)
        plan.append(PlannedTensor(lm_head, (vocab, h), out_dtype(output), lambda: unpadded_rows(output)))
    return plan


# ---- HF -> megatron ----------------------------------------------------------------------------

def expected_hf_tensors(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, V = model.hidden_size, model.vocab_size
    out = {M.STARCODER2_GLOBAL_MAP[M.WORD_EMBEDDINGS]: (V, h),
           M.STARCODER2_GLOBAL_MAP["decoder.final_layernorm.weight"]: (h,),
           M.STARCODER2_GLOBAL_MAP["decoder.final_layernorm.bias"]: (h,)}
    for i in range(model.num_layers):
        for suffix in M.STARCODER2_LAYER_MAP:
            out.update(zip(M.starcoder2_layer_names(i, suffix), hf_shapes(model, suffix)))
    if not model.tie_embeddings:
        out[M.STARCODER2_UNTIED_OUTPUT[1]] = (V, h)
    return out


def check_source(src) -> None:
    """The HF side must be exactly a Starcoder2ForCausalLM state dict (cf. ``from_hf.check_source``)."""
    from codetron.convert.from_hf import check_tensors

    check_tensors(src, expected_hf_tensors(src.model), "StarCoder2", embedding="embed_tokens",
                  untied=M.STARCODER2_UNTIED_OUTPUT[1])


def plan_from_hf(src):
    """What to write, chunked as the target layout stores it (cf. ``from_hf.plan_tensors``)."""
    from codetron.convert.dcp_io import TensorToWrite, object_bytes
    from codetron.convert.from_hf import _Producers, _row_blocks, _tp_chunks

    m, dtype, padded = src.model, src.dtype, src.padded_vocab
    h, L, tp = m.hidden_size, m.num_layers, src.parallel.tensor_model_parallel_size
    read = _Producers(src)
    shapes = layer_shapes(m)

    def vocab_rows():
        return _row_blocks(_tp_chunks((padded, h), 0, tp, None), h, dtype)

    def stacked(suffix: str):
        cache: dict[int, torch.Tensor] = {}

        def produce(offsets, sizes):
            layer = offsets[0]
            if layer not in cache:  # one layer, shared by this layer's TP chunks
                cache.clear()
                parts = [src.st.read(n) for n in M.starcoder2_layer_names(layer, suffix)]
                t = parts[0] if len(parts) == 1 else M.qkv_merge(*parts, m.num_attention_heads,
                                                                 m.num_query_groups, m.head_dim)
                cache[layer] = t if t.dtype == dtype else t.to(dtype)
            t = cache[layer]
            for dim, (o, s) in enumerate(zip(offsets[1:], sizes[1:])):
                t = t.narrow(dim, o, s)
            return t.unsqueeze(0).contiguous()
        return produce

    embed = M.STARCODER2_GLOBAL_MAP[M.WORD_EMBEDDINGS]
    tensors = [TensorToWrite(M.WORD_EMBEDDINGS, (padded, h), dtype, vocab_rows(), read.embedding(embed))]
    for suffix in M.STARCODER2_LAYER_MAP:
        shape = (L, *shapes.get(suffix, (h,)))
        chunks = [c for i in range(L) for c in _tp_chunks(shape, M.TP_SPLIT_AXIS.get(suffix), tp, i)]
        tensors.append(TensorToWrite(M.LAYERS + suffix, shape, dtype, chunks, stacked(suffix)))
    for key in ("decoder.final_layernorm.weight", "decoder.final_layernorm.bias"):
        tensors.append(TensorToWrite(key, (h,), dtype, _tp_chunks((h,), None, tp, None),
                                     read.plain(M.STARCODER2_GLOBAL_MAP[key])))
    if not m.tie_embeddings:
        output, lm_head = M.STARCODER2_UNTIED_OUTPUT
        tensors.append(TensorToWrite(output, (padded, h), dtype, vocab_rows(), read.embedding(lm_head)))
    empty = object_bytes(None)  # the local layer spec's (empty) extra state of each linear layer
    objects = {f"{M.LAYERS}{mod}._extra_state/shard_{i}_{L}": empty
               for i in range(L) for mod in M.EXTRA_STATE_MODULES}
    return tensors, objects
