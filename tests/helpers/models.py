"""Tiny random HF models and byte-level BPE tokenizers: one factory per model family.

A factory seeds torch, builds the family's config from the shape it is given and returns the random
``*ForCausalLM``; the caller saves it (``save``) with or without a tokenizer. Every call site passes
its own numbers, so a test's weights are exactly those it had when it built the model itself (same
seed, same config, nothing drawn from torch's generator in between).

Adding a family: a ``tiny_<family>`` beside the two below (config keywords named as the family's HF
config names them), and a line in ``FACTORIES``.
"""
from __future__ import annotations

from pathlib import Path


def byte_level_bpe(texts, vocab_size: int, specials: list[str]):
    """A small byte-level BPE (GPT-2 / StarCoder style, no prefix space) trained on ``texts``, the
    special tokens first: the tokenizer of the tests' tiny HF models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    return tok


def hf_tokenizer(tok, **special_tokens):
    """``tok`` (a ``tokenizers.Tokenizer``) as transformers' fast tokenizer, e.g.
    ``hf_tokenizer(tok, eos_token="<|endoftext|>", pad_token="<pad>")``."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_tokens)


# --- GPTBigCode (StarCoder, StarCoderBase, OctoCoder, WizardCoder) ------------------------------------

def tiny_gpt_bigcode(vocab: int, *, hidden: int, layers: int, heads: int, positions: int,
                     multi_query: bool = True, eos: int = 0, seed: int = 0, **config):
    """A random ``GPTBigCodeForCausalLM`` (bos = eos = ``eos``); ``config``: any other
    ``GPTBigCodeConfig`` field (``tie_word_embeddings``, ``n_inner``, ``initializer_range``...)."""
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(seed)
    cfg = GPTBigCodeConfig(vocab_size=vocab, n_positions=positions, n_embd=hidden, n_layer=layers, n_head=heads,
                           multi_query=multi_query, bos_token_id=eos, eos_token_id=eos, **config)
    return GPTBigCodeForCausalLM(cfg)


# --- StarCoder2 ----------------------------------------------------------------------------------------

def tiny_starcoder2(vocab: int, *, hidden: int, ffn: int, layers: int, heads: int, kv_heads: int, positions: int,
                    eos: int = 0, seed: int = 0, **config):
    """A random ``Starcoder2ForCausalLM`` (bos = eos = ``eos``; GQA with ``kv_heads`` groups); ``config``:
    any other ``Starcoder2Config`` field (``sliding_window``, ``rope_parameters``, ``tie_word_embeddings``...)."""
    import torch
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    torch.manual_seed(seed)
    cfg = Starcoder2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=positions,
                           bos_token_id=eos, eos_token_id=eos, **config)
    return Starcoder2ForCausalLM(cfg)


def starcoder2_preset_shape(preset: str) -> dict:
    """The ``tiny_starcoder2`` keywords of a codetron model preset (e.g. ``debug-starcoder2``): its hidden
    size, FFN, layers, heads, KV groups, window, tying and RoPE base."""
    from codetron.megatron_ext.presets import get_model_preset

    m = get_model_preset(preset).model
    return dict(hidden=m.hidden_size, ffn=m.ffn, layers=m.num_layers, heads=m.num_attention_heads,
                kv_heads=m.num_query_groups, sliding_window=m.sliding_window, tie_word_embeddings=m.tie_embeddings,
                rope_parameters={"rope_type": "default", "rope_theta": m.rotary_base})


# --- Llama family (CodeLlama, DeepSeek-Coder, Qwen2.5-Coder) --------------------------------------------

def tiny_llama(vocab: int, *, arch: str = "llama", hidden: int, ffn: int, layers: int, heads: int, kv_heads: int,
               positions: int, rope: dict | None = None, theta: float = 1e5, tie: bool = False, eos: int = 0,
               seed: int = 0, **config):
    """A random ``LlamaForCausalLM`` (``arch="llama"``) or ``Qwen2ForCausalLM`` (``"qwen2"``: QKV biases);
    ``rope``: HF's RoPE scaling dict (``{"rope_type": "linear", "factor": 4.0}``...), None for plain RoPE
    with base ``theta``; ``config``: any other field of that config class."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    torch.manual_seed(seed)
    cfg = config_cls(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                     num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=positions,
                     rope_parameters={"rope_theta": theta, **(rope or {"rope_type": "default"})},
                     tie_word_embeddings=tie, bos_token_id=eos, eos_token_id=eos, **config)
    return model_cls(cfg)


FACTORIES = {"gpt_bigcode": tiny_gpt_bigcode, "starcoder2": tiny_starcoder2, "llama": tiny_llama,
             "qwen2": lambda vocab, **kw: tiny_llama(vocab, arch="qwen2", **kw)}
"""HF ``model_type`` -> its factory."""


# --- saving ---------------------------------------------------------------------------------------------

def perturb(model, norm_marker: str):
    """Shift the layer norms (names containing ``norm_marker``) and biases off their init values, so a
    conversion that drops or swaps one of them is caught. Draws from torch's generator: call it right
    after the factory for reproducible weights."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if norm_marker in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def save(model, out: Path, tokenizer=None) -> Path:
    """``model`` (and ``tokenizer``, a transformers tokenizer) saved by transformers itself into ``out``:
    what a hub download looks like."""
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    model.save_pretrained(str(out))
    return Path(out)
