"""HF GPTBigCode folder (StarCoder/StarCoderBase/SantaCoder style) -> megatron-core checkpoint.

The output is the layout ``codetron train`` writes and ``--checkpoint.finetune`` starts from:
``OUT/iter_0000000/`` (torch_dist files + ``codetron_config.yaml``) and
``OUT/latest_checkpointed_iteration.txt``.

Why no torchrun and no model: megatron's dist checkpoints key every parameter globally, so the
bytes on disk do not depend on the TP/PP layout that wrote them -- any layout loads any checkpoint.
Building the target model under torchrun would hold the whole model in RAM across the ranks (31 GB
for StarCoder-15B in bf16) just to write the same global tensors. Instead one process writes the
checkpoint tensor by tensor: each HF tensor is read with positioned reads, mapped, and written as
the chunks the requested ``--tp/--pp`` layout would store (one per layer and TP rank; embeddings
in row blocks of at most 64 MB), so peak
memory is one tensor. ``--tp/--pp/--vpp`` are validated against the architecture and recorded in the
saved config, which ``codetron train --config OUT/iter_0000000/codetron_config.yaml`` can start from.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from codetron.errors import CodetronError
from codetron.convert import mapping as M
from codetron.convert import tokenizer_files
from codetron.convert.dcp_io import TensorToWrite, object_bytes, write_checkpoint
from codetron.convert.hf_config import dropout_note, from_hf_config, read_hf_config
from codetron.convert.safetensors_io import SafetensorsFolder
from codetron.convert.safety import check_output, export_dir, source_from
from codetron.convert.to_hf import DTYPES, publishable
from codetron.megatron_ext.config import ModelConfig, ParallelConfig

# Non-parameter buffers some GPTBigCode checkpoints carry (old transformers versions saved them).
IGNORED_HF = ("attn.bias", "attn.masked_bias")
MAX_CHUNK_BYTES = 64 * 2**20
"""Embedding chunks are written in row blocks of at most this size."""


@dataclass(kw_only=True)
class FromHFOptions:
    """Options of ``codetron convert from-hf``."""

    tp: int = 1
    """Target tensor_model_parallel_size."""
    pp: int = 1
    """Target pipeline_model_parallel_size."""
    vpp: int | None = None
    """Target virtual_pipeline_model_parallel_size (interleaved PP)."""
    dtype: str | None = None
    """fp32, bf16 or fp16; None keeps the HF dtype."""
    make_vocab_size_divisible_by: int = 128
    """Embedding rows are padded to a multiple of this (codetron's model.make_vocab_size_divisible_by)."""
    progress: bool = True
    """Show a tqdm bar."""
    overwrite: bool = False
    """Replace a previous from-hf output at OUT (only what its manifest lists; never a training run)."""


def _validate_layout(model: ModelConfig, parallel: ParallelConfig, padded_vocab: int, where: str) -> None:
    tp, pp, vpp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size, \
        parallel.virtual_pipeline_model_parallel_size
    if tp < 1 or pp < 1 or (vpp is not None and vpp < 1):
        raise CodetronError(f"--tp/--pp/--vpp must be >= 1 (got {tp}/{pp}/{vpp})")
    if vpp is not None and pp < 2:
        raise CodetronError("--vpp needs --pp >= 2")
    if model.num_attention_heads % tp:
        raise CodetronError(f"{where}: n_head {model.num_attention_heads} is not divisible by --tp {tp}")
    if model.ffn % tp:
        raise CodetronError(f"{where}: n_inner {model.ffn} is not divisible by --tp {tp}")
    M.check_kv_groups(model.num_attention_heads, model.num_query_groups, tp, where)
    if padded_vocab % tp:
        raise CodetronError(f"padded vocab {padded_vocab} is not divisible by --tp {tp}")
    stages = pp * (vpp or 1)
    if model.num_layers % stages:
        raise CodetronError(f"{where}: n_layer {model.num_layers} is not divisible by --pp x --vpp = {stages}")


def _tp_chunks(shape: tuple[int, ...], axis: int | None, tp: int, layer: int | None):
    """(offsets, sizes) of the chunks TP ranks store of one tensor (one layer of a stacked one)."""
    base = list(shape[1:]) if layer is not None else list(shape)
    n = tp if axis is not None else 1
    out = []
    for r in range(n):
        offs, sizes = [0] * len(base), list(base)
        if axis is not None:
            sizes[axis] = base[axis] // tp
            offs[axis] = r * sizes[axis]
        if layer is not None:
            offs, sizes = [layer, *offs], [1, *sizes]
        out.append((tuple(offs), tuple(sizes)))
    return out


def _row_blocks(chunks, width: int, dtype: torch.dtype, max_bytes: int | None = None):
    """Split (vocab-sized) row chunks further into blocks of at most ``max_bytes``: any layout loads
    any chunking, and small blocks keep conversion memory far below one embedding matrix."""
    row_bytes = width * torch.empty((), dtype=dtype).element_size()
    step = max(1, (max_bytes or MAX_CHUNK_BYTES) // row_bytes)
    out = []
    for (r0, c0), (n, w) in chunks:
        out += [((r0 + i, c0), (min(step, n - i), w)) for i in range(0, n, step)]
    return out


@dataclass
class _Source:
    """The HF folder as read and validated: what the later steps need."""

    hf_dir: Path
    model: ModelConfig
    """Architecture from config.json (vocab unpadded)."""
    parallel: ParallelConfig
    """The requested target layout."""
    st: SafetensorsFolder
    padded_vocab: int
    dtype: torch.dtype
    """Dtype written: --dtype, else the HF embedding's."""
    notes: list[str]
    """One-line remarks for the user (nothing here makes the conversion inexact)."""

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-layer megatron tensor shapes of the non-LayerNorm suffixes (LayerNorms are (h,))."""
        m = self.model
        h, qkv = m.hidden_size, M.qkv_rows(m.num_attention_heads, m.num_query_groups, m.head_dim)
        return {
            "self_attention.linear_qkv.weight": (qkv, h), "self_attention.linear_qkv.bias": (qkv,),
            "self_attention.linear_proj.weight": (h, h),
            "mlp.linear_fc1.weight": (m.ffn, h), "mlp.linear_fc1.bias": (m.ffn,),
            "mlp.linear_fc2.weight": (h, m.ffn),
        }


def read_source(hf_dir: Path, opts: FromHFOptions) -> _Source:
    """config.json -> architecture, checked against the requested layout and dtype."""
    cfg = read_hf_config(hf_dir)
    where = str(hf_dir / "config.json")
    model = from_hf_config(cfg, where)
    model.make_vocab_size_divisible_by = opts.make_vocab_size_divisible_by
    st = SafetensorsFolder(hf_dir)
    multiple = opts.make_vocab_size_divisible_by
    padded = -(-model.vocab_size // multiple) * multiple
    parallel = ParallelConfig(tensor_model_parallel_size=opts.tp, pipeline_model_parallel_size=opts.pp,
                              virtual_pipeline_model_parallel_size=opts.vpp)
    _validate_layout(model, parallel, padded, where)
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise CodetronError(f"--dtype {opts.dtype!r}: choose fp32, bf16 or fp16")
    dtype = DTYPES[opts.dtype] if opts.dtype else st.dtype(M.HF_WORD_EMBEDDINGS[model.family])
    note = dropout_note(cfg, where)
    return _Source(hf_dir, model, parallel, st, padded, dtype, [note] if note else [])


def check_source(src: _Source) -> None:
    """The HF side must be exactly a GPTBigCode state dict (and its tokenizer fit the vocabulary)."""
    m, st, hf_dir = src.model, src.st, src.hf_dir
    h, V = m.hidden_size, m.vocab_size
    hf_shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (V, h), "transformer.wpe.weight": (m.positions, h),
        "transformer.ln_f.weight": (h,), "transformer.ln_f.bias": (h,),
    }
    for i in range(m.num_layers):
        for suffix in M.LAYER_MAP:
            hf_shapes[M.hf_layer_name(i, suffix)] = src.layer_shapes.get(suffix, (h,))
    if not m.tie_embeddings:
        hf_shapes[M.UNTIED_OUTPUT[1]] = (V, h)
    check_tensors(src, hf_shapes, "GPTBigCode", embedding="wte", untied=M.UNTIED_OUTPUT[1], ignored=IGNORED_HF)


def check_tensors(src: _Source, want: dict[str, tuple[int, ...]], family: str, *, embedding: str, untied: str,
                  ignored: tuple[str, ...] = ()) -> None:
    """The HF state dict holds exactly ``want`` (name -> shape), plus a tied output alias (transformers may
    store one) and ``ignored`` buffers; the shipped tokenizer fits the vocabulary. ``embedding`` is a
    substring of the word-embedding name, whose shape error names vocab_size."""
    m, st, hf_dir = src.model, src.st, src.hf_dir
    for name, shape in want.items():
        if name not in st:
            raise CodetronError(f"{hf_dir}: tensor {name} is missing (incomplete or not a {family} checkpoint)")
        if st.shape(name) != shape:
            raise CodetronError(f"{hf_dir}: tensor {name} has shape {st.shape(name)}, config.json implies {shape}"
                                + (" (vocab_size disagrees with the embedding)" if embedding in name else ""))
    for name in st.entries:
        if name in want or name.endswith(ignored) or (m.tie_embeddings and name == untied):
            continue
        raise CodetronError(f"{hf_dir}: unexpected tensor {name} (unsupported {family} variant?)")
    tok_json = hf_dir / "tokenizer.json"
    if tok_json.is_file():
        info = tokenizer_files.resolve(str(tok_json), None, False, str(tok_json))
        tokenizer_files.check_vocab(info, m.vocab_size, str(tok_json))


class _Producers:
    """Read functions for ``TensorToWrite``: each returns one stored chunk, reading only what it needs."""

    def __init__(self, src: _Source):
        self.st, self.dtype, self.model = src.st, src.dtype, src.model

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dtype == self.dtype else t.to(self.dtype)

    def embedding(self, name: str):
        h, V = self.model.hidden_size, self.model.vocab_size

        def produce(offsets, sizes):
            # only this block's rows are read; rows past the vocabulary are megatron's zero padding
            first, n = offsets[0], sizes[0]
            block = torch.zeros((n, h), dtype=self.st.dtype(name))
            real = max(0, min(n, V - first))
            if real:
                self.st.read(name, out=block, rows=(first, first + real))
            return self._cast(block)
        return produce

    def stacked(self, suffix: str):
        m = self.model
        hf_rows_cache: dict[int, torch.Tensor] = {}

        def produce(offsets, sizes):
            layer = offsets[0]
            if layer not in hf_rows_cache:  # one layer, shared by this layer's TP chunks
                hf_rows_cache.clear()
                t = self.st.read(M.hf_layer_name(layer, suffix))
                if "linear_qkv.weight" in suffix or "linear_qkv.bias" in suffix:
                    t = M.qkv_hf_to_megatron(t, m.num_attention_heads, m.num_query_groups, m.head_dim)
                hf_rows_cache[layer] = self._cast(t)
            t = hf_rows_cache[layer]
            for dim, (o, s) in enumerate(zip(offsets[1:], sizes[1:])):
                t = t.narrow(dim, o, s)
            return t.unsqueeze(0).contiguous()
        return produce

    def plain(self, name: str):
        return lambda offsets, sizes: self._cast(self.st.read(name))


def plan_tensors(src: _Source) -> tuple[list[TensorToWrite], dict[str, bytes]]:
    """What to write, chunked as the target layout stores it, plus the per-layer extra-state objects."""
    m, dtype, padded = src.model, src.dtype, src.padded_vocab
    h, L, tp = m.hidden_size, m.num_layers, src.parallel.tensor_model_parallel_size
    read = _Producers(src)

    def vocab_rows():
        return _row_blocks(_tp_chunks((padded, h), 0, tp, None), h, dtype)

    tensors = [
        TensorToWrite(M.WORD_EMBEDDINGS, (padded, h), dtype, vocab_rows(), read.embedding("transformer.wte.weight")),
        TensorToWrite("embedding.position_embeddings.weight", (m.positions, h), dtype,
                      _tp_chunks((m.positions, h), None, tp, None), read.plain("transformer.wpe.weight")),
    ]
    for suffix in M.LAYER_MAP:
        shape = (L, *src.layer_shapes.get(suffix, (h,)))
        chunks = [c for i in range(L) for c in _tp_chunks(shape, M.TP_SPLIT_AXIS.get(suffix), tp, i)]
        tensors.append(TensorToWrite(M.LAYERS + suffix, shape, dtype, chunks, read.stacked(suffix)))
    for key in ("decoder.final_layernorm.weight", "decoder.final_layernorm.bias"):
        tensors.append(TensorToWrite(key, (h,), dtype, _tp_chunks((h,), None, tp, None), read.plain(M.GLOBAL_MAP[key])))
    if not m.tie_embeddings:
        tensors.append(TensorToWrite(M.UNTIED_OUTPUT[0], (padded, h), dtype, vocab_rows(),
                                     read.embedding(M.UNTIED_OUTPUT[1])))
    empty = object_bytes(None)  # the local layer spec's (empty) extra state of each linear layer
    objects = {f"{M.LAYERS}{mod}._extra_state/shard_{i}_{L}": empty
               for i in range(L) for mod in M.EXTRA_STATE_MODULES}
    return tensors, objects


def write_output(src: _Source, out: Path, tensors: list[TensorToWrite], objects: dict[str, bytes],
                 progress: bool, t0: float, overwrite: bool) -> dict:
    """Write the checkpoint, its tokenizer, run config and tracker into ``out`` atomically; returns the report."""
    from codetron.megatron_ext.checkpointing import CONFIG_NAME, TRACKER, iter_dir
    from codetron.megatron_ext.config import TrainConfig, architecture

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(t.chunks) for t in tensors), desc=f"from-hf {src.hf_dir.name}", unit="chunk",
                   leave=False)
    V = src.model.vocab_size
    with export_dir(out, {"HF model": src.hf_dir}, "from-hf", overwrite) as tmp:
        publishable(tmp)
        target = iter_dir(tmp, 0)
        target.mkdir(parents=True)
        tok_copy = tokenizer_files.copy_tokenizer(src.hf_dir, tmp / "tokenizer")
        final_tok = str(out.resolve() / "tokenizer" / "tokenizer.json") if tok_copy else f"null:{V}"
        common = {"iteration": 0, "scheduler": None,
                  "extra": {"converted_from": str(src.hf_dir.resolve()), "converter": "codetron convert from-hf"}}
        write_checkpoint(target, tensors, objects, common, on_write=(lambda: bar.update(1)) if bar else None)
        if bar:
            bar.close()
        run = TrainConfig(model=src.model, parallel=src.parallel).to_dict()
        # Only what the conversion decides. `train --recipe R --config THIS` applies the YAML after the
        # recipe, so a full dump of defaults here silently replaced every recipe setting (lr, schedule,
        # precision, SFT mode) with pretraining defaults; left out, they come from the recipe or defaults.
        layout = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "virtual_pipeline_model_parallel_size")
        # The model's architecture only: its context length and dropouts are training settings
        # (MODEL_RUN_SETTINGS) that the recipe or flags give; written here they outranked the recipe.
        decided = {"model": architecture(src.model), "parallel": {k: run["parallel"][k] for k in layout},
                   "data": {"tokenizer": final_tok}, "checkpoint": {"load": str(out.resolve()), "finetune": True}}
        (target / CONFIG_NAME).write_text(yaml.safe_dump(decided, sort_keys=False))
        (tmp / TRACKER).write_text("0")
        p = src.parallel
        report = {
            "source": source_from(src.hf_dir, out),
            "layout": {"tensor_model_parallel_size": p.tensor_model_parallel_size,
                       "pipeline_model_parallel_size": p.pipeline_model_parallel_size,
                       "virtual_pipeline_model_parallel_size": p.virtual_pipeline_model_parallel_size},
            "vocab_size": V, "padded_vocab_size": src.padded_vocab,
            "dtype": str(src.dtype).replace("torch.", ""),
            "tokenizer": final_tok,
            "notes": src.notes,
            # what the HF config says about training (context, pretraining dropouts): informative
            # only, not in the saved config; a recipe or flags set them for the fine-tuning run
            "hf_run_settings": {k: getattr(src.model, k) for k in ("seq_length", "hidden_dropout", "attention_dropout")},
            "seconds": round(time.time() - t0, 2),
        }
        (tmp / "codetron_conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def from_hf(hf_dir: str | Path, out: str | Path, opts: FromHFOptions | None = None) -> dict:
    """Convert; every check runs before anything is written."""
    opts = opts or FromHFOptions()
    t0 = time.time()
    check_output(out, {"HF model": Path(hf_dir)}, "from-hf", opts.overwrite)
    src = read_source(Path(hf_dir), opts)
    if src.model.family == "starcoder2":
        from codetron.convert import starcoder2

        starcoder2.check_source(src)
        tensors, objects = starcoder2.plan_from_hf(src)
    else:
        check_source(src)
        tensors, objects = plan_tensors(src)
    return write_output(src, Path(out), tensors, objects, opts.progress, t0, opts.overwrite)
