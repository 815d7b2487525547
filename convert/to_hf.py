"""megatron-core checkpoint (any TP/PP/VPP, as written by ``codetron train``) -> HF GPTBigCode folder.

Streaming: the output's tensor list (names, shapes, dtypes) is planned from the checkpoint metadata
alone; then each HF tensor is read from the dist checkpoint as one layer slice, transformed (vocab
padding stripped, fused QKV laid out for ``c_attn``, dtype cast) and written straight into its
safetensors shard. At most one slice plus one stored chunk is in memory at a time.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from codetron.errors import CodetronError
from codetron.convert import mapping as M
from codetron.convert import tokenizer_files
from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.hf_config import save_hf_config
from codetron.convert.safetensors_io import PlannedTensor, write_sharded
from codetron.convert.safety import check_output, export_dir, source_from
from codetron.megatron_ext.config import ModelConfig

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


def _expect_shape(reader: CheckpointReader, key: str, shape: tuple[int, ...], cfg_path: Path) -> None:
    got = reader.shape(key)
    if got != shape:
        raise CodetronError(f"{reader.path}: tensor {key} has shape {got} but {cfg_path.name} implies {shape} "
                            f"(config and weights disagree)")


def vocab_rows(reader: CheckpointReader, key: str, vocab: int):
    """A vocabulary-sized tensor (embeddings, output layer) without its padding rows, streamed one stored
    chunk at a time: the largest tensors of a model never sit in memory whole."""
    for first, rows in reader.iter_row_chunks(key):
        keep = max(0, min(rows.shape[0], vocab - first))
        if keep:
            yield M.strip_vocab_padding(rows, keep)


def plan_tensors(reader: CheckpointReader, model: ModelConfig, vocab: int, dtype: torch.dtype | None,
                 cfg_path: Path) -> list[PlannedTensor]:
    """Every HF tensor in write order, each with a producer that reads its slice on demand."""
    h, L = model.hidden_size, model.num_layers
    heads, groups, hd = model.num_attention_heads, model.num_query_groups, model.head_dim
    M.check_qkv_supported(heads, groups, f"{cfg_path}: model.num_query_groups")
    missing = [k for k in [*M.GLOBAL_MAP, *(M.LAYERS + s for s in M.LAYER_MAP)] if not reader.has(k)]
    if not model.tie_embeddings and not reader.has(M.UNTIED_OUTPUT[0]):
        missing.append(M.UNTIED_OUTPUT[0])
    if missing:
        raise CodetronError(f"{reader.path}: checkpoint lacks {missing[0]} ({len(missing)} model tensors missing); "
                            f"not a GPTBigCode model written by codetron train")
    padded = reader.shape(M.WORD_EMBEDDINGS)[0]
    if padded < vocab:
        raise CodetronError(f"{reader.path}: word embeddings have {padded} rows but model.vocab_size is {vocab}")
    stacked = {
        "self_attention.linear_qkv.weight": (M.qkv_rows(heads, groups, hd), h),
        "self_attention.linear_qkv.bias": (M.qkv_rows(heads, groups, hd),),
        "self_attention.linear_proj.weight": (h, h),
        "mlp.linear_fc1.weight": (model.ffn, h), "mlp.linear_fc1.bias": (model.ffn,),
        "mlp.linear_fc2.weight": (h, model.ffn),
    }
    for suffix in M.LAYER_MAP:
        _expect_shape(reader, M.LAYERS + suffix, (L, *stacked.get(suffix, (h,))), cfg_path)
    _expect_shape(reader, M.WORD_EMBEDDINGS, (padded, h), cfg_path)
    _expect_shape(reader, "embedding.position_embeddings.weight", (model.positions, h), cfg_path)

    def out_dtype(key: str) -> torch.dtype:
        return dtype or reader.dtype(key)

    def unpadded_rows(key: str):
        return vocab_rows(reader, key, vocab)

    plan = [
        PlannedTensor("transformer.wte.weight", (vocab, h), out_dtype(M.WORD_EMBEDDINGS),
                      lambda: unpadded_rows(M.WORD_EMBEDDINGS)),
        PlannedTensor("transformer.wpe.weight", (model.positions, h), out_dtype("embedding.position_embeddings.weight"),
                      lambda: reader.read("embedding.position_embeddings.weight")),
    ]
    for i in range(L):
        for suffix in M.LAYER_MAP:
            key = M.LAYERS + suffix
            shape = stacked.get(suffix, (h,))
            if "linear_qkv.weight" in suffix or "linear_qkv.bias" in suffix:
                fn = (lambda key=key, i=i: M.qkv_megatron_to_hf(reader.read(key, i), heads, groups, hd))
            else:
                fn = (lambda key=key, i=i: reader.read(key, i))
            plan.append(PlannedTensor(M.hf_layer_name(i, suffix), shape, out_dtype(key), fn))
    for key in ("decoder.final_layernorm.weight", "decoder.final_layernorm.bias"):
        _expect_shape(reader, key, (h,), cfg_path)
        plan.append(PlannedTensor(M.GLOBAL_MAP[key], (h,), out_dtype(key), lambda key=key: reader.read(key)))
    if not model.tie_embeddings:
        key, name = M.UNTIED_OUTPUT
        _expect_shape(reader, key, (padded, h), cfg_path)
        plan.append(PlannedTensor(name, (vocab, h), out_dtype(key), lambda: unpadded_rows(key)))
    return plan


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
    if model.family == "starcoder2":  # the family's name table (mapping.py), same streaming
        from codetron.convert.starcoder2 import plan_to_hf as plan_family
    else:
        plan_family = plan_tensors
    plan = plan_family(reader, model, vocab, dtype, cfg_path)
    out_dtypes = {t.dtype for t in plan}
    config_dtype = HF_DTYPE_NAMES.get(dtype or reader.dtype(M.WORD_EMBEDDINGS), "float32")
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
            "padded_vocab_size": reader.shape(M.WORD_EMBEDDINGS)[0],
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
