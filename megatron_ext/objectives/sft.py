"""Instruction tuning (``data.mode sft``): loss on the response tokens only, with optional packing.

Data: the indexed datasets ``codetron preprocess`` writes for instructions, one document =
``[prompt_ids, response_ids]`` with the response ending in EOD. A sample is one document shifted by
one token (inputs ``doc[:-1]``, labels ``doc[1:]``); label positions inside the prompt get loss weight
exactly 0, so prompt tokens never act as targets and contribute exactly zero gradient (the response
still attends to the prompt, as it must). Documents longer than ``seq_length + 1`` are cut at the
end of the response; documents whose prompt alone fills the sequence are dropped (no target left).

Epochs and blends: every dataset of ``data.data_path`` (``[w1, p1, w2, p2, ...]`` for weights) is a
megatron-core ``MegatronDataset``; megatron-core's ``BlendedDataset`` mixes them by weight. Each
dataset serves as many rows as the blend asks for by running further epochs, each a fresh
permutation of its documents seeded by (seed, dataset content, split, epoch) -- so changing train_iters
or moving the data does not reorder it (``codetron.megatron_ext.fingerprint``), and ``codetron train``
logs how many epochs a run covers.

Packing (``data.pack``): documents of one epoch are packed into rows of ``seq_length`` positions
(first fit, see :mod:`codetron.megatron_ext.packing`), with position ids restarted per document and attention
kept inside each document: an explicit block mask with the local layer spec, ``cu_seqlens`` with
TransformerEngine (flash attention stays usable).

Loss normalisation. The loop runs megatron-core with ``calculate_per_token_loss=True``: each
micro-batch returns (weighted loss sum, count), megatron sums both over micro-batches and
data-parallel ranks and divides once -- the loss is sum / count over the *global* batch, whatever
the layout. Plain SFT uses weight 1 per response token and count = response tokens. OctoPack's
norm-target-loss (``data.norm_target_loss``) uses weight ``1/n_i`` on the ``n_i`` response tokens of
sample ``i`` and count = number of samples, so sum / count is exactly the mean over all samples of the
global batch of each sample's mean token loss -- not a mean of per-micro-batch means, which would
change with micro-batch size, packing and DP size.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from codetron.errors import CodetronError, ConfigError
from codetron.megatron_ext.fingerprint import content_salt, dataset_fingerprint
from codetron.megatron_ext.objectives import register
from codetron.megatron_ext.packing import block_causal_mask, cu_seqlens, pack_first_fit, packed_seq_params


def weighted_token_loss(loss_weights: torch.Tensor, loss_units: torch.Tensor, output_tensor: torch.Tensor):
    """megatron-core per-token-loss contract with arbitrary weights: (sum of weight * loss, count,
    report). ``count`` is response tokens, or samples under norm-target-loss (see module docstring)."""
    losses = output_tensor.float().view(-1)
    loss_sum = torch.sum(losses * loss_weights.float().view(-1))
    count = loss_units.sum().to(torch.int)
    # The schedule rescales the returned loss in place; report a detached copy.
    report = torch.stack([loss_sum.detach().clone(), count.detach().clone().float()])
    return loss_sum, count, {"lm loss": report}


def _config_classes():
    from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
    from megatron.core.datasets.megatron_dataset import MegatronDataset

    return BlendedMegatronDatasetConfig, MegatronDataset


_BaseConfig, _MegatronDataset = _config_classes()


@dataclass
class SFTDatasetConfig(_BaseConfig):
    """megatron-core dataset config plus the SFT settings (``data.*``)."""

    pack: bool = True
    """Pack several documents per row."""
    norm_target_loss: bool = False
    """Weight 1/n_i per response token of sample i (count = samples)."""
    eod_mask_loss: bool = False
    """Give the response's closing EOD no loss weight."""


def check_sft_layout(dataset, path: str) -> None:
    """Every document must hold exactly two sequences (prompt, response)."""
    per_doc = np.diff(np.asarray(dataset.document_indices))
    bad = np.flatnonzero(per_doc != 2)
    if bad.size:
        d = int(bad[0])
        raise CodetronError(
            f"{path}.idx: document {d} has {int(per_doc[d])} sequences; data.mode=sft needs the instruction layout "
            f"(one document = prompt sequence + response sequence) written by `codetron preprocess` for instruction data")


