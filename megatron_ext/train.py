"""``codetron train``: pretrain or fine-tune a code model of any family on megatron-core.

Examples::

    # one process, CPU, tiny model on data written by `codetron preprocess`
    codetron train --preset debug-tiny --data.data_path out/code --checkpoint.save runs/tiny

    # 4 ranks: TP2 x PP2 (torchrun or srun set the ranks)
    torchrun --standalone --nproc-per-node 4 -m codetron train --preset debug-tiny \\
        --parallel.tensor_model_parallel_size 2 --parallel.pipeline_model_parallel_size 2 \\
        --data.data_path out/code --checkpoint.save runs/tiny-tp2pp2

    # a recipe from a paper, a YAML file, then flags (applied in that order); --print-config shows
    # the result and, per value, which of them set it
    codetron train --recipe wizardcoder-sft --config sft.yaml --optim.train_iters 10

Any field of the config sections model / parallel / data / optim / checkpoint / logging can be set
as ``--section.field value`` (or ``--field value`` when unambiguous); `codetron presets NAME`
prints every field with its value. Resume is automatic from ``checkpoint.save``.
"""
from __future__ import annotations

import argparse
import sys

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import TRANSFORMER_IMPLS

FIELD_CHOICES = {"model.family": families.names, "model.transformer_impl": lambda: TRANSFORMER_IMPLS}
"""Fields whose values come from a fixed list (``--fields`` shows it); families from their registry."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codetron train", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with sections model/parallel/data/optim/checkpoint/logging")
    p.add_argument("--preset", help="model preset (see `codetron presets`), e.g. debug-tiny, starcoder-15b")
    p.add_argument("--recipe", help="training recipe, e.g. starcoder-pretrain, wizardcoder-sft")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config, each value marked with where it came from (preset, recipe, "
                        "YAML file, command line or default), and exit")
    p.add_argument("--fields", action="store_true", help="list every settable field with its docstring and exit")
    return p


def list_fields() -> str:
    import dataclasses

    from codetron.megatron_ext.config import SECTIONS, TrainConfig

    import ast
    import inspect
    import textwrap

    cfg = TrainConfig()
    out = []
    for sec in SECTIONS:
        cls = type(getattr(cfg, sec))
        docs = {}
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        body = tree.body[0].body
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
                docs[a.target.id] = " ".join(str(b.value.value).split())
        out.append(f"[{sec}] {cls.__doc__.strip().splitlines()[0]}")
        for f in dataclasses.fields(cls):
            default = getattr(getattr(cfg, sec), f.name)
            choices = FIELD_CHOICES.get(f"{sec}.{f.name}")
            one_of = f"; one of {', '.join(choices())}" if choices else ""
            out.append(f"  --{sec}.{f.name} (default {default!r}{one_of}): {docs.get(f.name, '')}")
    return "\n".join(out)


def resolve(argv: list[str]):
    from codetron.megatron_ext.config import parse_cli_overrides
    from codetron.megatron_ext.presets import resolve_with_origins

    args, rest = _parser().parse_known_args(argv)
    overrides = parse_cli_overrides(rest)
    cfg, origins = resolve_with_origins(args.preset, args.recipe, args.config, overrides)
    args.origins = origins
    return args, cfg


def versions() -> str:
    import megatron.core
    import torch

    te = "absent"
    try:
        import transformer_engine

        te = transformer_engine.__version__
    except Exception:
        pass
    return f"torch {torch.__version__} | megatron-core {megatron.core.__version__} | transformer-engine {te}"


def _check_resume(cfg, tokenizer_vocab: int, rank0: bool) -> None:
    """Before any process group (so nothing hangs and no rank prints a traceback): the checkpoint the
    run will start from is intact (else the newest intact one is used, said in one line) and holds
    this model's shapes."""
    from codetron.megatron_ext import checkpointing

    report = (lambda msg: print(f"warning: {msg}", flush=True)) if rank0 else None
    ckpt_dir, _ = checkpointing.resume_source(cfg.checkpoint, report)
    if ckpt_dir is not None:
        checkpointing.check_same_model(ckpt_dir, cfg.model, cfg.model.vocab_size or tokenizer_vocab)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, cfg = resolve(argv)
    if args.fields:
        print(list_fields())
        return 0
    if args.print_config:
        from codetron.megatron_ext.config import annotated_yaml

        print(annotated_yaml(cfg, args.origins), end="")
        return 0

    from codetron.megatron_ext.parallel import destroy_distributed, detect_launch, init_distributed
    from codetron.megatron_ext.tokenizer_info import load_training_tokenizer
    from codetron.megatron_ext.validate import validate

    launch = detect_launch()
    validate(cfg, launch.world_size)  # before any process group exists, so nothing can hang
    if cfg.checkpoint.finetune and not cfg.checkpoint.load:
        raise ConfigError("checkpoint.finetune needs checkpoint.load (the checkpoint to start from)")
    tokenizer = load_training_tokenizer(cfg.data.tokenizer)
    _check_resume(cfg, tokenizer.vocab_size, launch.rank == 0)
    if launch.rank == 0:
        print(f"codetron train | {versions()} | ranks {launch.world_size} ({launch.launcher})", flush=True)
        print("resolved config:\n" + cfg.to_yaml(), flush=True)
    init_distributed(cfg.parallel, cfg.optim.seed, launch)
    try:
        from codetron.megatron_ext.training import train

        result = train(cfg, launch, tokenizer)
    finally:
        destroy_distributed()
    if launch.rank == 0:
        print(f"training {result.state} at step {result.iteration}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
