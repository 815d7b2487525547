"""``codetron convert check CKPT HF_DIR``: load both sides and compare them numerically.

The megatron side is the real megatron-core ``GPTModel`` built from the run's saved config and loaded
with ``codetron.megatron_ext.checkpointing.load`` in one process (dist checkpoints reshard on load, so a
TP2xPP2 checkpoint loads as TP1xPP1 with identical weights); the HF side is plain
``AutoModelForCausalLM.from_pretrained``. Both run in fp32 on the same random tokens; the check
reports the largest logit difference and whether greedy decoding agrees token for token (megatron
by full re-forward each step, HF by ``generate`` with its KV cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

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
                "ok": self.ok}


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
    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        pos = torch.arange(tokens.shape[1], device=self.device).unsqueeze(0).expand_as(tokens)
        out = self.model(tokens, pos, None)
        return out[..., : self.vocab].float().cpu()  # padded vocab rows are not real tokens

    @torch.no_grad()
    def greedy(self, prompt: torch.Tensor, new_tokens: int, eos: int | None) -> list[int]:
        seq = prompt.clone()
        out: list[int] = []
        for _ in range(new_tokens):
            nxt = int(self.logits(seq)[0, -1].argmax())
            out.append(nxt)
            if eos is not None and nxt == eos:
                break
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
        return out


def check(ckpt: str | Path, hf_dir: str | Path, batch: int = 2, seq_len: int | None = None,
          new_tokens: int = 16, atol: float = 1e-4, seed: int = 0) -> CheckResult:
    from transformers import AutoModelForCausalLM

    from codetron.convert.hf_config import read_hf_config

    hf_dir = Path(hf_dir)
    read_hf_config(hf_dir)  # one-line errors for a missing or non-GPTBigCode config
    meg = MegatronLM(ckpt, seed)
    hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    if hf.config.vocab_size != meg.vocab:
        raise CodetronError(f"{hf_dir}/config.json: vocab_size {hf.config.vocab_size} but the checkpoint's "
                            f"model.vocab_size is {meg.vocab}")
    seq_len = min(seq_len or meg.model_cfg.seq_length, meg.model_cfg.positions)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, meg.vocab, (batch, seq_len), generator=gen)
    a = meg.logits(tokens)
    with torch.no_grad():
        b = hf(tokens).logits.float()
    diff = float((a - b).abs().max())
    agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())

    prompt = tokens[:1, : max(1, min(8, seq_len - new_tokens))]
    eos = hf.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    greedy_meg = meg.greedy(prompt, new_tokens, eos)
    with torch.no_grad():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=new_tokens, pad_token_id=eos if eos is not None else 0)
    greedy_hf = out[0, prompt.shape[1]:].tolist()
    return CheckResult(diff, float(a.abs().max()), agree, greedy_meg, greedy_hf, atol)
