"""Long documents: encoded in pieces cut where the pre-tokenizer cuts -- identical ids, bounded memory."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from codetron.preprocess import longdoc
from codetron.preprocess.longdoc import PretokenTooLong, encode_long, hf_split_support, split_points
from tests.preprocess.conftest import REPO

FRAGMENTS = [
    "def f(x):\n    return x + 1\n",
    "    \n\n\n",  # blank lines with trailing spaces
    " " * 37 + "x",  # a long space run that ends in a word
    "\t\t\t\tif a == b:\r\n",
    "0123456789" * 7,  # a long digit run
    "<|endoftext|>",  # special tokens written in code
    "<commit_before>", "<fim_prefix>x<fim_suffix>",
    " <|endoftext|> ",
    "naïve café — Ωmega ✓ 日本語のテキスト 🚀🚀\n",
    "x=1;y=2;z=x**y//3\n",
    "'s 're 've 'll 'd \n",
    "/* comment */ // more\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\n" * 5 + " " * 5 + "\n",
]


def corpus(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(FRAGMENTS) for _ in range(n))


def _byte_level_bpe(pre):
    """A tiny BPE trained in-process, with the given pre-tokenizer and StarCoder's first specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<commit_before>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([corpus(s, 200) for s in range(5)], trainer=trainer)
    return tok


def _tokenizers():
    from tokenizers import Regex, pre_tokenizers

    from codetron.preprocess.tokenizer import load_tokenizer

    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
              r"\s+(?!\S)|\s+")
    return {
        "bundled (StarCoder-style digits + byte level)": load_tokenizer(None)._backend,
        "gpt2-style byte level": _byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)),
        "llama3-style split regex": _byte_level_bpe(pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(llama3), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])),
    }


@pytest.fixture(scope="module")
def backends():
    return _tokenizers()


@pytest.mark.parametrize("name", ["bundled (StarCoder-style digits + byte level)", "gpt2-style byte level", "llama3-style split regex"])
def test_pieces_give_the_ids_of_a_whole_encode(backends, name):
    tok = backends[name]
    support = hf_split_support(tok)
    assert not isinstance(support, str), support
    pretokenize, protected = support

    def batch(texts):
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    line_cuts = longdoc.line_cuts_safe(tok)
    assert line_cuts == (name != "llama3-style split regex")  # Llama 3 keeps ";\n" in one pre-token
    for seed in range(6):
        text = corpus(seed, 400)
        whole = tok.encode(text, add_special_tokens=False).ids
        for piece, lines in ((7, False), (40, False), (333, False), (7, line_cuts), (40, line_cuts)):
            # tiny pieces: hundreds of cuts, many inside runs and next to specials
            cuts = list(split_points(text, pretokenize, piece_chars=piece, protected=protected, line_cuts=lines))
            assert len(cuts) > len(text) // ((40 if lines else 4) * piece)  # line cuts: only where a newline is
            assert cuts == sorted(set(cuts)) and 0 < cuts[0] and cuts[-1] < len(text)
            ids = encode_long(text, batch, iter(cuts), np.int32)
            assert ids.tolist() == whole, (name, seed, piece, lines)
            if protected is not None:  # no cut falls inside a special token written in the text
                for m in protected.finditer(text):
                    assert not any(m.start() < c < m.end() for c in cuts)


@pytest.mark.parametrize("line_cuts", [False, True])
def test_cuts_only_where_the_pretokenizer_cuts(backends, line_cuts):
    tok = backends["bundled (StarCoder-style digits + byte level)"]
    pretokenize, protected = hf_split_support(tok)
    text = corpus(11, 300)
    boundaries = set(pretokenize(text))
    cuts = list(split_points(text, pretokenize, piece_chars=50, protected=protected, line_cuts=line_cuts))
    assert cuts and set(cuts) <= boundaries
    if line_cuts:  # most cuts are line cuts: right before a newline that follows a non-space
        assert sum(text[c] == "\n" and not text[c - 1].isspace() for c in cuts) > 0.8 * len(cuts)


def test_one_giant_pretoken_is_refused_not_encoded_unbounded():
    pretokenize, protected = hf_split_support(_tokenizers()["gpt2-style byte level"])
    text = "def f():\n" + "a" * 5000 + "\n"
    with pytest.raises(PretokenTooLong, match="single pre-token longer than 1,024"):
        list(split_points(text, pretokenize, piece_chars=64, max_pretoken_chars=1024))
    assert list(split_points(text, pretokenize, piece_chars=64, max_pretoken_chars=8192))  # long enough: cut after it


def test_unsupported_tokenizers_say_why():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    assert "no pre-tokenizer" in hf_split_support(tok)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert "prefix space" in hf_split_support(tok)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.normalizer = normalizers.NFKC()
    assert "normalizer" in hf_split_support(tok)


