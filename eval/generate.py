"""Sample completions from a Hugging Face model folder (a converted GPTBigCode checkpoint).

Public API: ``generate(problems, GenerationConfig)`` for a task's problems (``GenerationConfig.task``:
prompts, stop words and post-processing of that bigcode-evaluation-harness task; without a task,
HumanEval-schema problems with ``codetron.eval.formats.render``), and ``Generator(model).generate_texts(prompts, keys, cfg, stop)`` for plain
prompts -- the loop other stages (RRTF sampling) call instead of writing their own.

Why our own decoding loop instead of ``model.generate``: ``generate`` draws from one global RNG, so
a sample depends on which other prompts share its batch and on how problems are split over devices
(the reproducibility problem reported against the bigcode harness). Here every (problem, sample)
pair has its own ``torch.Generator`` seeded from ``(seed, task_id, sample index)``: a sample is the
same whatever the batch size, the problem subset or the number of devices/shards. (Batched float
arithmetic with padding can still differ in the last bits from an unbatched run; with sampling this
only matters when a draw lands exactly on a probability boundary.)
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from typing import Sequence

from codetron.errors import CodetronError
from codetron.eval.formats import FORMATS, postprocess, render
from codetron.eval.prompts import STOP_CONTINUE
from codetron.sampling import SamplingParams, cli_flag


@dataclass(kw_only=True, slots=True)
class GenerationConfig:
    """How completions are sampled."""

    model: str
    """Hugging Face model folder (config.json, weights, tokenizer files)."""
    prompt: str | None = None
    """Prompt format, one of eval.prompts.FORMATS the task accepts (``codetron eval formats``); None: the
    task's first, or "continue" (complete the HumanEval prompt) without a task."""
    task: str | None = None
    """Evaluation task (``codetron eval tasks``); None: HumanEval-schema problems, unstripped prompt."""
    n_samples: int = 1
    """Samples per problem (n in pass@k)."""
    temperature: float = 0.0
    """0 decodes greedily; up to 2 samples (0.2 for pass@1, 0.8 for pass@100 in the Codex paper). This
    and the other sampling fields follow ``codetron.sampling.SamplingParams``' rules."""
    top_p: float = 0.95
    """Nucleus sampling: keep the smallest token set with this much probability (sampling only)."""
    max_new_tokens: int = 512
    """Tokens generated at most per sample."""
    batch_size: int = 8
    """Sequences decoded together."""
    seed: int = 0
    """Base seed; each (problem, sample) derives its own from it."""
    stop: tuple[str, ...] | None = None
    """Stop sequences; None uses the prompt format's."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1" or "auto" (cuda when available)."""
    dtype: str = "auto"
    """"float32", "bfloat16", "float16" or "auto" (bf16 on GPU, fp32 on CPU)."""
    backend: str = "transformers"
    """"transformers" (this module's loop) or "vllm" (when installed)."""


def sample_seed(seed: int, task_id: str, index: int) -> int:
    """The seed of one (problem, sample): a stable hash, independent of batch and device layout."""
    digest = hashlib.sha256(f"{seed}\x00{task_id}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


DEFAULT_FORMAT = "continue"
"""The prompt format of task-less (HumanEval-schema) generation when ``GenerationConfig.prompt`` is None."""


def sampling_params(cfg: GenerationConfig) -> SamplingParams:
    """The sampling fields of ``cfg`` as the one SamplingParams, validated (its rules, one-line errors
    naming this stage's flags: ``n`` is ``--n-samples`` here)."""
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            n=cfg.n_samples, seed=cfg.seed, stop=tuple(cfg.stop or ()))
    return params.validate(name=lambda field: "--n-samples" if field == "n" else cli_flag(field))


def _validate(cfg: GenerationConfig) -> None:
    if cfg.task is not None:
        from codetron.eval.tasks import get_task

        get_task(cfg.task).check_format(cfg.prompt)
    elif (cfg.prompt or DEFAULT_FORMAT) not in FORMATS:
        raise CodetronError(f"--prompt {cfg.prompt!r}: choose from {', '.join(FORMATS)}")
    sampling_params(cfg)
    if cfg.batch_size < 1:
        raise CodetronError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.backend not in ("transformers", "vllm"):
        raise CodetronError(f"--backend {cfg.backend!r}: choose transformers or vllm")


