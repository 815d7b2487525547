"""The tiktoken encode path gives exactly the ids of ``tokenizers``, or is not used (and says why)."""
from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from codetron.errors import ConfigError
from codetron.preprocess import fastbpe
from codetron.preprocess.pipeline import run
from codetron.preprocess.tokenizer import EOD_TOKEN, SPECIAL_TOKENS, default_tokenizer_path, load_tokenizer

from tests.preprocess.conftest import make_cfg, write_jsonl

pytest.importorskip("tiktoken", reason="tiktoken is an install requirement; this environment lacks it")

LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def stdlib_code(n_files: int, max_chars: int = 60_000) -> list[str]:
    """Real code the probe set never saw: the first files of this Python's standard library."""
    out = []
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 0 < len(text) <= max_chars:
            out.append(text)
        if len(out) == n_files:
            break
    return out


def fuzz_texts(specials: list[str], n: int = 300, seed: int = 0) -> list[str]:
    """Random runs of the atoms where byte-level emulations go wrong: whitespace of every kind
    next to digits, letters and punctuation, contractions, non-ASCII digits and letters, and
    added-token strings whole, cut short and doubled."""
    atoms = [" ", "  ", "    ", "\t", "\n", "\n\n\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\u200b",
             "0", "7", "42", "2024", "٣", "²", "½", "Ⅻ", "x", "Foo", "bar_baz", "é", "ß", "中文", "😀", "👩‍💻", "\u0301",
             "'s", "'LL", "'t", "(", ")", "==", "->", "#", '"', "\\", "{}", ".", ",", ";", "<", ">", "|", "_"]
    atoms += specials + [s[:-1] for s in specials] + [s + s for s in specials]
    rng = random.Random(seed)
    return ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 120))) for _ in range(n)]


