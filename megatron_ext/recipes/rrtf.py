"""``rrtf``: PanGu-Coder2's RRTF ranking fine-tuning (arXiv:2307.14936) of StarCoder-15B.
Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("rrtf", Recipe(
    model_preset="starcoder-15b",
    settings=RecipeSettings(
        # A training row is one response; chosen/rejected rows of a pair share a micro-batch, so
        # micro is even and the paper's batch of 512 pairs is 1024 rows.
        global_batch_size=1024, micro_batch_size=2, seq_length=2048,
        lr=2e-5, min_lr=0.0, lr_decay_style="cosine", weight_decay=0.0,
        lr_warmup_iters=10, precision="bf16", train_epochs=6,
        mode="rrtf", rrtf_loss="paper", finetune=True,
        tensor_model_parallel_size=4, pipeline_model_parallel_size=2,
    ),
    source="PanGu-Coder2 paper (arXiv:2307.14936) Sec. 4: StarCoder-15B base, global batch 512, 6 epochs "
           "of the ranked data",
    description="PanGu-Coder2 RRTF ranking fine-tuning",
))
