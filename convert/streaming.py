"""The streaming conversion machinery, for every family: plans from a :class:`TensorTable`.

A family (``codetron.megatron_ext.families``) lists its tensors once -- megatron key, HF name(s),
shapes, TP axis, layout transform. From that table this module plans both directions:

* megatron -> HF (:func:`plan_to_hf`): every HF tensor in write order, planned from the checkpoint
  metadata alone, each with a producer that reads one layer slice when the safetensors writer asks
  for it (vocabulary tensors stream one stored chunk at a time, without their padding rows);
* HF -> megatron (:func:`plan_from_hf`): every megatron tensor chunked as the target ``--tp`` layout
  stores it (one chunk per layer and TP rank; vocabulary tensors in row blocks of at most
  :data:`MAX_CHUNK_BYTES`), each chunk produced by positioned reads of the HF tensor(s).

At most one layer slice (or one row block) plus one stored chunk is in memory at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from codetron.errors import CodetronError
from codetron.convert import tokenizer_files
from codetron.convert.dcp_io import CheckpointReader, TensorToWrite, object_bytes
from codetron.convert.safetensors_io import PlannedTensor, SafetensorsFolder
from codetron.megatron_ext.config import ModelConfig, ParallelConfig
from codetron.megatron_ext.families import Family, TensorMap, TensorTable
from codetron.megatron_ext.families.layouts import WORD_EMBEDDINGS, strip_vocab_padding

MAX_CHUNK_BYTES = 64 * 2**20
"""Vocabulary tensors are written by from-hf in row blocks of at most this size."""


# ---- megatron -> HF ----------------------------------------------------------------------------

def expect_shape(reader: CheckpointReader, key: str, shape: tuple[int, ...], cfg_path: Path) -> None:
    got = reader.shape(key)
    if got != shape:
        raise CodetronError(f"{reader.path}: tensor {key} has shape {got} but {cfg_path.name} implies {shape} "
                            f"(config and weights disagree)")


def vocab_rows(reader: CheckpointReader, key: str, vocab: int):
    """A vocabulary-sized tensor (embeddings, output layer) without its padding rows, streamed one stored
    chunk at a time: the largest tensors of a model never sit in memory whole."""
    for first, rows in reader.iter_row_chunks(key):
        keep = max(0, min(rows.shape[0], vocab - first))
        if keep:
            yield strip_vocab_padding(rows, keep)


def check_checkpoint(reader: CheckpointReader, family: Family, model: ModelConfig, vocab: int,
                     cfg_path: Path) -> TensorTable:
    """The checkpoint holds the family's tensors in the shapes ``cfg_path`` implies; returns the table."""
    family.check_convertible(model, f"{cfg_path}: model.num_query_groups")
    padded = reader.shape(WORD_EMBEDDINGS)[0] if reader.has(WORD_EMBEDDINGS) else vocab
    table = family.tensors(model, padded)
    missing = [e.key for e in table.entries if not reader.has(e.key)]
    if missing:
        raise CodetronError(f"{reader.path}: checkpoint lacks {missing[0]} ({len(missing)} model tensors missing); "
                            f"not a {family.title} model written by codetron train")
    family.check_checkpoint(set(reader.keys()), model, str(reader.path))
    if padded < vocab:
        raise CodetronError(f"{reader.path}: word embeddings have {padded} rows but model.vocab_size is {vocab}")
    shapes = table.megatron_shapes()
    for e in table.layer + table.before + table.after:
        expect_shape(reader, e.key, shapes[e.key], cfg_path)
    return table