def generate(problems: list[dict], cfg: GenerationConfig, progress: bool = True) -> tuple[list[list[str]], list[list[str]]]:
    """Return ``(codes, raw_outputs)``, each a list per problem of ``n_samples`` strings."""
    _validate(cfg)
    if cfg.task is not None:
        return _generate_task(problems, cfg, progress)
    fmt = cfg.prompt or DEFAULT_FORMAT
    stop = tuple(cfg.stop) if cfg.stop is not None else FORMATS[fmt].stop or tuple(STOP_CONTINUE)
    rendered = [render(p, fmt) for p in problems]
    generator = Generator(cfg.model, backend=cfg.backend, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)
    raw = generator.generate_texts([r[0] for r in rendered], [p["task_id"] for p in problems], cfg, stop, progress)
    codes = [[postprocess(p, fmt, prefix, out) for out in outs]
             for p, (_, prefix), outs in zip(problems, rendered, raw)]
    return codes, raw


def _generate_task(problems: list[dict], cfg: GenerationConfig, progress: bool):
    from codetron.eval.tasks import get_task

    task = get_task(cfg.task)
    fmt = task.check_format(cfg.prompt)
    if not problems:
        return [], []
    # one stop list for the batch: a task's stop words do not vary per problem (MultiPL-E takes the
    # first problem's, as the harness does)
    stop = tuple(cfg.stop) if cfg.stop is not None else tuple(task.stop(fmt, problems[0]))
    prompts = [task.prompt(p, fmt) for p in problems]
    generator = Generator(cfg.model, backend=cfg.backend, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)
    raw = generator.generate_texts(prompts, [p["task_id"] for p in problems], cfg, stop, progress)
    codes = [[task.postprocess(p, fmt, out) for out in outs] for p, outs in zip(problems, raw)]
    return codes, raw


class Generator:
    """A model folder loaded once, sampling completions of plain-text prompts.

    The public decoding API for every stage that samples from a Hugging Face folder (eval's
    ``generate``, RRTF student sampling): the model loads once and serves many calls (several
    temperatures, several stop-sequence groups) without reloading.
    """

    def __init__(self, model: str, *, backend: str = "transformers", device: str = "auto", dtype: str = "auto",
                 seed: int = 0):
        if backend not in ("transformers", "vllm"):
            raise CodetronError(f"--backend {backend!r}: choose transformers or vllm")
        self.backend = backend
        if backend == "vllm":
            self.llm = _load_vllm(model, dtype, seed)
            return
        self.model, self.tokenizer, self.device = load_model(model, device, dtype)
        tok, mcfg = self.tokenizer, self.model.config
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else mcfg.eos_token_id
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else (self.eos if self.eos is not None else 0)
        self.max_positions = getattr(mcfg, "n_positions", None) or getattr(mcfg, "max_position_embeddings", None)

    def generate_texts(self, prompts: list[str], keys: list[str], cfg: GenerationConfig, stop: Sequence[str] = (),
                       progress: bool = False) -> list[list[str]]:
        """``cfg.n_samples`` raw outputs per prompt. Decoding a sample ends at EOS or once a ``stop``
        sequence appears in it (the transformers loop keeps that text; callers truncate).

        Sample ``j`` of prompt ``i`` draws from its own seed ``sample_seed(cfg.seed, keys[i], j)``, so it
        is the same whatever the batch, the other prompts or the shard. Only the sampling fields of
        ``cfg`` are read (n_samples, temperature, top_p, max_new_tokens, batch_size, seed)."""
        if len(prompts) != len(keys):
            raise ValueError(f"{len(prompts)} prompts but {len(keys)} keys")
        if self.backend == "vllm":
            return _generate_vllm(self.llm, prompts, keys, cfg, tuple(stop))
        return self._generate_transformers(prompts, keys, cfg, tuple(stop), progress)

    def _encode(self, prompts: list[str], keys: list[str], max_new_tokens: int) -> list[list[int]]:
        encoded = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in prompts]
        if not self.max_positions:
            return encoded
        budget = self.max_positions - max_new_tokens
        if budget < 1:
            raise CodetronError(f"--max-new-tokens {max_new_tokens} leaves no room for the prompt "
                                f"(model context {self.max_positions})")
        for i, ids in enumerate(encoded):
            if len(ids) > budget:
                print(f"codetron: warning: {keys[i]}: prompt of {len(ids)} tokens cut to its last {budget} "
                      f"to fit the context", file=sys.stderr)
                encoded[i] = ids[-budget:]
        return encoded

    def _generate_transformers(self, prompts, keys, cfg: GenerationConfig, stop, progress: bool) -> list[list[str]]:
        import torch
        from tqdm import tqdm

        encoded = self._encode(prompts, keys, cfg.max_new_tokens)
        greedy = cfg.temperature == 0
        # greedy samples are identical: decode once per prompt and repeat
        n_decode = 1 if greedy else cfg.n_samples
        jobs = [(i, j) for i in range(len(prompts)) for j in range(n_decode)]
        raw: list[list[str]] = [[""] * n_decode for _ in prompts]
        bar = tqdm(total=len(jobs), desc="generating", unit="sample", disable=not progress)
        with torch.inference_mode():
            for start in range(0, len(jobs), cfg.batch_size):
                batch = jobs[start:start + cfg.batch_size]
                outs = _decode_batch(self.model, self.tokenizer, [encoded[i] for i, _ in batch],
                                     [sample_seed(cfg.seed, keys[i], j) for i, j in batch],
                                     cfg, stop, self.eos, self.pad, self.device)
                for (i, j), text in zip(batch, outs):
                    raw[i][j] = text
                bar.update(len(batch))
        bar.close()
        return [r * cfg.n_samples for r in raw] if greedy else raw


