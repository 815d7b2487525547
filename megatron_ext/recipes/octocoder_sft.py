"""``octocoder-sft``: OctoCoder's instruction tuning (OctoPack, arXiv:2308.07124) of StarCoder-15B.
Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("octocoder-sft", Recipe(
    model_preset="starcoder-15b",
    settings=RecipeSettings(
        # warmup and weight decay as octopack's finetuning/starcoder/finetune.sh passes them
        global_batch_size=32, micro_batch_size=1, seq_length=2048, train_iters=35, lr_warmup_iters=5,
        lr=5e-4, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.05, precision="bf16",
        mode="sft", pack=True, norm_target_loss=False,
        tensor_model_parallel_size=4, pipeline_model_parallel_size=1,
        finetune=True,
    ),
    source="OctoPack paper (arXiv:2308.07124) App.: OctoCoder = StarCoder-16B fine-tuned on "
           "CommitPackFT+OASST, sequence length 2048, batch size 32, lr 5e-4 cosine, ~35 steps (~2M tokens), "
           "loss on answers only; warmup 5 and weight decay 0.05 from octopack finetuning/starcoder/finetune.sh",
    description="OctoCoder instruction tuning (CommitPackFT + OASST)",
))
