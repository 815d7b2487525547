"""Typed configuration for training: one dataclass per concern.

Each function takes only the section it needs (``build_model`` gets ``ModelConfig`` and
``ParallelConfig``, the scheduler gets ``OptimConfig``...). ``TrainConfig`` only groups them for the
YAML file and the command line: ``--section.field value`` (or ``--field value`` when the field name
is unique across sections) overrides any value, after the preset and the YAML file.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codetron.errors import ConfigError

TRANSFORMER_IMPLS = ("auto", "local", "sdpa", "transformer_engine")
"""Values of ``model.transformer_impl``."""

DEFAULT_FAMILY = "gpt_bigcode"
"""``model.family`` of configs that name none (and of checkpoints saved before families existed)."""


@dataclass(kw_only=True)
class ModelConfig:
    """A model's architecture for megatron-core (what differs between families: ``megatron_ext/families/``)."""

    family: str = DEFAULT_FAMILY
    """The model family: a module of ``codetron.megatron_ext.families`` (``codetron.megatron_ext.families.names()``:
    gpt_bigcode for StarCoder/SantaCoder, starcoder2, ...), also the Hugging Face model_type `codetron
    convert` writes. It fixes what the fields below cannot say (norm, activation, positions, tensor
    names); every size, GQA, the sliding window and untied output are fields."""
    num_layers: int = 4
    """Transformer layers."""
    hidden_size: int = 64
    """Model width (``n_embd`` in GPTBigCode)."""
    num_attention_heads: int = 4
    """Query heads."""
    num_query_groups: int = 1
    """Key/value heads; 1 is multi-query attention as in SantaCoder/StarCoder."""
    ffn_hidden_size: int | None = None
    """MLP inner size; None means 4 * hidden_size (``n_inner``)."""
    seq_length: int = 128
    """Training sequence length."""
    max_position_embeddings: int | None = None
    """Rows of the learned position table (``n_positions``): a property of the model, not of the
    run -- every preset sets it, and fine-tuning at a shorter seq_length keeps the checkpoint's
    table. None (hand-built configs only) means seq_length. For family starcoder2 (no table) the
    longest context the model supports (``max_position_embeddings``)."""
    rotary_base: float = 10000.0
    """RoPE base (``rope_theta``); used by families with rotary positions (starcoder2, ...)."""
    sliding_window: int | None = None
    """Sliding-window attention: each token attends to itself and the window - 1 tokens before it
    (``sliding_window``; StarCoder2: 4096). None = full causal attention."""
    rope_scaling: dict[str, Any] | None = None
    """Scaled RoPE as the Hugging Face config gives it (``rope_scaling``, e.g. ``{"rope_type": "linear",
    "factor": 4.0}``); the family maps it to megatron-core and rejects what it cannot express. None =
    unscaled RoPE (or learned positions)."""
    qkv_bias: bool | None = None
    """Biases on the fused QKV projection; None = the family's own choice (GPTBigCode and StarCoder2:
    biases on every linear layer). A family with optional QKV biases reads this."""
    vocab_size: int | None = None
    """Tokenizer vocabulary; None means read it from the tokenizer at start-up."""
    make_vocab_size_divisible_by: int = 128
    """Embedding rows are padded to a multiple of this, independent of TP so checkpoints reshard."""
    layernorm_epsilon: float = 1e-5
    """LayerNorm epsilon (``layer_norm_epsilon``)."""
    hidden_dropout: float = 0.0
    """Dropout after attention/MLP and on the embedding output (``resid_pdrop`` and ``embd_pdrop``:
    megatron-core's embedding uses this same rate); StarCoder pretraining used 0.1."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities (``attn_pdrop``)."""
    init_method_std: float = 0.02
    """Normal init std (``initializer_range``)."""
    tie_embeddings: bool = True
    """Share input and output embeddings, as GPTBigCode does."""
    transformer_impl: str = "auto"
    """Layer spec: "local" (pure torch), "sdpa" (the local spec with attention through torch's
    scaled_dot_product_attention: flash/memory-efficient kernels on CUDA without TransformerEngine),
    "transformer_engine" (TE fused kernels, flash attention), or "auto" (TE when importable on a GPU,
    else sdpa on a GPU, else local)."""
    recompute: str | None = None
    """Activation recompute: None, "selective" (core attention) or "full" (whole layers)."""
    recompute_num_layers: int = 1
    """Layers per recompute chunk with recompute="full"."""

    @property
    def ffn(self) -> int:
        return self.ffn_hidden_size or 4 * self.hidden_size

    @property
    def positions(self) -> int:
        return self.max_position_embeddings or self.seq_length

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads



