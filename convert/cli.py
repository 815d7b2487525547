"""codetron convert: megatron-core checkpoints <-> Hugging Face models of every family (GPTBigCode, StarCoder2, ...).

Examples::

    # a training run (its latest checkpoint) -> HF folder, bf16 weights
    codetron convert to-hf runs/tiny hf/tiny-bf16 --dtype bf16

    # StarCoder-style HF folder -> megatron-core checkpoint to fine-tune with TP2 x PP2 (4 ranks)
    codetron convert from-hf hf/starcoderbase-1b ckpt/sc1b --tp 2 --pp 2
    torchrun --standalone --nproc-per-node 4 -m codetron train \\
        --config ckpt/sc1b/iter_0000000/codetron_config.yaml --data.data_path out/sft --checkpoint.save runs/ft

    # prove a conversion: logits on random tokens and greedy decoding, megatron vs HF
    codetron convert check runs/tiny hf/tiny

Any TP/PP/VPP layout converts: megatron dist checkpoints store global tensors, and conversion reads
and writes them one layer slice at a time (peak memory: a few tensors, not the model).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from codetron.cli_args import add_field, static_dataclass

from codetron.megatron_ext import families


@dataclass(kw_only=True, slots=True)
class CheckOptions:
    """Options of ``codetron convert check``."""

    atol: float = 1e-4
    """Largest allowed |logit difference|; bf16/fp16 HF weights are compared with megatron's rounded to
    the same dtype, so this stays an fp32 arithmetic tolerance."""
    batch: int = 2
    """Random sequences compared."""
    seq_len: int | None = None
    """Tokens per sequence; None: the model's seq_length."""
    new_tokens: int = 16
    """Greedy tokens whose choice must agree."""
    seed: int = 0
    """Seed of the random tokens."""


def build_parser() -> argparse.ArgumentParser:
    # the options' dataclasses live beside the converters, which import torch (seconds): --help reads
    # their defaults and docstrings from the source instead (tests/test_cli_defaults.py compares them)
    ToHFOptions = static_dataclass("codetron.convert.to_hf", "ToHFOptions")
    FromHFOptions = static_dataclass("codetron.convert.from_hf", "FromHFOptions")
    archs = " / ".join(f.hf_architecture for f in families.all_families())
    names = [f.title for f in families.all_families()]
    titles = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    p = argparse.ArgumentParser(prog="codetron convert", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{to-hf,from-hf,check}")

    a = sub.add_parser("to-hf", help=f"megatron-core checkpoint -> HF {archs} folder",
                       description="Convert a checkpoint written by `codetron train` (any TP/PP/VPP) into a "
                                   f"Hugging Face {titles} folder (the family the run's config "
                                   "names): sharded safetensors + index, config.json, generation_config.json "
                                   "and the run's tokenizer.")
    a.add_argument("ckpt", help="run directory (its latest checkpoint is used) or an iter_XXXXXXX directory")
    a.add_argument("out", help="output folder, written atomically; must be new or empty, or a previous to-hf "
                              "output with --overwrite; never inside or around the run")
    a.add_argument("--overwrite", action="store_true",
                   help="replace a previous to-hf output at OUT: only the files its codetron_export.json lists; "
                        "refused if OUT holds anything else or an edited export file")
    a.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="weight dtype (default: as stored)")
    add_field(a, ToHFOptions, "max_shard_size")
    a.add_argument("--tokenizer", help="tokenizer.json to ship (default: the run's data.tokenizer)")
    a.add_argument("--no-tokenizer", action="store_true", help="write the model without tokenizer files")
    a.add_argument("--check", action="store_true", help="afterwards, run `check` on the result")
    a.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("from-hf", help=f"HF {titles} folder -> megatron-core checkpoint for fine-tuning",
                       description=f"Convert a Hugging Face {titles} folder "
                                   "(safetensors; the family read from config.json's model_type) into a "
                                   "megatron-core checkpoint that `codetron train --checkpoint.finetune true "
                                   "--checkpoint.load OUT` starts from.")
    b.add_argument("hf_dir", help="folder with config.json and model.safetensors (or an index + shards)")
    b.add_argument("out", help="output checkpoint directory, written atomically; must be new or empty, or a "
                              "previous from-hf output with --overwrite; never inside or around HF_DIR")
    b.add_argument("--overwrite", action="store_true",
                   help="replace a previous from-hf output at OUT: only the files its codetron_export.json lists; "
                        "refused if OUT holds anything else (e.g. a training run saved into it)")
    for name in ("tp", "pp", "vpp"):
        add_field(b, FromHFOptions, name)
    b.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="weight dtype (default: as stored)")
    add_field(b, FromHFOptions, "make_vocab_size_divisible_by")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    c = sub.add_parser("check", help="compare megatron-core and HF logits on random tokens",
                       description="Load the megatron-core checkpoint (one process) and the HF folder, run both in "
                                   "fp32 on the same random tokens, report the largest logit difference and "
                                   "whether greedy decoding agrees. Exit 1 if not within --atol.")
    c.add_argument("ckpt", help="run directory or iter_XXXXXXX directory")
    c.add_argument("hf_dir", help="Hugging Face folder")
    for name in ("atol", "batch", "seq_len", "new_tokens", "seed"):
        add_field(c, CheckOptions, name)
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _print_check(result, as_json: bool) -> int:
    d = result.as_dict()
    if as_json:
        print(json.dumps(d))
    else:
        print(f"max |logit diff| {d['max_abs_diff']:.3e} (atol {d['atol']:.0e}, logits up to {d['logit_scale']:.2f}); "
              f"argmax agreement {d['argmax_agreement']:.4f}; greedy {len(d['greedy_hf'])} tokens "
              f"{'identical' if d['greedy_equal'] else 'DIFFER'}")
        if not d["greedy_equal"]:
            print(f"  megatron: {d['greedy_megatron']}\n  hf:       {d['greedy_hf']}")
        if d["rounding_diff"] is not None:
            print(f"  HF weights are {d['reference_dtype']}: megatron's were rounded the same way before comparing "
                  f"(the rounding itself moves logits by up to {d['rounding_diff']:.3e})")
        print("check " + ("passed" if result.ok else "FAILED"))
    return 0 if result.ok else 1


