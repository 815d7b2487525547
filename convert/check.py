"""``codetron convert check CKPT HF_DIR``: load both sides and compare them numerically.

The megatron side is the real megatron-core ``GPTModel`` built from the run's saved config and loaded
with ``codetron.megatron_ext.checkpointing.load`` in one process (dist checkpoints reshard on load, so a
TP2xPP2 checkpoint loads as TP1xPP1 with identical weights); the HF side is plain
``AutoModelForCausalLM.from_pretrained``. Both run in fp32 on the same random tokens; the check
reports the largest logit difference and whether greedy decoding agrees token for token (megatron
by full re-forward each step, HF by ``generate`` with its KV cache).

Weights stored narrower than fp32 (``to-hf --dtype bf16``): the megatron reference is rounded to the
same dtype before comparing. Rounding is what such a conversion is asked to do, and its effect is not
small: bf16 keeps 8 significand bits (unit roundoff 2**-8 = 0.4% per weight), which moved the logits of
a tiny test model by 0.12 and flipped greedy tokens at near-ties -- no tolerance wide enough for that
would still catch a mapping mistake of the same size (e.g. truncating instead of rounding to bf16).
With both sides holding the same bf16-representable weights and computing in fp32, only fp32
arithmetic differs, so ``atol`` keeps its fp32 meaning for every storage dtype; how far the rounding
itself moved the logits is reported alongside (``rounding_diff``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.safetensors_io import SafetensorsFolder
from codetron.convert.to_hf import HF_DTYPE_NAMES
from codetron.errors import CodetronError


@dataclass
class CheckResult:
    max_abs_diff: float
    """Largest |logit_megatron - logit_hf| over all positions and (unpadded) vocab entries."""
    logit_scale: float
    """Largest |logit| seen, for context."""
    argmax_agreement: float
    """Fraction of positions whose argmax token agrees."""
    greedy_megatron: list[int]
    """Greedily generated ids (megatron-core)."""
    greedy_hf: list[int]
    """Greedily generated ids (transformers generate)."""
    atol: float
    """Tolerance the check was run with."""
    reference_dtype: str = "float32"
    """Dtype the megatron weights were rounded to before comparing: the HF folder's storage dtype."""
    rounding_diff: float | None = None
    """Largest logit change that rounding the megatron weights to ``reference_dtype`` caused (None: fp32)."""

    @property
    def greedy_equal(self) -> bool:
        return self.greedy_megatron == self.greedy_hf

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol and self.greedy_equal

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "logit_scale": self.logit_scale,
                "argmax_agreement": self.argmax_agreement, "greedy_equal": self.greedy_equal,
                "greedy_megatron": self.greedy_megatron, "greedy_hf": self.greedy_hf, "atol": self.atol,
                "reference_dtype": self.reference_dtype, "rounding_diff": self.rounding_diff, "ok": self.ok}


class MegatronLM:
    """A converted-from checkpoint as a single-process megatron-core model (fp32, CPU or one GPU)."""

    def __init__(self, ckpt: str | Path, seed: int = 0):
        from codetron.megatron_ext import checkpointing
        from codetron.megatron_ext.config import OptimConfig, ParallelConfig
        from codetron.megatron_ext.model import build_model
        from codetron.megatron_ext.parallel import init_distributed
        from codetron.convert.to_hf import load_run_config

        self.ckpt_dir = checkpointing.resolve_checkpoint_dir(ckpt)
        run = load_run_config(self.ckpt_dir)
        self.model_cfg = run.model
        self.vocab = run.model.vocab_size
        parallel = ParallelConfig()
        init_distributed(parallel, seed)
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        # dropout off: the comparison is of the deterministic forward
        self.model_cfg.hidden_dropout = self.model_cfg.attention_dropout = 0.0
        self.model_cfg.transformer_impl = "local"
        self.model = build_model(self.model_cfg, parallel, self.vocab, OptimConfig(precision="fp32"))
        self.model.to(self.device)
        checkpointing.load(self.ckpt_dir, [self.model])
        self.model.eval()

    @torch.no_grad()
    def round_weights(self, dtype: torch.dtype) -> None:
        """Round every weight to ``dtype`` (round to nearest even, as ``to-hf`` casts) and keep
        computing in fp32."""
        for p in self.model.parameters():
            p.copy_(p.to(dtype).to(p.dtype))

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        pos = torch.arange(tokens.shape[1], device=self.device).unsqueeze(0).expand_as(tokens)
        out = self.model(tokens, pos, None)
        return out[..., : self.vocab].float().cpu()  # padded vocab rows are not real tokens

    @torch.no_grad()
    def greedy(self, prompt: torch.Tensor, new_tokens: int, eos: int | list[int] | None) -> list[int]:
        stop = {eos} if isinstance(eos, int) else set(eos or ())
        seq = prompt.clone()
        out: list[int] = []
        for _ in range(new_tokens):
            nxt = int(self.logits(seq)[0, -1].argmax())
            out.append(nxt)
            if nxt in stop:
                break
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
        return out


