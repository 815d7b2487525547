"""HF model folder of any family (GPTBigCode, StarCoder2, ...; by config.json's ``model_type``) ->
megatron-core checkpoint.

The output is the layout ``codetron train`` writes and ``--checkpoint.finetune`` starts from:
``OUT/iter_0000000/`` (torch_dist files + ``codetron_config.yaml``) and
``OUT/latest_checkpointed_iteration.txt``.

Why no torchrun and no model: megatron's dist checkpoints key every parameter globally, so the
bytes on disk do not depend on the TP/PP layout that wrote them -- any layout loads any checkpoint.
Building the target model under torchrun would hold the whole model in RAM across the ranks (31 GB
for StarCoder-15B in bf16) just to write the same global tensors. Instead one process writes the
checkpoint tensor by tensor: each HF tensor is read with positioned reads, mapped, and written as
the chunks the requested ``--tp/--pp`` layout would store (one per layer and TP rank; embeddings
in row blocks of at most 64 MB; ``streaming.plan_from_hf`` from the family's tensor table), so peak
memory is one tensor. ``--tp/--pp/--vpp`` are validated against the architecture and recorded in the
saved config, which ``codetron train --config OUT/iter_0000000/codetron_config.yaml`` can start from.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from codetron.errors import CodetronError
from codetron.convert import tokenizer_files
from codetron.convert.dcp_io import TensorToWrite, write_checkpoint
from codetron.convert.hf_config import dropout_note, family_for, from_hf_config, read_hf_config
from codetron.convert.safetensors_io import SafetensorsFolder
from codetron.convert.safety import check_output, export_dir, source_from
from codetron.convert.streaming import HFSource, check_hf_tensors, plan_from_hf
from codetron.convert.to_hf import DTYPES, publishable
from codetron.megatron_ext.config import ModelConfig, ParallelConfig
from codetron.megatron_ext.families.layouts import WORD_EMBEDDINGS, check_kv_groups


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


def validate_layout(model: ModelConfig, parallel: ParallelConfig, padded_vocab: int, where: str) -> None:
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
    check_kv_groups(model.num_attention_heads, model.num_query_groups, tp, where)
    if padded_vocab % tp:
        raise CodetronError(f"padded vocab {padded_vocab} is not divisible by --tp {tp}")
    stages = pp * (vpp or 1)
    if model.num_layers % stages:
        raise CodetronError(f"{where}: n_layer {model.num_layers} is not divisible by --pp x --vpp = {stages}")


def read_source(hf_dir: Path, opts: FromHFOptions) -> HFSource:
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
    validate_layout(model, parallel, padded, where)
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise CodetronError(f"--dtype {opts.dtype!r}: choose fp32, bf16 or fp16")
    family = family_for(cfg)
    embeddings = family.tensors(model, padded).get(WORD_EMBEDDINGS).hf[0]  # its dtype is the model's
    dtype = DTYPES[opts.dtype] if opts.dtype else st.dtype(embeddings)
    note = dropout_note(cfg, where)
    return HFSource(hf_dir, family, model, parallel, st, padded, dtype, [note] if note else [])


def write_output(src: HFSource, out: Path, tensors: list[TensorToWrite], objects: dict[str, bytes],
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
    check_hf_tensors(src)
    tensors, objects = plan_from_hf(src)
    return write_output(src, Path(out), tensors, objects, opts.progress, t0, opts.overwrite)