@dataclass(kw_only=True)
class ParallelConfig:
    """How the model is laid out over ranks; model code never sees these."""

    tensor_model_parallel_size: int = 1
    """TP: splits attention heads and MLP columns inside a node."""
    pipeline_model_parallel_size: int = 1
    """PP: splits layers into stages."""
    virtual_pipeline_model_parallel_size: int | None = None
    """Interleaved PP: model chunks per stage (None = plain 1F1B)."""
    use_distributed_optimizer: bool = False
    """Shard optimizer state over data-parallel ranks (ZeRO-1)."""
    sequence_parallel: bool = False
    """Shard LayerNorm/dropout activations over TP (needs TransformerEngine; GPU only)."""
    overlap_grad_reduce: bool = False
    """Overlap DP gradient reduction with backward (GPU)."""


@dataclass(kw_only=True)
class DataConfig:
    """Where tokens come from and how samples are built."""

    data_path: list[str] = field(default_factory=list)
    """Blend: ``[prefix]`` or ``[weight, prefix, weight, prefix, ...]`` of .bin/.idx prefixes."""
    split: str = "98,2,0"
    """Train/valid/test split of each dataset, in parts."""
    tokenizer: str | None = None
    """tokenizer.json / .model path; None means the bundled default tokenizer."""
    seed: int = 1234
    """Seed for sample shuffling and FIM."""
    mode: str = "pretrain"
    """"pretrain" (GPTDataset, optional FIM), "sft" (prompt/response data, loss on response),
    or "rrtf" (ranked pairs)."""
    fim_rate: float = 0.0
    """Fraction of documents turned into fill-in-the-middle samples (StarCoder: 0.5)."""
    fim_spm_rate: float = 0.5
    """Of FIM samples, the fraction in SPM order instead of PSM (StarCoder: 0.5)."""
    fim_tokens: list[str] | None = None
    """FIM special tokens as the tokenizer spells them: prefix, middle, suffix, and its FIM pad if it has one
    (else the tokenizer's pad token pads). None = StarCoder's ``<fim_prefix> <fim_middle> <fim_suffix>
    <fim_pad>``; model presets of other tokenizers set theirs (qwen2.5-coder-*: ``<|fim_prefix|>``...)."""
    fim_split_sample: str | None = None
    """Token that separates fragments for fragment-level FIM (e.g. "<file_sep>"), None = whole doc."""
    pack: bool = True
    """SFT: pack several samples into one sequence with attention kept inside each sample."""
    norm_target_loss: bool = False
    """SFT: average the loss per sample before averaging over samples (OctoPack)."""
    eod_mask_loss: bool = False
    """Exclude EOD tokens from the loss."""
    rrtf_loss: str = "paper"
    """RRTF loss: "paper" (PanGu-Coder2: sum over pairs with r_rejected < r_chosen of
    max(0, p_rejected - p_chosen) on mean token log-probs, plus the best response's summed token
    NLL once per query; logged per pair) or "weighted" (that hinge scaled by the score gap, plus the
    chosen response's mean token NLL in every pair)."""
    rrtf_margin: float = 0.0
    """RRTF: the teacher must lead the lower-scored response by this much mean token log-prob
    before the rank hinge goes to zero (paper: 0)."""
    cache_dir: str | None = None
    """GPTDataset index cache; None means next to the data."""
    num_workers: int = 0
    """Processes that read and collate training/validation micro-batches ahead of the step (torch
    DataLoader workers; 0 = in the training process). The batches are identical for any value."""