# ----------------------------------------------------------------------------------- transformers


def load_model(path: str, device: str = "auto", dtype: str = "auto"):
    """Load model and tokenizer from a local folder (never from the hub)."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "config.json")):
        raise CodetronError(f"{path}: not a Hugging Face model folder (no config.json)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodetronError(f"--device {device}: CUDA is not available on this machine")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise CodetronError(f"--dtype {dtype!r}: choose float32, bfloat16 or float16")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise CodetronError(f"{path}: cannot load model/tokenizer: {str(exc).splitlines()[0]}") from None
    model.to(device).eval()
    return model, tokenizer, device


def _sample_next(logits, generators, temperature: float, top_p: float):
    """One token per row; row r draws only from ``generators[r]``."""
    import torch

    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    out = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    for r, gen in enumerate(generators):
        row = probs[r].to("cpu") if gen.device.type == "cpu" else probs[r]
        out[r] = torch.multinomial(row, 1, generator=gen).to(out.device)
    return out


def _decode_batch(model, tokenizer, prompts: list[list[int]], seeds: list[int], cfg: GenerationConfig,
                  stop, eos, pad, device) -> list[str]:
    """Left-padded incremental decoding with a KV cache; stops per row at EOS or a stop sequence."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    gen_device = "cpu"
    generators = [torch.Generator(device=gen_device).manual_seed(s) for s in seeds]
    generated: list[list[int]] = [[] for _ in prompts]
    texts = [""] * len(prompts)
    done = [False] * len(prompts)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    for _ in range(cfg.max_new_tokens):
        logits = out.logits[:, -1, :]
        nxt = _sample_next(logits, generators, cfg.temperature, cfg.top_p)
        for r in range(len(prompts)):
            if done[r]:
                continue
            token = int(nxt[r])
            if eos is not None and token == eos:
                done[r] = True
                continue
            generated[r].append(token)
            texts[r] = tokenizer.decode(generated[r], skip_special_tokens=False)
            if stop and any(s in texts[r] for s in stop):
                done[r] = True
        if all(done):
            break
        nxt = torch.where(torch.tensor(done, device=nxt.device), torch.full_like(nxt, pad), nxt)
        mask = torch.cat([mask, torch.ones((len(prompts), 1), dtype=mask.dtype, device=mask.device)], dim=1)
        positions = (mask.sum(-1, keepdim=True) - 1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                    past_key_values=out.past_key_values, use_cache=True)
    return texts


# ------------------------------------------------------------------------------------------- vLLM


def _load_vllm(model: str, dtype: str, seed: int):
    try:
        from vllm import LLM
    except ImportError:
        raise CodetronError("--backend vllm: vllm is not installed here (pip install vllm on a GPU "
                            "machine), or use --backend transformers") from None
    return LLM(model=model, seed=seed, dtype=dtype if dtype != "auto" else "auto")


def _generate_vllm(llm, prompts: list[str], keys: list[str], cfg: GenerationConfig, stop) -> list[list[str]]:
    from vllm import SamplingParams as VllmSamplingParams

    requests, params, index = [], [], []
    for i, (key, text) in enumerate(zip(keys, prompts)):
        for j in range(cfg.n_samples):
            requests.append(text)
            # per-request seeds keep samples independent of vLLM's batching and tensor parallelism
            params.append(VllmSamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p if cfg.temperature else 1.0,
                                         max_tokens=cfg.max_new_tokens, stop=list(stop),
                                         seed=sample_seed(cfg.seed, key, j)))
            index.append((i, j))
    outputs = llm.generate(requests, params)
    raw = [[""] * cfg.n_samples for _ in prompts]
    for (i, j), out in zip(index, outputs):
        raw[i][j] = out.outputs[0].text
    return raw
