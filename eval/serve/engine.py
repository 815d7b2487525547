"""The transformers engine: sampling parameters, per-choice seeds, the alpaca chat fallback, stop
sequences, and dynamic batching of waiting requests into one left-padded KV-cached decode."""
from __future__ import annotations

import collections
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codetron.errors import CodetronError
from codetron.sampling import SamplingParams  # noqa: F401  (re-exported: the engine's request type)
from codetron.templates import ALPACA_PREAMBLE, ALPACA_STOP
from codetron.eval.serve.config import RequestError

@dataclass(slots=True)
class Choice:
    text: str
    """Generated text, cut at the first stop sequence."""
    finish_reason: str
    """"stop" (EOS or a stop sequence) or "length" (max_tokens reached)."""
    tokens: int
    """Tokens generated."""


DeltaFn = Callable[[int, str, "str | None"], None]
"""Streaming callback: (choice index, new text, finish reason or None while the choice runs)."""


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of a request seeded with ``seed`` (a stable hash)."""
    digest = hashlib.sha256(f"{seed}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def alpaca_chat_prompt(messages: list[dict]) -> str:
    """The documented fallback chat template (see the module docstring)."""
    system = ALPACA_PREAMBLE
    parts: list[str] = []
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "system":
            system = content
        elif role == "user":
            parts.append(f"### Instruction:\n{content}\n\n### Response:")
        else:  # assistant
            parts.append(f"{content}\n\n")
    return system + "\n\n" + "".join(parts)


ALPACA_JINJA = (
    "{%- set ns = namespace(system=" + json.dumps(ALPACA_PREAMBLE) + ") -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- endfor -%}"
    "{{ ns.system }}{{ '\\n\\n' }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ '### Instruction:\\n' + m['content'] + '\\n\\n### Response:' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ m['content'] + '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)
"""``alpaca_chat_prompt`` as a Jinja chat template, for servers that only take templates (vLLM)."""


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` cut at the earliest stop sequence, and whether one was found."""
    cut = -1
    for s in stop:
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    return (text, False) if cut == -1 else (text[:cut], True)


NORMALIZER_SLACK = 4
"""Unicode composition (a tokenizer's NFC/NFKC normalizer) joins at most 4 code points into one
character (the longest canonical decomposition), so normalized text keeps at least a quarter of them."""
DROPPING = frozenset({"Strip", "StripAccents", "BertNormalizer", "Precompiled", "Whitespace", "WhitespaceSplit",
                      "BertPreTokenizer", "CharDelimiterSplit"})
"""Normalizers and pre-tokenizers (as ``tokenizers`` serializes them) that may delete characters."""


def _may_drop_text(node) -> bool:
    """Whether a serialized normalizer or pre-tokenizer (or a sequence of them) may delete characters."""
    if isinstance(node, list):
        return any(map(_may_drop_text, node))
    if not isinstance(node, dict):
        return False
    if node.get("type") in DROPPING or node.get("behavior") == "Removed":
        return True
    if node.get("type") == "Replace":  # a literal replaced by one no shorter keeps every character
        literal = (node.get("pattern") or {}).get("String")
        return literal is None or len(node.get("content", "")) < len(literal)
    return any(_may_drop_text(v) for v in node.values())


def token_char_bound(tokenizer) -> int | None:
    """The most characters of a prompt that one token can stand for, or None where no such bound holds.

    Every token of a BPE vocabulary is a string of at most L characters, each one character of the
    (normalized) text or, in a byte-level vocabulary, one byte of its UTF-8 (a character is at least
    one byte): a prompt of N characters has at least N / L tokens. That fails where text can vanish
    or be swallowed: an unknown-token covering a run of characters (BPE with ``fuse_unk`` and no byte
    fallback; WordPiece, WordLevel and Unigram models), a normalizer or pre-tokenizer that deletes
    characters (``DROPPING``), an added token that strips the whitespace around it. Those tokenizers,
    and slow (Python) ones, get only the exact count."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    fused_unknowns = model.get("unk_token") and model.get("fuse_unk") and not model.get("byte_fallback")
    if model.get("type") != "BPE" or fused_unknowns:
        return None
    if any(t.get("lstrip") or t.get("rstrip") for t in spec.get("added_tokens") or []) \
            or _may_drop_text(spec.get("normalizer")) or _may_drop_text(spec.get("pre_tokenizer")):
        return None
    longest = max(map(len, tokenizer.get_vocab()), default=1)
    return longest * (NORMALIZER_SLACK if spec.get("normalizer") else 1)


class Pending:
    """One request between submission and its last choice; completed by the batch worker."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, seeds: list[int], on_delta: DeltaFn | None):
        self.prompt_ids, self.params, self.seeds, self.on_delta = prompt_ids, params, seeds, on_delta
        self.choices: list[Choice | None] = [None] * len(seeds)
        self.left = len(seeds)
        self.error: BaseException | None = None
        self.event = threading.Event()

    def finish(self, index: int, choice: Choice) -> None:
        self.choices[index] = choice
        self.left -= 1
        if self.left == 0:
            self.event.set()

    def fail(self, exc: BaseException) -> None:
        if not self.event.is_set():
            self.error = exc
            self.event.set()

    def wait(self) -> list[Choice]:
        self.event.wait()
        if self.error is not None:
            raise self.error
        return list(self.choices)  # type: ignore[arg-type]


