"""Causal LM pretraining on megatron-core GPTDataset blends (optionally with FIM)."""
from __future__ import annotations

from functools import partial

import torch

from codetron.megatron_ext.objectives import register
from codetron.megatron_ext.datapath import data_prefixes


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Per-token loss sum and token count (megatron-core's calculate_per_token_loss contract)."""
    losses = output_tensor.float().view(-1)
    mask = loss_mask.float().view(-1)
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    # The schedule rescales the returned loss in place; report a detached copy.
    report = torch.stack([loss_sum.detach().clone(), num_tokens.detach().clone().float()])
    return loss_sum, num_tokens, {"lm loss": report}


def blend_from_paths(data_path: list[str]):
    prefixes = data_prefixes(data_path)
    if len(prefixes) == len(data_path):
        return prefixes, None
    return prefixes, [float(w) for w in data_path[0::2]]


def gpt_dataset_config(cfg, tokenizer, seq_length: int | None = None):
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    prefixes, weights = blend_from_paths(cfg.data.data_path)
    return GPTDatasetConfig(
        random_seed=cfg.data.seed,
        sequence_length=seq_length or cfg.model.seq_length,
        blend=(prefixes, weights),
        split=cfg.data.split,
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=cfg.data.eod_mask_loss,
        create_attention_mask=False,
        path_to_cache=cfg.data.cache_dir,
        mmap_bin_files=True,
    )


def build_blended(dataset_cls, config, num_train: int, num_valid: int):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder

    train, valid, _ = BlendedMegatronDatasetBuilder(
        dataset_cls, [num_train, num_valid, 0], lambda: True, config).build()
    return train, valid


def _uncached_gpt_dataset():
    from megatron.core.datasets.gpt_dataset import GPTDataset

    class UncachedMaskGPTDataset(GPTDataset):
        """megatron-core 0.16 caches the first sample's loss mask and then zeroes that sample's pad
        positions on the cached object, so later samples silently lose loss on real tokens. Masks
        are cheap to rebuild; never cache them."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.masks_and_position_ids_are_cacheable = False

    return UncachedMaskGPTDataset


@register("pretrain")
class LMObjective:
    name = "pretrain"

    def build_datasets(self, cfg, tokenizer, num_train_samples, num_valid_samples):
        dataset_cls = _uncached_gpt_dataset()
        if cfg.data.fim_rate > 0:
            from codetron.megatron_ext.fim import FIMGPTDataset  # written with the FIM objective

            dataset_cls = FIMGPTDataset
        config = gpt_dataset_config(cfg, tokenizer)
        if cfg.data.fim_rate > 0:
            config = FIMGPTDataset.make_config(config, cfg.data, tokenizer)
        return build_blended(dataset_cls, config, num_train_samples, num_valid_samples)

    def collate(self, samples):
        keys = ("tokens", "labels", "loss_mask", "position_ids")
        return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in keys}

    def forward_step(self, batch, model):
        output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return output, partial(masked_token_loss, batch["loss_mask"])
