"""``deepseek-coder-sft``: DeepSeek-Coder's official instruction tuning (finetune/finetune_deepseekcoder.py)
of DeepSeek-Coder-6.7B-base, a Llama-family model. Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("deepseek-coder-sft", Recipe(
    model_preset="deepseek-coder-6.7b-base",
    settings=RecipeSettings(
        # the README's 16 per device x 4 accumulation steps, one device's worth (it names no GPU count)
        global_batch_size=64, micro_batch_size=1, seq_length=1024, train_epochs=3,
        lr=2e-5, min_lr=0.0, lr_decay_style="cosine", lr_warmup_iters=10,
        # HF Trainer's adamw_torch defaults (the script sets none of these)
        adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, weight_decay=0.0, clip_grad=1.0,
        precision="bf16", hidden_dropout=0.0, attention_dropout=0.0,
        mode="sft", pack=False, norm_target_loss=False, finetune=True,
        tensor_model_parallel_size=2, pipeline_model_parallel_size=1, use_distributed_optimizer=True,
    ),
    source="deepseek-ai/DeepSeek-Coder@d40caed finetune/README.md (the training command) and "
           "finetune/finetune_deepseekcoder.py@3fd8db8: 3 epochs, model_max_length 1024, 16 per device x 4 "
           "gradient accumulation, lr 2e-5, 10 warmup steps, cosine schedule (to 0), bf16, ZeRO-3; loss on the "
           "response only (prompt labels -100), samples padded to the longest in the micro-batch (no packing); "
           "Trainer defaults for what the command leaves out (AdamW b1 0.9, b2 0.999, eps 1e-8, no weight "
           "decay, max_grad_norm 1.0). Every value and deviation: docs/recipes.md",
    description="DeepSeek-Coder instruction tuning of DeepSeek-Coder-6.7B-base (the official fine-tune script)",
))