class SFTDataset(_MegatronDataset):
    """Rows of one or more (packed) prompt/response documents from one indexed dataset split."""

    @staticmethod
    def numel_low_level_dataset(low_level_dataset) -> int:
        return len(low_level_dataset.document_indices) - 1

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        ds = IndexedDataset(dataset_path, multimodal=False, mmap=config.mmap_bin_files)
        check_sft_layout(ds, dataset_path)
        return ds

    @staticmethod
    def _key_config_attributes() -> list[str]:
        return ["random_seed", "sequence_length", "split", "split_matrix", "tokenizer", "pack"]

    def __init__(self, indexed_dataset, dataset_path, indexed_indices, num_samples, index_split, config):
        super().__init__(indexed_dataset, dataset_path, indexed_indices, num_samples, index_split, config)
        S = config.sequence_length
        seq_lens = np.asarray(indexed_dataset.sequence_lengths, dtype=np.int64)
        first = np.asarray(indexed_dataset.document_indices, dtype=np.int64)[np.asarray(indexed_indices, dtype=np.int64)]
        prompt, response = seq_lens[first], seq_lens[first + 1]
        # A response label must fall inside the S positions: prompt_len <= S and a non-empty response.
        keep = (response >= 1) & (prompt <= S)
        self.docs = np.asarray(indexed_indices, dtype=np.int64)[keep]
        positions = np.minimum(prompt + response, S + 1)[keep] - 1
        self.stats = {"documents": int(len(indexed_indices)), "dropped": int((~keep).sum()),
                      "truncated": int(((prompt + response)[keep] > S + 1).sum())}
        if len(self.docs) == 0:
            self.row_start, self.row_docs = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
            self.stats.update(rows_per_epoch=0, epochs=0, fill=0.0)
            return
        # content, never the path: the same data copied or named another way gives the same run
        salt = content_salt(dataset_fingerprint(dataset_path), index_split.name)
        target = num_samples or 0
        starts, flat, epoch, rows_first_epoch, used = [0], [], 0, 0, 0
        while epoch == 0 or len(starts) - 1 < target:
            order = np.random.default_rng([config.random_seed, salt, epoch]).permutation(len(self.docs))
            if config.pack:
                rows = [[int(order[i]) for i in r] for r in pack_first_fit(positions[order], S)]
            else:
                rows = [[int(i)] for i in order]
            for r in rows:
                flat.extend(r)
                starts.append(len(flat))
            if epoch == 0:
                rows_first_epoch, used = len(rows), int(positions.sum())
            epoch += 1
        self.row_start = np.asarray(starts, dtype=np.int64)
        self.row_docs = self.docs[np.asarray(flat, dtype=np.int64)]
        self.stats.update(rows_per_epoch=rows_first_epoch, epochs=epoch,
                          fill=used / max(1, rows_first_epoch * S))

    def __len__(self) -> int:
        return len(self.row_start) - 1

    def document(self, doc: int) -> tuple[np.ndarray, np.ndarray]:
        from codetron.preprocess.layout import read_sft_document

        return read_sft_document(self.dataset, doc)

    def __getitem__(self, idx: int) -> dict:
        cfg = self.config
        S = cfg.sequence_length
        pad, eod = int(cfg.tokenizer.pad), int(cfg.tokenizer.eod)
        tokens = np.full(S, pad, dtype=np.int64)
        labels = np.full(S, pad, dtype=np.int64)
        weights = np.zeros(S, dtype=np.float32)
        positions = np.zeros(S, dtype=np.int64)
        seg = np.zeros(S, dtype=np.int32)  # segment lengths of the row, zero padded
        units, off, k = 0, 0, 0
        for doc in self.row_docs[self.row_start[idx]:self.row_start[idx + 1]]:
            prompt, response = self.document(int(doc))
            full = np.concatenate([prompt, response]).astype(np.int64)[: S + 1]
            n = len(full) - 1
            w = (np.arange(1, n + 1) >= len(prompt)).astype(np.float32)  # label j is full[j+1]
            if cfg.eod_mask_loss:
                w[full[1:] == eod] = 0.0
            total = float(w.sum())
            if cfg.norm_target_loss and total > 0:
                w /= total
                units += 1
            else:
                units += int(total)
            tokens[off:off + n], labels[off:off + n], weights[off:off + n] = full[:-1], full[1:], w
            positions[off:off + n] = np.arange(n)
            seg[k], off, k = n, off + n, k + 1
        if not cfg.pack:
            # One document per row: plain causal attention; the padded tail (zero weight) comes
            # after the document and so cannot change it.
            positions[off:] = np.arange(off, S)
            seg[:] = 0
            seg[0] = S
        elif off < S:  # the unused tail: its own segment of padding, zero weight
            positions[off:] = np.arange(S - off)
            seg[k] = S - off
        return {"tokens": torch.from_numpy(tokens), "labels": torch.from_numpy(labels),
                "loss_mask": torch.from_numpy(weights), "position_ids": torch.from_numpy(positions),
                "seq_lens": torch.from_numpy(seg), "loss_units": torch.tensor(units, dtype=torch.int64)}