_MEASURE = r"""
import json, resource, sys
from codetron.preprocess.pipeline import run
from tests.preprocess.conftest import make_cfg, read_docs
from codetron.preprocess.tokenizer import load_tokenizer
src, out, check = sys.argv[1], sys.argv[2], sys.argv[3] == "check"
s = run(make_cfg([src], out, decontaminate=True, dedup="exact"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ok = None
if check:
    text = json.loads(open(src).readline())["content"]
    ok = read_docs(out)[0][0][:-1].tolist() == load_tokenizer(None).encode(text)
print(json.dumps({"peak": peak, "tokens": s["tokens_out"], "identical": ok}))
"""


def _measure(tmp_path, content: str, name: str, check: bool) -> dict:
    src = tmp_path / f"{name}.jsonl"
    src.write_text(json.dumps({"content": content}) + "\n")
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(src), str(tmp_path / name), "check" if check else "-"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_five_megabyte_document_in_bounded_memory(tmp_path):
    """A 5 MB single document: same ids as a whole encode, and peak RSS within 200 MB of a tiny run
    (a whole encode of it needs ~650 MB of tokenizer memory plus ~150 MB of Python ints)."""
    doc = corpus(3, 200_000)[: 5_000_000]
    small = _measure(tmp_path, doc[:20_000], "small", check=False)
    big = _measure(tmp_path, doc, "big", check=False)
    grown = (big["peak"] - small["peak"]) / 2**20
    assert big["tokens"] > 1_000_000
    assert grown < 200, f"peak RSS grew by {grown:.0f} MiB for a 5 MB document"


def test_pipeline_output_identical_for_a_long_document(tmp_path, monkeypatch):
    """Through the pipeline, with the long-text threshold lowered so a 200 KB document is cut."""
    from codetron.preprocess.indexed import IndexInfo
    from codetron.preprocess.pipeline import run
    from codetron.preprocess.tokenizer import load_tokenizer
    from tests.preprocess.conftest import make_cfg, write_jsonl

    monkeypatch.setattr(longdoc, "LONG_TEXT_CHARS", 10_000)
    calls = []
    real = longdoc.split_points
    monkeypatch.setattr(longdoc, "split_points", lambda *a, **k: calls.append(1) or real(*a, piece_chars=3_000, **k))
    text = corpus(5, 12_000)
    assert len(text) > 100_000
    run(make_cfg([write_jsonl(tmp_path / "in.jsonl", [{"content": text}, {"content": "x = 1\n"}])], tmp_path / "o"))
    assert calls == [1]  # the long document went through the splitter, the short one did not
    tok = load_tokenizer(None)
    info = IndexInfo(tmp_path / "o")
    tokens = np.fromfile(tmp_path / "o.bin", dtype=info.dtype)
    n0 = int(info.lengths[0])
    assert tokens[:n0].tolist() == tok.encode(text) + [tok.eod]
    assert tokens[n0:].tolist() == tok.encode("x = 1\n") + [tok.eod]


def test_max_doc_chars_drops_and_counts_and_the_reader_skips_huge_lines(tmp_path):
    from codetron.preprocess.pipeline import run
    from codetron.preprocess.readers import iter_chunks, line_limit
    from tests.preprocess.conftest import make_cfg, write_jsonl

    docs = [{"content": "x = 1\n"}, {"content": "y" * 5000}, {"content": "z = 2\n"}]
    inp = write_jsonl(tmp_path / "in.jsonl", docs)
    cfg = make_cfg([inp], tmp_path / "o")
    cfg.job.max_doc_chars = 1000
    s = run(cfg)
    assert (s["docs_in"], s["docs_kept"], s["dropped"]) == (3, 2, {"doc_too_long": 1})
    cfg.job.max_doc_chars, cfg.output_prefix = 0, str(tmp_path / "all")  # 0: no cap
    assert run(cfg)["docs_kept"] == 3

    # the reader skips a line over its byte limit without holding it (read in 1 MiB blocks),
    # counts it, and keeps the lines around it; a line of exactly the limit is kept
    chunks = list(iter_chunks(str(inp), max_line_bytes=len(json.dumps(docs[0])) + 1))
    assert [ln for c in chunks for ln, _ in c.items] == [1, 3] and sum(c.too_long for c in chunks) == 1
    assert line_limit(0) == 0 and line_limit(10) == 120 + (1 << 20)
    big = tmp_path / "big.jsonl"
    with open(big, "w") as fh:
        fh.write(json.dumps({"content": "a" * 3_000_000}) + "\n" + json.dumps({"content": "ok = 1\n"}) + "\n")
    chunks = list(iter_chunks(str(big), max_line_bytes=1 << 20))
    assert [c.too_long for c in chunks] == [1] and [ln for ln, _ in chunks[0].items] == [2]