def plan_to_hf(reader: CheckpointReader, family: Family, model: ModelConfig, vocab: int, dtype: torch.dtype | None,
               cfg_path: Path) -> list[PlannedTensor]:
    """Every HF tensor in write order, each with a producer that reads its slice on demand."""
    table = check_checkpoint(reader, family, model, vocab, cfg_path)
    last_split: dict[tuple[str, int | None], tuple[torch.Tensor, ...]] = {}

    def parts(e: TensorMap, layer: int | None) -> tuple[torch.Tensor, ...]:
        # the parts of one fused tensor are planned one after the other: one read serves them all
        if (e.key, layer) not in last_split:
            last_split.clear()
            t = reader.read(e.key, layer) if layer is not None else reader.read(e.key)
            last_split[(e.key, layer)] = tuple(p.contiguous() for p in e.to_hf(t))
        return last_split[(e.key, layer)]

    def planned(e: TensorMap, layer: int | None = None) -> list[PlannedTensor]:
        out_dtype = dtype or reader.dtype(e.key)
        names = e.hf_names(layer)
        if e.vocab:
            if len(names) != 1 or e.to_hf is not None:
                raise TypeError(f"{e.key}: a vocabulary tensor maps to one HF tensor as it is")
            return [PlannedTensor(names[0], e.hf_shapes[0], out_dtype, lambda: vocab_rows(reader, e.key, vocab))]
        if e.to_hf is None:
            fn = (lambda: reader.read(e.key, layer)) if layer is not None else (lambda: reader.read(e.key))
            return [PlannedTensor(names[0], e.hf_shapes[0], out_dtype, fn)]
        return [PlannedTensor(name, shape, out_dtype, lambda part=part: parts(e, layer)[part])
                for part, (name, shape) in enumerate(zip(names, e.hf_shapes))]

    plan = [t for e in table.before for t in planned(e)]
    for i in range(table.num_layers):
        plan += [t for e in table.layer for t in planned(e, i)]
    return plan + [t for e in table.after for t in planned(e)]


# ---- HF -> megatron ----------------------------------------------------------------------------

def tp_chunks(shape: tuple[int, ...], axis: int | None, tp: int, layer: int | None):
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