@dataclass(kw_only=True)
class OptimConfig:
    """Optimizer, schedule and batch sizes."""

    train_iters: int = 20
    """Optimizer steps (replaced by the count from train_epochs when that is set)."""
    train_epochs: float | None = None
    """Passes over the training data (SFT rows, or RRTF pairs = 2 rows each); when set it wins over
    train_iters, which becomes ceil(epochs x rows per epoch / global_batch_size) at start-up. None =
    use train_iters. Only for data.mode sft and rrtf."""
    global_batch_size: int = 8
    """Sequences per optimizer step over all data-parallel ranks."""
    micro_batch_size: int = 2
    """Sequences per forward pass per rank; accumulation = global / (micro * DP)."""
    lr: float = 3e-4
    """Peak learning rate."""
    min_lr: float = 3e-5
    """Final learning rate after decay."""
    lr_warmup_iters: int = 2
    """Linear warmup steps."""
    lr_warmup_fraction: float | None = None
    """Linear warmup as a fraction of the decay horizon (Megatron-LM's --lr-warmup-fraction, HF's
    warmup_ratio); when set it wins over lr_warmup_iters, so warmup follows train_iters computed
    from train_epochs. None = use lr_warmup_iters."""
    lr_decay_iters: int | None = None
    """Decay horizon; None means train_iters."""
    lr_decay_style: str = "cosine"
    """"cosine", "linear" or "constant"."""
    weight_decay: float = 0.1
    """Decoupled weight decay (AdamW)."""
    adam_beta1: float = 0.9
    """Adam beta1."""
    adam_beta2: float = 0.95
    """Adam beta2."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    clip_grad: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    precision: str = "fp32"
    """"fp32", "bf16" or "fp16": bf16/fp16 run the model in that dtype through megatron-core's
    Float16Module, with fp32 main weights, gradients and Adam state in the optimizer (CPU too)."""
    initial_loss_scale: float = 2.0**32
    """fp16 only: starting dynamic loss scale (Megatron-LM's default 2**32); it halves after each
    overflowing step (those steps are skipped) and doubles after 1000 clean ones."""
    seed: int = 1234
    """Model init and dropout seed."""


@dataclass(kw_only=True)
class CheckpointConfig:
    """Saving, resuming and fine-tuning."""

    save: str | None = None
    """Directory for checkpoints (iter_XXXXXXX/ plus latest_checkpointed_iteration.txt)."""
    load: str | None = None
    """Directory to resume from; None means ``save`` (automatic resume)."""
    save_interval: int = 0
    """Save every N steps (0 = only at the end and on signal)."""
    keep_last: int = 2
    """Complete checkpoints to keep; older ones are deleted after a newer one is complete."""
    finetune: bool = False
    """Load weights only from ``load``: fresh optimizer, schedule and step counter."""
    exit_signals: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGTERM"])
    """Signals that make the trainer checkpoint at the end of the current step and exit."""
    exit_file: str | None = None
    """If this file appears, checkpoint and exit (works through launchers that eat signals)."""
    exit_at_iter: int = 0
    """Checkpoint and exit after this step (0 = never), e.g. to split a run across job slots."""


@dataclass(kw_only=True)
class LoggingConfig:
    """What gets reported, where."""

    log_interval: int = 1
    """Print a step line every N steps (rank 0 only)."""
    tensorboard_dir: str | None = None
    """TensorBoard event directory; None means <save>/tensorboard when saving."""
    on_nan: str = "stop"
    """Non-finite loss or grad norm: "stop" with a clear message, or "skip" the update."""
    eval_interval: int = 0
    """Run validation every N steps (0 = never)."""
    eval_iters: int = 2
    """Validation batches per evaluation."""
    loss_log: str | None = None
    """Write per-step metrics as jsonl here (rank 0), for tests and golden curves."""
    peak_tflops: float | None = None
    """Per-device peak for MFU in TFLOP/s; None = the dense bf16 peak listed for the GPU's exact name
    (metrics.PEAK_BF16_TFLOPS: H100 SXM 989, H100 PCIe 756, A100 312, ...), else MFU prints n/a."""


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs, grouped by concern."""

    preset: str | None = None
    """Model preset name (see `codetron presets`); applied before the YAML file and flags."""
    recipe: str | None = None
    """Training recipe preset (optimizer/data settings from a paper)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Architecture."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Layout over ranks."""
    data: DataConfig = field(default_factory=DataConfig)
    """Datasets and sampling."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpointing."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Logging."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = ("model", "parallel", "data", "optim", "checkpoint", "logging")

RETIRED_KEYS = {
    "model.embedding_dropout": "megatron-core's GPTModel applies model.hidden_dropout to the embedding output; "
                               "set that instead",
}
"""Keys configs once had, with why they went. Configs saved next to older checkpoints drop them (they
never changed what trained); in a YAML file or on the command line they are an error saying why."""


class _NoValue:
    """What ``--key`` followed by another flag (or nothing) parses to: True for a bool field, an
    error for any other (``--optim.train_iters --optim.lr`` must not become 1 and 1.0)."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated field type, or raise a one-line ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if value is NO_VALUE:
        if tp is bool:
            return True
        raise ConfigError(f"{where}: the flag has no value (only true/false fields may be given without one)")
    if origin is list:
        (item,) = args or (str,)
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp in (int, float) and isinstance(value, bool):
            raise ValueError  # YAML's true/false are ints to Python; as a number they are a typo
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


MODEL_RUN_SETTINGS = ("seq_length", "hidden_dropout", "attention_dropout", "transformer_impl", "recompute",
                      "recompute_num_layers")
"""ModelConfig fields that belong to a training run, not to the model: recipes and flags set them, and a
converted checkpoint's saved config leaves them out (a Hugging Face config's context length and
pretraining dropouts silently replaced a fine-tuning recipe's sequence length and dropout)."""


def architecture(model: ModelConfig) -> dict[str, Any]:
    """The ModelConfig fields that describe the model itself (all but ``MODEL_RUN_SETTINGS``)."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in MODEL_RUN_SETTINGS}


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str,
                    origins: dict[str, str] | None = None) -> TrainConfig:
    """Apply ``{"section.field" or "field": value}``; unknown or ambiguous keys raise ConfigError.
    ``origins``, when given, records ``source`` under each ``section.field`` set."""
    owners: dict[str, list[str]] = {}
    for sec in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, sec)):
            owners.setdefault(f.name, []).append(sec)
    for key, value in overrides.items():
        norm = key.replace("-", "_")
        if norm in ("preset", "recipe"):
            setattr(cfg, norm, value)
            continue
        if "." in norm:
            sec, name = norm.split(".", 1)
            if sec not in SECTIONS:
                raise ConfigError(f"{source}: unknown config section {sec!r} in {key!r} (sections: {', '.join(SECTIONS)})")
        else:
            secs = owners.get(norm) or [k.split(".")[0] for k in RETIRED_KEYS if k.split(".")[1] == norm]
            if not secs:
                raise ConfigError(f"{source}: unknown config key {key!r}")
            if len(secs) > 1:
                raise ConfigError(f"{source}: {key!r} is ambiguous; write one of {', '.join(s + '.' + norm for s in secs)}")
            sec, name = secs[0], norm
        if f"{sec}.{name}" in RETIRED_KEYS:
            raise ConfigError(f"{source}: {key!r} was removed: {RETIRED_KEYS[f'{sec}.{name}']}")
        section = getattr(cfg, sec)
        types = _field_types(type(section))
        if name not in types:
            raise ConfigError(f"{source}: unknown config key {sec}.{name}")
        setattr(section, name, _coerce(value, types[name], f"{source}: {sec}.{name}"))
        if origins is not None:
            origins[f"{sec}.{name}"] = source
    return cfg


def annotated_yaml(cfg: TrainConfig, origins: dict[str, str]) -> str:
    """``cfg.to_yaml()`` with ``# <source>`` after every value: where it came from (preset, recipe,
    YAML file, command line; unmarked = the dataclass default)."""
    out = []
    section = None
    for line in cfg.to_yaml().splitlines():
        indent = len(line) - len(line.lstrip(" "))
        key = line.strip().split(":", 1)[0]
        if indent == 0:
            section = key
        if indent == 0 and key in SECTIONS:
            out.append(line)
            continue
        if ":" not in line or line.lstrip().startswith("-"):  # a list item: its key line is marked
            out.append(line)
            continue
        out.append(f"{line}  # {origins.get(f'{section}.{key}' if indent else key, 'default')}")
    return "\n".join(out) + "\n"


def flatten_yaml(doc: dict[str, Any]) -> dict[str, Any]:
    """``{"model": {"num_layers": 2}, "preset": "x"}`` -> ``{"model.num_layers": 2, "preset": "x"}``."""
    flat: dict[str, Any] = {}
    for key, value in (doc or {}).items():
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                flat[f"{key}.{k}"] = v
        else:
            flat[key] = value
    return flat


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if doc is not None and not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return flatten_yaml(doc or {})


def parse_cli_overrides(tokens: list[str]) -> dict[str, Any]:
    """``["--optim.lr", "1e-4", "--finetune", "--data_path", "a", "b"]`` -> dict (lists take all
    values up to the next flag; a flag with no value is ``NO_VALUE``: true for a bool field, an error
    for any other)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ConfigError(f"command line: expected --key value, got {tok!r}")
        key = tok[2:]
        if "=" in key:
            key, val = key.split("=", 1)
            out[key] = val
            i += 1
            continue
        vals = []
        i += 1
        while i < len(tokens) and not (tokens[i].startswith("--") and not _is_number(tokens[i])):
            vals.append(tokens[i])
            i += 1
        out[key] = NO_VALUE if not vals else (vals[0] if len(vals) == 1 else vals)
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def config_from_dict(doc: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from ``to_dict()`` output (e.g. the YAML saved next to a checkpoint)."""
    cfg = TrainConfig(preset=doc.get("preset"), recipe=doc.get("recipe"))
    values = {k: v for k, v in flatten_yaml(doc).items() if k not in ("preset", "recipe", *RETIRED_KEYS)}
    return apply_overrides(cfg, values, "saved config")