class _Row:
    """One choice being decoded inside a batch."""

    __slots__ = ("req", "index", "gen", "generated", "text", "sent", "hold")

    def __init__(self, req: Pending, index: int, gen):
        self.req, self.index, self.gen = req, index, gen
        self.generated: list[int] = []
        self.text = ""
        self.sent = 0  # characters already streamed
        # a stop sequence may be split over tokens: hold back as much text as could be its start
        self.hold = max((len(s) for s in req.params.stop), default=1) - 1


class Engine:
    """A loaded model + tokenizer that turns prompts into choices; thread-safe.

    ``generate``/``submit`` from any number of threads: one worker thread decodes whatever is waiting
    as one batch of up to ``max_batch`` rows (see the module docstring)."""

    def __init__(self, model_dir: str, device: str = "auto", dtype: str = "auto", chat_template: str = "auto",
                 max_batch: int = 32):
        import inspect

        from codetron.eval.generate import load_model

        if max_batch < 1:
            raise CodetronError(f"--max-batch must be >= 1, got {max_batch}")
        self.model, self.tokenizer, self.device = load_model(model_dir, device, dtype)
        self.max_batch = max_batch
        cfg = self.model.config
        self.context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        tok = self.tokenizer
        self.eos = tok.eos_token_id if tok.eos_token_id is not None else cfg.eos_token_id
        self.pad = next((t for t in (tok.pad_token_id, self.eos) if t is not None), 0)
        self.chars_per_token = token_char_bound(tok)
        """The most prompt characters one token stands for (None: unknown); see ``encode``."""
        # transformers 5 renamed past_key_values to cache (4.x knows only the old name)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._template: str | None = None  # Jinja text, or None for the alpaca fallback
        if chat_template == "auto":
            self._template = getattr(tok, "chat_template", None) or None
        elif chat_template != "alpaca":
            path = Path(chat_template)
            if not path.is_file():
                raise CodetronError(f"--chat-template {chat_template}: not 'auto', 'alpaca' or a template file")
            self._template = path.read_text(encoding="utf-8")
        self._waiting: collections.deque[Pending] = collections.deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []
        """Rows of every batch decoded so far (for tests and benchmarks; capped at 10,000 entries)."""

    @property
    def template_name(self) -> str:
        return "alpaca" if self._template is None else "jinja"

    def chat_prompt(self, messages: list[dict]) -> tuple[str, list[str]]:
        """(prompt text, implicit stop sequences) for a chat."""
        if self._template is None:
            return alpaca_chat_prompt(messages), [ALPACA_STOP]
        try:
            text = self.tokenizer.apply_chat_template(messages, chat_template=self._template, tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as exc:  # a Jinja error is the request's (or template's) fault, not a crash
            raise RequestError(f"chat template failed: {str(exc).splitlines()[0]}", "messages") from None
        return text, []

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Token ids of ``text``. With ``max_tokens``, a prompt whose character count alone proves it
        cannot fit the context with them is refused before tokenizing: tokenizers are slow on huge
        inputs (a 6 MB prompt took 31-51 s to be refused after tokenizing); the exact token count is
        checked when the request is submitted."""
        if max_tokens is not None and self.context and self.chars_per_token:
            room = max(self.context - max_tokens, 0)
            if len(text) > room * self.chars_per_token:
                least = -(-len(text) // self.chars_per_token)
                raise RequestError(
                    f"this model's maximum context length is {self.context} tokens; the prompt has "
                    f"{len(text)} characters (at least {least} tokens) and max_tokens is {max_tokens}", "max_tokens")
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def submit(self, prompt_ids: list[int], params: SamplingParams, on_delta: DeltaFn | None = None) -> Pending:
        """Queue one request (validated here, in the caller's thread); ``.wait()`` returns its choices.
        ``on_delta`` is called from the worker thread as text becomes final (streaming)."""
        return self.submit_many([(prompt_ids, params, on_delta)])[0]

    def submit_many(self, requests: list[tuple]) -> list[Pending]:
        """Queue ``(prompt_ids, params[, on_delta])`` requests together: all are validated before any
        is queued, and they sit next to each other in the queue (so they share a batch if they fit)."""
        pendings = []
        for prompt_ids, params, *rest in requests:
            if not prompt_ids:
                raise RequestError("prompt is empty (no tokens)", "prompt")
            if self.context and len(prompt_ids) + params.max_new_tokens > self.context:
                raise RequestError(
                    f"this model's maximum context length is {self.context} tokens; the prompt has "
                    f"{len(prompt_ids)} and max_tokens is {params.max_new_tokens}", "max_tokens")
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            pendings.append(Pending(prompt_ids, params, [choice_seed(seed, i) for i in range(params.n)],
                                     rest[0] if rest else None))
        with self._cond:
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="codetron-serve-batcher", daemon=True)
                self._worker.start()
            self._waiting.extend(pendings)
            self._cond.notify()
        return pendings

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> list[Choice]:
        """``params.n`` choices continuing ``prompt_ids`` (blocks; batched with concurrent callers)."""
        return self.submit(prompt_ids, params).wait()

    # -- the batch worker
    def _next_batch(self) -> list[Pending]:
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            batch = [self._waiting.popleft()]
            rows = batch[0].params.n
            # first come, first served: stop at the first request that does not fit
            while self._waiting and rows + self._waiting[0].params.n <= self.max_batch:
                rows += self._waiting[0].params.n
                batch.append(self._waiting.popleft())
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._decode(batch)
            except BaseException as exc:  # an out-of-memory or a bug: fail these requests, keep serving
                for p in batch:
                    p.fail(exc)

    def _decode(self, batch: list[Pending]) -> None:
        """Incremental decoding of every choice of ``batch`` with one KV cache, left-padded prompts."""
        import torch

        rows = [_Row(p, i, torch.Generator(device="cpu").manual_seed(s)) for p in batch for i, s in enumerate(p.seeds)]
        if len(self.batches) < 10_000:
            self.batches.append(len(rows))
        lens = [len(r.req.prompt_ids) for r in rows]
        width = max(lens)
        ids = torch.tensor([[self.pad] * (width - n) + r.req.prompt_ids for r, n in zip(rows, lens)], dtype=torch.long)
        extra: dict = {}
        if min(lens) != width:
            # padding on the left keeps every row's next token at the same (last) column
            mask = (torch.arange(width)[None, :] >= torch.tensor([width - n for n in lens])[:, None]).long()
            extra = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), use_cache=True,
                             **{k: v.to(self.device) for k, v in extra.items()})
            active = list(range(len(rows)))  # rows still decoding, as positions in the model's batch
            while True:
                logits = out.logits[:, -1, :]
                tokens = [self._sample(logits[j], rows[r].req.params, rows[r].gen) for j, r in enumerate(active)]
                keep = [j for j, (r, t) in enumerate(zip(active, tokens)) if not self._step(rows[r], t)]
                if not keep:
                    return
                cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                if len(keep) < len(active) and hasattr(cache, "batch_select_indices"):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    extra = {k: v[index.cpu()] for k, v in extra.items()}
                    active, tokens = [active[j] for j in keep], [tokens[j] for j in keep]
                if extra:
                    mask = extra["attention_mask"]
                    extra = {"attention_mask": torch.cat([mask, mask.new_ones(len(active), 1)], dim=1),
                             "position_ids": extra["position_ids"][:, -1:] + 1}
                nxt = torch.tensor(tokens, dtype=torch.long)[:, None]
                out = self.model(input_ids=nxt.to(self.device), use_cache=True, **{self._cache_kw: cache},
                                 **{k: v.to(self.device) for k, v in extra.items()})

    def _step(self, row: _Row, token: int) -> bool:
        """Add ``token`` to ``row``; True when the row is finished (its choice is then delivered).
        A finished row that stays in the batch (old caches cannot drop rows) gets here no more."""
        params = row.req.params
        if row.req.choices[row.index] is not None:
            return True
        reason = None
        if self.eos is not None and token == self.eos:
            reason = "stop"
        else:
            row.generated.append(token)
            row.text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
            if params.stop and truncate_at_stop(row.text, params.stop)[1]:
                reason = "stop"
            elif len(row.generated) >= params.max_new_tokens:
                reason = "length"
        text = truncate_at_stop(row.text, params.stop)[0]
        if row.req.on_delta is not None:
            # streamed text is final: never a possible stop-sequence start or half a UTF-8 character
            end = len(text) if reason else len(text.rstrip("\ufffd")) - row.hold
            if end > row.sent or reason:
                row.req.on_delta(row.index, text[row.sent:max(end, row.sent)], reason)
                row.sent = max(end, row.sent)
        if reason:
            row.req.finish(row.index, Choice(text, reason, len(row.generated)))
        return reason is not None

    @staticmethod
    def _sample(logits, params: SamplingParams, gen) -> int:
        """One token for one row; the row draws only from its own generator ``gen``."""
        import torch

        if params.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # drop a token once the mass before it reaches top_p (the most likely token always stays)
            drop = (sorted_p.cumsum(-1) - sorted_p) >= params.top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
        return int(torch.multinomial(probs, 1, generator=gen)[0])
