"""Identity of the fast encoder at scale: tiktoken ids == ``tokenizers`` ids on real vocabularies.

    python benchmarks/fast_encoder_identity.py                        # 50 MB, all four vocabularies
    python benchmarks/fast_encoder_identity.py --mb 5 --vocabularies bundled,starcoder2

For each vocabulary (the bundled one; StarCoder2's, StarCoder's with its metadata special tokens,
GPT-2's, rebuilt by ``benchmarks/real_tokenizers.py``) the fast encoder must be chosen by
``--encoder auto`` (its start-up check passes) and give, text by text, the ids ``tokenizers`` gives on
--mb MB of code in five languages (``preprocess_throughput.source_texts``) plus adversarial text:
long whitespace runs of every kind, digits after spaces, mixed scripts, emoji, characters after every
UTF-8 lead byte, every special token of the vocabulary inside text, and lone surrogates (both encoders
must refuse those). Prints one row per vocabulary; exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess_throughput import resolve_tokenizer, source_texts  # noqa: E402

WHITESPACE = [" ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\u00a0", "\u2028", "\u3000", "\u200b", "\u2003"]
SCRIPTS = ["hello", "привет", "こんにちは", "中文字符", "مرحبا", "שלום", "नमस्ते", "ไทย", "한국어", "Ωμέγα", "ß", "e\u0301"]
EMOJI = ["😀", "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "👍🏽", "\U0001F9D1\u200d\U0001F4BB"]
DIGITS = ["0", "7", "42", "2024", "3.14", "1e-9", "٣", "²", "½", "１２"]


def adversarial(specials: list[str], n: int, seed: int = 0) -> list[str]:
    """Texts built from the atoms byte-level emulations get wrong, ``n`` of them."""
    from codetron.preprocess.fastbpe import _LEAD_BYTE_CHARS

    rng = random.Random(seed)
    atoms = WHITESPACE + SCRIPTS + EMOJI + DIGITS + list(_LEAD_BYTE_CHARS) + ["'s", "'LL", "(", "==", "->", "#", "_", "x"]
    atoms += specials + [s[:-1] for s in specials] + [s + s for s in specials]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 200)):
            a = rng.choice(atoms)
            if a in WHITESPACE and rng.random() < 0.3:
                a *= rng.choice([2, 3, 8, 40, 300])  # long runs, then whatever follows
            parts.append(a)
        out.append("".join(parts))
    out.append("".join(f"x{s}y {s}1 \n{s}" for s in specials))  # every special token inside text
    return out


def check(name: str, texts: list[str], specials_of) -> dict:
    from codetron.preprocess.tokenizer import load_tokenizer

    tok = load_tokenizer(resolve_tokenizer(name))
    t0 = time.perf_counter()
    chosen = tok.use_encoder("auto", announce=True)
    check_s = time.perf_counter() - t0
    fast = tok._fast
    backend = tok._backend
    texts = texts + adversarial(specials_of(backend), 2000)
    mism, n_tok, fast_s, slow_s = [], 0, 0.0, 0.0
    for i in range(0, len(texts), 256):
        batch = texts[i : i + 256]
        t0 = time.perf_counter()
        want = [e.ids for e in backend.encode_batch_fast(batch, add_special_tokens=False)]
        slow_s += time.perf_counter() - t0
        if fast is None:
            continue
        t0 = time.perf_counter()
        got = [fast.encode(t) for t in batch]
        fast_s += time.perf_counter() - t0
        n_tok += sum(map(len, want))
        mism += [t[:60] for t, g, w in zip(batch, got, want) if g != w]
    refused = []
    for text in ("x = '\ud800'", "\udfff", "ok \ud83d end"):
        outcomes = []
        for enc in (lambda t: backend.encode(t, add_special_tokens=False), fast.encode if fast else None):
            if enc is None:
                continue
            try:
                enc(text)
                outcomes.append("encoded")
            except (TypeError, UnicodeEncodeError):
                outcomes.append("refused")
        refused.append(set(outcomes) == {"refused"})
    return dict(name=name, encoder=chosen, texts=len(texts), mb=sum(len(t.encode("utf-8")) for t in texts) / 1e6, tokens=n_tok,
                mismatches=len(mism), first=mism[:3], surrogates=all(refused), check_s=check_s, fast_s=fast_s, slow_s=slow_s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="MB of code (default 50)")
    ap.add_argument("--vocabularies", default="bundled,starcoder2,starcoder,gpt2")
    args = ap.parse_args()
    import json

    code, per_lang = source_texts("code", args.mb)
    print(f"code: {len(code):,} files, {sum(per_lang.values()):.1f} MB ({', '.join(f'{k} {v:.1f}' for k, v in per_lang.items())} MB)")

    def specials_of(backend) -> list[str]:
        return [t["content"] for t in json.loads(backend.to_str())["added_tokens"]]

    rows = [check(name.strip(), code, specials_of) for name in args.vocabularies.split(",")]
    print(f"\n{'vocabulary':<11} {'encoder':<9} {'texts':>7} {'MB':>6} {'tokens':>12} {'differ':>6} {'surrogates':>10} "
          f"{'check s':>7} {'tiktoken s':>10} {'tokenizers s':>12}")
    for r in rows:
        print(f"{r['name']:<11} {r['encoder']:<9} {r['texts']:>7,} {r['mb']:>6.1f} {r['tokens']:>12,} {r['mismatches']:>6} "
              f"{'refused' if r['surrogates'] else 'DIFFER':>10} {r['check_s']:>7.1f} {r['fast_s']:>10.1f} {r['slow_s']:>12.1f}")
        for t in r["first"]:
            print(f"    differs: {t!r}")
    print("tokenizers s: encode_batch_fast on all cores; tiktoken s: one thread; check s: the start-up self-check")
    return 0 if all(r["encoder"] == "tiktoken" and not r["mismatches"] and r["surrogates"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