def _log_stats(train, rank0: bool) -> None:
    if not rank0 or train is None:
        return
    parts = getattr(train, "datasets", [train])
    for ds in parts:
        s = getattr(ds, "stats", None)
        if s is None:
            continue
        print(f"sft {ds.dataset_path}: {s['documents']} documents ({s['dropped']} dropped: prompt fills the sequence "
              f"or empty response; {s['truncated']} cut to seq_length), {s['rows_per_epoch']} rows per epoch "
              f"({s['fill']:.0%} of positions used), {len(ds)} rows = {s['epochs']} epoch(s)", flush=True)


@register("sft")
class SFTObjective:
    name = "sft"

    def __init__(self):
        self.thd = False
        self.seq_length = None

    def epoch_samples(self, cfg, tokenizer) -> int:
        """Training rows of one pass over every dataset of the blend: each dataset's train split
        packed (or not) once, summed; blend weights set how rows are drawn, not how many exist."""
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder

        config = self._dataset_config(cfg, tokenizer, weighted=False)
        # size None: megatron-core builds every dataset for exactly one epoch, the blend exhaustively.
        train, _, _ = BlendedMegatronDatasetBuilder(SFTDataset, [None, None, None], lambda: True, config).build()
        return 0 if train is None else len(train)

    @staticmethod
    def _dataset_config(cfg, tokenizer, weighted: bool = True) -> SFTDatasetConfig:
        from codetron.megatron_ext.objectives.lm import blend_from_paths
        from codetron.preprocess.tokenizer import require_pad

        prefixes, weights = blend_from_paths(cfg.data.data_path)
        require_pad(tokenizer, "data.mode sft (rows are padded to model.seq_length)")
        return SFTDatasetConfig(
            random_seed=cfg.data.seed, sequence_length=cfg.model.seq_length,
            blend=(prefixes, weights if weighted else None),
            split=cfg.data.split, tokenizer=tokenizer, path_to_cache=cfg.data.cache_dir, mmap_bin_files=True,
            pack=cfg.data.pack, norm_target_loss=cfg.data.norm_target_loss, eod_mask_loss=cfg.data.eod_mask_loss)

    def build_datasets(self, cfg, tokenizer, num_train_samples, num_valid_samples):
        import torch.distributed as dist

        from codetron.megatron_ext.model import resolve_impl
        from codetron.megatron_ext.objectives.lm import blend_from_paths, build_blended

        self.seq_length = cfg.model.seq_length
        self.thd = cfg.data.pack and resolve_impl(cfg.model) == "transformer_engine"
        if self.thd and cfg.parallel.pipeline_model_parallel_size > 1 and cfg.optim.micro_batch_size > 1:
            # thd flattens a micro-batch to one row of b*s tokens; pipeline stages exchange
            # activations shaped [s, b, h], so the two only agree when b == 1.
            raise ConfigError("data.pack with TransformerEngine and pipeline parallelism needs optim.micro_batch_size 1 "
                              "(pack more documents per row instead)")
        if cfg.data.fim_rate > 0:
            raise ConfigError("data.fim_rate applies to pretraining data; set it to 0 with data.mode sft")
        prefixes, _ = blend_from_paths(cfg.data.data_path)
        from codetron.preprocess.layout import dataset_layout

        for p in prefixes:
            layout = dataset_layout(p)
            if layout not in (None, "sft"):
                raise ConfigError(f"data.data_path {p}: written with the {layout!r} layout; data.mode sft needs "
                                  f"prompt/response data")
        config = self._dataset_config(cfg, tokenizer)
        train, valid = build_blended(SFTDataset, config, num_train_samples, num_valid_samples)
        rank0 = not dist.is_initialized() or dist.get_rank() == 0
        _log_stats(train, rank0)
        return train, valid

    def collate(self, samples: list[dict]) -> dict:
        keys = ("tokens", "labels", "loss_mask", "position_ids", "loss_units")
        batch = {k: torch.stack([s[k] for s in samples]) for k in keys}
        seq_lens = torch.stack([s["seq_lens"] for s in samples])
        if self.thd:
            batch["cu_seqlens"], batch["max_seqlen"] = cu_seqlens(seq_lens, batch["tokens"].shape[1])
        elif seq_lens[:, 1].any():  # some row holds more than one segment: keep attention inside each
            batch["attention_mask"] = block_causal_mask(seq_lens, batch["tokens"].shape[1])
        return batch

    def forward_step(self, batch: dict, model):
        loss_fn = partial(weighted_token_loss, batch["loss_mask"], batch["loss_units"])
        if "cu_seqlens" in batch:
            params = packed_seq_params(batch["cu_seqlens"], batch["max_seqlen"])
            flat = {k: batch[k].reshape(1, -1) for k in ("tokens", "position_ids", "labels")}
            output = model(flat["tokens"], flat["position_ids"], None, labels=flat["labels"],
                           packed_seq_params=params)
        else:
            output = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"),
                           labels=batch["labels"])
        return output, loss_fn
