"""megatron-core checkpoint (any TP/PP/VPP, as written by ``codetron train``) -> HF model folder of
the checkpoint's family (``model.family``: GPTBigCode, StarCoder2, ...).

Streaming (``streaming.plan_to_hf``): the output's tensor list (names, shapes, dtypes) is planned from
the checkpoint metadata and the family's tensor table alone; then each HF tensor is read from the
dist checkpoint as one layer slice, transformed (vocab padding stripped, fused QKV laid out as the
family's HF model has it, dtype cast) and written straight into its safetensors shard. At most one
slice plus one stored chunk is in memory at a time.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from codetron.errors import CodetronError
from codetron.convert import tokenizer_files
from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.hf_config import family_of, save_hf_config
from codetron.convert.safetensors_io import write_sharded
from codetron.convert.safety import check_output, export_dir, source_from
from codetron.convert.streaming import plan_to_hf
from codetron.megatron_ext.families.layouts import WORD_EMBEDDINGS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HF_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


@dataclass(kw_only=True)
class ToHFOptions:
    """Options of ``codetron convert to-hf``."""

    dtype: str | None = None
    """fp32, bf16 or fp16; None keeps the checkpoint's dtype."""
    max_shard_size: str = "2GB"
    """Largest safetensors shard (e.g. 500MB, 5GB); bigger models get numbered shards + an index."""
    tokenizer: str | None = None
    """tokenizer.json to ship instead of the run's ``data.tokenizer``."""
    no_tokenizer: bool = False
    """Write the model without tokenizer files."""
    progress: bool = True
    """Show a tqdm bar."""
    overwrite: bool = False
    """Replace a previous to-hf output at OUT (only what its manifest lists; never the run itself)."""


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1
    if unit not in units or value <= 0:
        raise CodetronError(f"--max-shard-size {text!r}: expected a size such as 500MB or 5GB")
    return int(value * units[unit])


