"""``starcoder2-instruct``: StarCoder2-Instruct's self-aligned instruction tuning of StarCoder2-15B.
Every value next to the published one: docs/recipes.md."""
from __future__ import annotations

from codetron.megatron_ext.recipes.base import Recipe, RecipeSettings, register

register("starcoder2-instruct", Recipe(
    model_preset="starcoder2-15b",
    settings=RecipeSettings(
        # one sample per row, 64 rows per step, each sample's mean token loss averaged: the upstream
        # Trainer's batch 1 x 64 accumulation steps (transformers 4.39 means the loss per micro-batch)
        global_batch_size=64, micro_batch_size=1, seq_length=1280, train_epochs=4,
        lr=1e-5, min_lr=0.0, lr_decay_style="linear", lr_warmup_fraction=0.05,
        # Adam in place of Adafactor, HF Trainer's AdamW defaults: see source.
        adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, weight_decay=0.0, clip_grad=0.0,
        precision="bf16", hidden_dropout=0.0, attention_dropout=0.0,
        mode="sft", pack=False, norm_target_loss=True, finetune=True,
        tensor_model_parallel_size=4, pipeline_model_parallel_size=2, use_distributed_optimizer=True,
    ),
    source="bigcode-project/starcoder2-self-align@0b19dbcd README.md:230-263 (the training script) and "
           "src/star_align/train.py: StarCoder2-15B fine-tuned on the 50k self-aligned pairs, lr 1e-5 (:234), "
           "4 epochs (:235), sequence 1280 (:236, samples cut there, train.py:70-72), warmup ratio 0.05 "
           "(:237), linear schedule (:260), batch 1 x 64 accumulation (:250-251, no packing: "
           "pad_to_max_length False, :249), no gradient clipping (--max_grad_norm -1, :257), bf16 (:246), "
           "dropout 0 (:261-263), Adafactor (:256); the prompt starts with BOS (train.py:51, add_bos; "
           "codetron.templates.BOS_TEMPLATES). megatron-core has no Adafactor (Adam and SGD only), so this "
           "uses Adam with the Hugging Face Trainer's AdamW defaults (b1 0.9, b2 0.999, eps 1e-8, no weight "
           "decay): at lr 1e-5 for ~3k steps it is the standard fine-tuning optimizer, and Adafactor's reason, "
           "factored second moments to save memory, is served here by the distributed optimizer sharding "
           "Adam's state over data-parallel ranks. Every value and deviation: docs/recipes.md",
    description="StarCoder2-Instruct self-aligned instruction tuning of StarCoder2-15B",
))