def both_ways(path, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    tok = load_tokenizer(path)
    assert tok.use_encoder("tokenizers") == "tokenizers"
    want = tok.encode_batch(texts)
    assert tok.use_encoder("tiktoken") == "tiktoken"
    return tok.encode_batch(texts), want


def assert_same(got: list[list[int]], want: list[list[int]], texts: list[str]) -> None:
    for text, g, w in zip(texts, got, want):
        assert g == w, f"ids differ for {text[:80]!r}"
    assert len(got) == len(want) == len(texts)


def train_variant(tmp_path: Path, name: str, pre, added=(), permute_ids: bool = False) -> Path:
    """A byte-level BPE of our own, trained here; ``permute_ids`` renumbers the merged tokens in
    reverse merge order (a valid tokenizer whose ids are not its merge ranks)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=[EOD_TOKEN, "<fim_pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(stdlib_code(40), trainer=trainer)
    tok.add_tokens(list(added))
    path = tmp_path / name / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    if permute_ids:
        spec = json.loads(path.read_text())
        vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
        made = ["".join(m.split(" ", 1) if isinstance(m, str) else m) for m in merges]
        old_ids = [vocab[s] for s in made]
        for s, i in zip(made, reversed(old_ids)):
            vocab[s] = i
        path.write_text(json.dumps(spec))
    return path


def test_bundled_tokenizer_identical_on_code_and_fuzz():
    texts = stdlib_code(120) + fuzz_texts(list(SPECIAL_TOKENS))
    got, want = both_ways(default_tokenizer_path(), texts)
    assert_same(got, want, texts)
    assert sum(map(len, want)) > 200_000
    # a literal <|endoftext|> written in code is the EOD id with both (Megatron-LM parity)
    tok = load_tokenizer(None)
    assert tok.use_encoder("auto") == "tiktoken"
    assert tok.encode(f"s = '{EOD_TOKEN}'") == tok.encode("s = '") + [tok.eod] + tok.encode("'")


@pytest.mark.parametrize("variant", ["gpt2-added-permuted", "digit-runs", "split-regex"])
def test_trained_variants_identical(tmp_path, variant):
    from tokenizers import AddedToken, Regex, pre_tokenizers

    if variant == "gpt2-added-permuted":
        # GPT-2 pre-tokenizer (no digit split), ids out of merge order, and added tokens where one
        # is a prefix of another (longest wins) and one is matched after normalization
        added = [AddedToken("<|im|>", normalized=False), AddedToken("<|im|>start", normalized=False),
                 AddedToken("TODO", normalized=True, special=False)]
        path = train_variant(tmp_path, variant, pre_tokenizers.ByteLevel(add_prefix_space=False), added, permute_ids=True)
        specials = [EOD_TOKEN, "<fim_pad>", "<|im|>", "<|im|>start", "TODO"]
    elif variant == "digit-runs":
        pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.ByteLevel(add_prefix_space=False)])
        path, specials = train_variant(tmp_path, variant, pre), [EOD_TOKEN]
    else:
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        path, specials = train_variant(tmp_path, variant, pre), [EOD_TOKEN]
    texts = stdlib_code(60, 30_000) + fuzz_texts(specials, seed=1)
    got, want = both_ways(path, texts)
    assert_same(got, want, texts)
    if variant == "gpt2-added-permuted":
        tok = load_tokenizer(path)
        # the rank -> id table is a real permutation and the identity test above went through it:
        # the same texts read as raw ranks give other ids
        enc = fastbpe.build(tok._backend)
        assert enc._id_map is not None and (enc._id_map != np.arange(len(enc._id_map))).any()
        sample = texts[0]
        assert enc.encode(sample) == tok._backend.encode(sample, add_special_tokens=False).ids
        assert enc._encode_ordinary(sample) != enc.encode(sample)
        tok.use_encoder("tiktoken")
        assert tok.encode("<|im|>start") == [tok.token_to_id("<|im|>start")]


def test_self_check_catches_the_whitespace_before_digit_trap(monkeypatch):
    """The plain GPT-2 pattern (ignoring that digits are split first) passes on most code, so the
    probe set must be what rejects it."""
    tok = load_tokenizer(None)
    monkeypatch.setattr(fastbpe, "pattern_for", lambda pre: fastbpe.GPT2_PATTERN)
    wrong = fastbpe.build(tok._backend)
    reason = fastbpe.verify(wrong, tok._backend)
    assert reason is not None and "differs" in reason
    # and the trap is real: a space run before a digit is one pre-token only with the right pattern
    monkeypatch.undo()
    right = fastbpe.build(tok._backend)
    assert right.encode("x =  1") == tok._backend.encode("x =  1", add_special_tokens=False).ids != wrong.encode("x =  1")


def test_refusals_name_the_reason(tmp_path):
    from tokenizers import Tokenizer

    with pytest.raises(fastbpe.FastEncoderUnavailable, match="WordPiece"):
        fastbpe.build(Tokenizer.from_file(str(_wordpiece_file(tmp_path))))
    with pytest.raises(fastbpe.FastEncoderUnavailable, match="prefix space"):
        fastbpe.pattern_for({"type": "ByteLevel", "add_prefix_space": True, "use_regex": True})
    with pytest.raises(fastbpe.FastEncoderUnavailable, match="Whitespace"):
        fastbpe.pattern_for({"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, {"type": "ByteLevel"}]})


def _wordpiece_file(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.train_from_iterator(stdlib_code(10), trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", EOD_TOKEN, "<fim_pad>"],
                                                                      show_progress=False))
    path = tmp_path / "wordpiece.json"
    wp.save(str(path))
    return path


def test_pipeline_falls_back_with_one_line_and_forced_tiktoken_refuses(tmp_path, capfd):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"content": t} for t in stdlib_code(5)])
    tok_path = _wordpiece_file(tmp_path)
    cfg = make_cfg([inp], tmp_path / "auto")
    cfg.job.tokenizer = str(tok_path)
    summary = run(cfg)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if "tiktoken" in ln]
    assert len(lines) == 1 and "encoding with tokenizers" in lines[0] and "WordPiece" in lines[0], err
    assert summary["config"]["encoder"] == "tokenizers" and summary["docs_kept"] == 5

    cfg = make_cfg([inp], tmp_path / "forced")
    cfg.job.tokenizer, cfg.job.encoder = str(tok_path), "tiktoken"
    with pytest.raises(ConfigError, match=r"--encoder tiktoken: .*wordpiece.json: .*WordPiece"):
        run(cfg)
    assert not (tmp_path / "forced.bin").exists()


def test_pipeline_outputs_byte_identical_between_encoders(tmp_path, capfd):
    code = stdlib_code(80)
    # code that writes the EOD string and FIM tokens literally (tokenizer tests, docs)
    code[3] = f'SEP = "{EOD_TOKEN}"\nFIM = "<fim_prefix>a<fim_suffix>b<fim_middle>"\n' + code[3]
    inp = write_jsonl(tmp_path / "in.jsonl", [{"content": t, "max_stars_repo_name": "r/x", "max_stars_repo_path": f"m{i}.py"}
                                              for i, t in enumerate(code)])
    outs = {}
    for encoder, workers in (("tokenizers", 1), ("tiktoken", 2), ("auto", 1)):
        cfg = make_cfg([inp], tmp_path / encoder, workers=workers)
        cfg.job.encoder = encoder
        summary = run(cfg)
        assert summary["config"]["encoder"] == ("tiktoken" if encoder == "auto" else encoder)
        outs[encoder] = [(tmp_path / f"{encoder}.{ext}").read_bytes() for ext in ("bin", "idx")]
    assert "not tiktoken" not in capfd.readouterr().err  # auto took tiktoken silently
    assert outs["tiktoken"] == outs["tokenizers"] == outs["auto"]
    assert len(outs["tokenizers"][0]) > 100_000


def test_lone_surrogates_are_refused_by_both():
    """JSON may decode to a lone surrogate; tokenizers refuses such text, so tiktoken must not
    quietly encode a replacement character instead."""
    tok = load_tokenizer(None)
    for encoder in ("tokenizers", "tiktoken"):
        tok.use_encoder(encoder)
        with pytest.raises((TypeError, UnicodeEncodeError)):
            tok.encode("x = '\ud800'")
