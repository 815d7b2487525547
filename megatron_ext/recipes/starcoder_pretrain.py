"""``starcoder-pretrain``: StarCoderBase's pretraining (StarCoder paper, arXiv:2305.06161) on the starcoder-15b preset.
Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("starcoder-pretrain", Recipe(
    model_preset="starcoder-15b",
    settings=RecipeSettings(
        global_batch_size=512, micro_batch_size=1, lr=3e-4, min_lr=3e-5, lr_decay_style="cosine",
        lr_warmup_iters=2000, train_iters=250_000, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
        adam_eps=1e-8, clip_grad=1.0, precision="bf16",
        hidden_dropout=0.1, attention_dropout=0.1,
        fim_rate=0.5, fim_spm_rate=0.5,
        tensor_model_parallel_size=4, pipeline_model_parallel_size=4, sequence_parallel=True,
        use_distributed_optimizer=True,
        save_interval=2500,
    ),
    source="StarCoder paper (arXiv:2305.06161) Sec. 5.1: Adam b1 0.9 b2 0.95 eps 1e-8, wd 0.1, lr 3e-4 "
           "cosine to 3e-5 after 2,000 warmup iterations, 250k iterations of 4M tokens (512 x 8192), "
           "FIM rate 0.5 (half SPM), dropout 0.1; 512 A100 80GB, TP4 PP4, 24 days for 1T tokens",
    description="StarCoderBase pretraining on 512 GPUs",
    published_gpus=512, published_tokens=1e12, published_days=24,
))