def check(ckpt: str | Path, hf_dir: str | Path, batch: int = 2, seq_len: int | None = None,
          new_tokens: int = 16, atol: float = 1e-4, seed: int = 0) -> CheckResult:
    from transformers import AutoModelForCausalLM, GenerationConfig

    from codetron.convert.hf_config import read_hf_config
    from codetron.megatron_ext.checkpointing import resolve_checkpoint_dir

    hf_dir = Path(hf_dir)
    read_hf_config(hf_dir)  # one-line errors for a missing or non-GPTBigCode config
    # one-line errors for missing or truncated shard files, before megatron's loader meets them
    CheckpointReader(resolve_checkpoint_dir(ckpt))
    stored = storage_dtype(hf_dir)
    meg = MegatronLM(ckpt, seed)
    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    if hf.config.vocab_size != meg.vocab:
        raise CodetronError(f"{hf_dir}/config.json: vocab_size {hf.config.vocab_size} but the checkpoint's "
                            f"model.vocab_size is {meg.vocab}")
    seq_len = min(seq_len or meg.model_cfg.seq_length, meg.model_cfg.positions)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, meg.vocab, (batch, seq_len), generator=gen)
    a = meg.logits(tokens)
    rounding_diff = None
    if stored is not None:
        meg.round_weights(stored)
        full, a = a, meg.logits(tokens)
        rounding_diff = float((full - a).abs().max())
    with torch.no_grad():
        b = hf(tokens).logits.float()
    diff = float((a - b).abs().max())
    agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())

    prompt = tokens[:1, : max(1, min(8, seq_len - new_tokens))]
    eos = hf.generation_config.eos_token_id
    first_eos = eos[0] if isinstance(eos, list) and eos else eos
    # greedy decoding of the weights alone: the folder's own sampling defaults (a carried
    # generation_config.json with repetition_penalty, top_p, ...) would apply on the HF side only
    hf.generation_config = GenerationConfig(eos_token_id=eos)
    greedy_meg = meg.greedy(prompt, new_tokens, eos)
    with torch.no_grad():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=new_tokens, pad_token_id=first_eos if first_eos is not None else 0)
    greedy_hf = out[0, prompt.shape[1]:].tolist()
    return CheckResult(diff, float(a.abs().max()), agree, greedy_meg, greedy_hf, atol,
                       HF_DTYPE_NAMES.get(stored, "float32"), rounding_diff)


def storage_dtype(hf_dir: Path) -> torch.dtype | None:
    """The one floating dtype narrower than fp32 that all HF weights are stored in, else None
    (mixed dtypes are compared against the unrounded weights)."""
    dtypes = {e.dtype for e in SafetensorsFolder(hf_dir).entries.values() if e.dtype.is_floating_point}
    return next(iter(dtypes)) if len(dtypes) == 1 and dtypes <= {torch.bfloat16, torch.float16} else None