_parser = build_parser  # the former name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.cmd == "to-hf":
        from codetron.convert.to_hf import ToHFOptions, to_hf

        report = to_hf(args.ckpt, args.out, ToHFOptions(dtype=args.dtype, max_shard_size=args.max_shard_size,
                                                         tokenizer=args.tokenizer, no_tokenizer=args.no_tokenizer,
                                                         progress=not args.quiet, overwrite=args.overwrite))
        print(f"wrote {args.out}: {report['parameters']:,} parameters in {len(report['files'])} safetensors file(s), "
              f"vocab {report['vocab_size']} (padded {report['padded_vocab_size']}), {'/'.join(report['dtype'])}, "
              f"from {args.ckpt} iteration {report['iteration']} (TP{report['layout']['tensor_model_parallel_size']} "
              f"PP{report['layout']['pipeline_model_parallel_size']}) in {report['seconds']}s")
        print(f"tokenizer: {report['tokenizer']}")
        if args.check:
            from codetron.convert.check import check

            return _print_check(check(args.ckpt, args.out), False)
        return 0
    if args.cmd == "from-hf":
        from codetron.convert.from_hf import FromHFOptions, from_hf

        report = from_hf(args.hf_dir, args.out, FromHFOptions(
            tp=args.tp, pp=args.pp, vpp=args.vpp, dtype=args.dtype,
            make_vocab_size_divisible_by=args.make_vocab_size_divisible_by, progress=not args.quiet,
            overwrite=args.overwrite))
        for note in report["notes"]:
            print(f"note: {note}")
        print(f"wrote {args.out}/iter_0000000 ({report['dtype']}, vocab {report['vocab_size']} padded to "
              f"{report['padded_vocab_size']}) in {report['seconds']}s; tokenizer: {report['tokenizer']}")
        print(f"fine-tune with: codetron train --config {args.out}/iter_0000000/codetron_config.yaml "
              f"--data.data_path PREFIX --checkpoint.save RUN_DIR")
        hf = report["hf_run_settings"]
        print(f"the config holds the architecture; training settings come from --recipe or flags (the HF config's "
              f"context {hf['seq_length']}, dropout {hf['hidden_dropout']:g}/{hf['attention_dropout']:g} are not applied)")
        return 0
    from codetron.convert.check import check

    return _print_check(check(args.ckpt, args.hf_dir, batch=args.batch, seq_len=args.seq_len,
                              new_tokens=args.new_tokens, atol=args.atol, seed=args.seed), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