def row_blocks(chunks, width: int, dtype: torch.dtype, max_bytes: int | None = None):
    """Split (vocab-sized) row chunks further into blocks of at most ``max_bytes``: any layout loads
    any chunking, and small blocks keep conversion memory far below one embedding matrix."""
    row_bytes = width * torch.empty((), dtype=dtype).element_size()
    step = max(1, (max_bytes or MAX_CHUNK_BYTES) // row_bytes)
    out = []
    for (r0, c0), (n, w) in chunks:
        out += [((r0 + i, c0), (min(step, n - i), w)) for i in range(0, n, step)]
    return out


@dataclass
class HFSource:
    """An HF folder as read and validated: what planning and writing a checkpoint need."""

    hf_dir: Path
    """The Hugging Face model folder."""
    family: Family
    """The family its config.json's model_type names."""
    model: ModelConfig
    """Architecture from config.json (vocab unpadded)."""
    parallel: ParallelConfig
    """The requested target layout."""
    st: SafetensorsFolder
    """The folder's safetensors, read with positioned reads."""
    padded_vocab: int
    """Embedding rows megatron stores (vocab padded to ``make_vocab_size_divisible_by``)."""
    dtype: torch.dtype
    """Dtype written: --dtype, else the HF embedding's."""
    notes: list[str]
    """One-line remarks for the user (nothing here makes the conversion inexact)."""

    @cached_property
    def table(self) -> TensorTable:
        return self.family.tensors(self.model, self.padded_vocab)


def check_hf_tensors(src: HFSource, want: dict[str, tuple[int, ...]] | None = None) -> None:
    """The HF state dict holds exactly ``want`` (name -> shape; default: the family's table), plus a
    tied output alias (transformers may store one) and the family's ignored buffers; the shipped
    tokenizer fits the vocabulary."""
    m, st, hf_dir, family = src.model, src.st, src.hf_dir, src.family
    want = src.table.hf_tensors() if want is None else want
    vocab_names = {n for e in src.table.entries if e.vocab for n in e.hf}
    for name, shape in want.items():
        if name not in st:
            raise CodetronError(f"{hf_dir}: tensor {name} is missing (incomplete or not a {family.title} checkpoint)")
        if st.shape(name) != shape:
            raise CodetronError(f"{hf_dir}: tensor {name} has shape {st.shape(name)}, config.json implies {shape}"
                                + (" (vocab_size disagrees with the embedding)" if name in vocab_names else ""))
    for name in st.entries:
        if name in want or (family.ignored_hf and name.endswith(family.ignored_hf)) or \
                (m.tie_embeddings and name == family.untied_output_hf):
            continue
        raise CodetronError(f"{hf_dir}: unexpected tensor {name} (unsupported {family.title} variant?)")
    tok_json = hf_dir / "tokenizer.json"
    if tok_json.is_file():
        info = tokenizer_files.resolve(str(tok_json), None, False, str(tok_json))
        tokenizer_files.check_vocab(info, m.vocab_size, str(tok_json))


class HFProducers:
    """Read functions for ``TensorToWrite``: each returns one stored chunk, reading only what it needs."""

    def __init__(self, src: HFSource):
        self.st, self.dtype, self.model = src.st, src.dtype, src.model

    def cast(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dtype == self.dtype else t.to(self.dtype)

    def embedding(self, name: str):
        """Rows of a vocabulary tensor; rows past the vocabulary are megatron's zero padding."""
        h, V = self.model.hidden_size, self.model.vocab_size

        def produce(offsets, sizes):
            first, n = offsets[0], sizes[0]  # only this block's rows are read
            block = torch.zeros((n, h), dtype=self.st.dtype(name))
            real = max(0, min(n, V - first))
            if real:
                self.st.read(name, out=block, rows=(first, first + real))
            return self.cast(block)
        return produce

    def _whole(self, e: TensorMap, layer: int | None) -> torch.Tensor:
        parts = [self.st.read(n) for n in e.hf_names(layer)]
        return self.cast(e.to_megatron(*parts) if e.to_megatron is not None else parts[0])

    def stacked(self, e: TensorMap):
        """One layer's chunk of a per-layer tensor (the layer is read once for all its TP chunks)."""
        cache: dict[int, torch.Tensor] = {}

        def produce(offsets, sizes):
            layer = offsets[0]
            if layer not in cache:
                cache.clear()
                cache[layer] = self._whole(e, layer)
            t = cache[layer]
            for dim, (o, s) in enumerate(zip(offsets[1:], sizes[1:])):
                t = t.narrow(dim, o, s)
            return t.unsqueeze(0).contiguous()
        return produce

    def plain(self, e: TensorMap):
        """A whole-model tensor stored in one chunk."""
        return lambda offsets, sizes: self._whole(e, None)


def plan_from_hf(src: HFSource) -> tuple[list[TensorToWrite], dict[str, bytes]]:
    """What to write, chunked as the target layout stores it, plus the per-layer extra-state objects."""
    table, dtype, tp = src.table, src.dtype, src.parallel.tensor_model_parallel_size
    read = HFProducers(src)

    def whole(e: TensorMap) -> TensorToWrite:
        if e.vocab:
            chunks = row_blocks(tp_chunks(e.shape, e.tp_axis, tp, None), e.shape[1], dtype)
            return TensorToWrite(e.key, e.shape, dtype, chunks, read.embedding(e.hf[0]))
        return TensorToWrite(e.key, e.shape, dtype, tp_chunks(e.shape, None, tp, None), read.plain(e))

    def stacked(e: TensorMap) -> TensorToWrite:
        shape = (table.num_layers, *e.shape)
        chunks = [c for i in range(table.num_layers) for c in tp_chunks(shape, e.tp_axis, tp, i)]
        return TensorToWrite(e.key, shape, dtype, chunks, read.stacked(e))

    tensors = [whole(e) for e in table.before] + [stacked(e) for e in table.layer] + [whole(e) for e in table.after]
    empty = object_bytes(None)  # the local layer spec's (empty) extra state of each linear layer
    return tensors, {key: empty for key in table.extra_state_keys()}
