"""``wizardcoder-sft``: WizardCoder's Evol-Instruct fine-tuning (arXiv:2306.08568) of StarCoder-15B.
Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("wizardcoder-sft", Recipe(
    model_preset="starcoder-15b",
    settings=RecipeSettings(
        global_batch_size=512, micro_batch_size=1, seq_length=2048, train_iters=200, lr_warmup_iters=30,
        lr=2e-5, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.0, precision="bf16",
        mode="sft", pack=True,
        tensor_model_parallel_size=4, pipeline_model_parallel_size=2,
        finetune=True,
    ),
    source="WizardCoder paper (arXiv:2306.08568) Sec. 4.2: batch 512, sequence length 2048, 200 steps, "
           "30 warmup steps, lr 2e-5, cosine schedule (fp16 in the paper)",
    description="WizardCoder Evol-Instruct fine-tuning of StarCoder-15B",
))