def publishable(tmp: Path) -> None:
    """mkdtemp makes 0700 directories; the published folder gets the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)


def run_root(ckpt_dir: Path) -> Path:
    """The training run an ``iter_*`` directory belongs to (what conversion must never touch), or
    the directory alone when it was copied out of its run."""
    from codetron.megatron_ext.checkpointing import TRACKER

    return ckpt_dir.parent if (ckpt_dir.parent / TRACKER).is_file() else ckpt_dir


def saved_tokenizer(run, ckpt_dir: Path) -> str | None:
    """``data.tokenizer`` of a saved config, found again after the checkpoint folder moved.

    A saved config records paths as they were at save time (from-hf writes absolute ones, so that
    ``train --config`` works from any directory). A tokenizer stored inside the checkpoint's own
    folder (from-hf keeps the HF files in ``OUT/tokenizer/``) is looked up relative to where that
    folder is now, so a copied or moved checkpoint converts without its original location.
    """
    spec = run.data.tokenizer
    if not spec or spec.startswith("null:"):
        return spec
    here = ckpt_dir.parent
    tok = os.path.normpath(spec)
    for root in (run.checkpoint.save, run.checkpoint.load):
        if not root or os.path.isabs(root) != os.path.isabs(tok):
            continue
        rel = os.path.relpath(tok, os.path.normpath(root))
        if rel != os.curdir and not rel.startswith(os.pardir) and (here / rel).exists():
            return str(here / rel)
    return spec


def load_run_config(ckpt_dir: Path):
    from codetron.megatron_ext.checkpointing import saved_config
    from codetron.megatron_ext.config import config_from_dict

    return config_from_dict(saved_config(ckpt_dir))


def to_hf(ckpt: str | Path, out: str | Path, opts: ToHFOptions | None = None) -> dict:
    """Convert; returns a small report (also written as ``codetron_conversion.json``)."""
    from codetron.megatron_ext.checkpointing import CONFIG_NAME, resolve_checkpoint_dir

    opts = opts or ToHFOptions()
    t0 = time.time()
    if opts.dtype is not None and opts.dtype not in DTYPES:
        raise CodetronError(f"--dtype {opts.dtype!r}: choose fp32, bf16 or fp16")
    max_shard = parse_size(opts.max_shard_size)
    ckpt_dir = resolve_checkpoint_dir(ckpt)
    inputs = {"checkpoint": run_root(ckpt_dir)}
    check_output(out, inputs, "to-hf", opts.overwrite)
    cfg_path = ckpt_dir / CONFIG_NAME
    run = load_run_config(ckpt_dir)
    model = run.model
    if not model.vocab_size:
        raise CodetronError(f"{cfg_path}: model.vocab_size is empty; cannot tell real rows from padding")
    vocab = model.vocab_size
    tok = tokenizer_files.resolve(saved_tokenizer(run, ckpt_dir), opts.tokenizer, opts.no_tokenizer, str(cfg_path))
    tokenizer_files.check_vocab(tok, vocab, str(cfg_path))
    if tok is not None and tok.path is None and tok.vocab_size != vocab:
        raise CodetronError(f"{cfg_path}: data.tokenizer null:{tok.vocab_size} disagrees with model.vocab_size {vocab}")
    reader = CheckpointReader(ckpt_dir)
    dtype = DTYPES[opts.dtype] if opts.dtype else None
    plan = plan_to_hf(reader, family_of(model), model, vocab, dtype, cfg_path)
    out_dtypes = {t.dtype for t in plan}
    config_dtype = HF_DTYPE_NAMES.get(dtype or reader.dtype(WORD_EMBEDDINGS), "float32")
    total = sum(_numel(t.shape) for t in plan)

    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=f"to-hf {ckpt_dir.name}", unit="tensor", leave=False)
    out = Path(out)
    with export_dir(out, inputs, "to-hf", opts.overwrite) as tmp:
        publishable(tmp)
        files = write_sharded(tmp, plan, max_shard, metadata={"converted_by": "codetron convert to-hf"},
                              on_tensor=(lambda name: bar.update(1)) if bar else None)
        if bar:
            bar.close()
        # transformers is imported only now, after the big tensors are gone (keeps peak RSS down)
        from transformers import GenerationConfig

        bos, eos, pad = (tok.bos, tok.eos, tok.pad) if tok else (None, None, None)
        save_hf_config(model, vocab, bos, eos, pad, config_dtype, tmp)  # the family's config class
        carried = tokenizer_files.side_files(tok.path) if tok is not None and tok.path is not None else []
        if not any(f.name == "generation_config.json" for f in carried):
            gen = {k: v for k, v in dict(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad).items() if v is not None}
            GenerationConfig(**gen).save_pretrained(str(tmp))
        tok_files = []
        if carried:
            tok_files = [n for n in tokenizer_files.copy_side_files(carried, tmp) if n != "generation_config.json"]
        elif tok is not None and tok.path is not None:
            tok_files = [Path(p).name for p in tokenizer_files.write_hf_tokenizer(tok, tmp, model.positions)]
        report = {
            "source": source_from(ckpt_dir, out),
            "iteration": int(ckpt_dir.name.split("_")[-1]),
            "layout": {"tensor_model_parallel_size": run.parallel.tensor_model_parallel_size,
                       "pipeline_model_parallel_size": run.parallel.pipeline_model_parallel_size,
                       "virtual_pipeline_model_parallel_size": run.parallel.virtual_pipeline_model_parallel_size},
            "vocab_size": vocab,
            "padded_vocab_size": reader.shape(WORD_EMBEDDINGS)[0],
            "dtype": sorted(HF_DTYPE_NAMES[d] for d in out_dtypes),
            "parameters": total,
            "files": files,
            "tokenizer": tok.note if tok else "none written (--no-tokenizer)",
            "tokenizer_files": tok_files,
            "seconds": round(time.time() - t0, 2),
        }
        (tmp / "codetron_conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
