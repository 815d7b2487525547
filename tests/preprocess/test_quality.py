import random
from collections import Counter

from codetron.preprocess.quality import (DecontamConfig, Decontaminator, ExactDeduper, NearDedupConfig, NearDeduper,
                                filter_texts, load_humaneval)


def _code(seed: int, n_lines: int = 40) -> str:
    rnd = random.Random(seed)
    names = ["alpha", "beta", "gamma", "delta", "total", "count", "items", "value", "result", "index"]
    return "".join(f"{rnd.choice(names)}_{rnd.randrange(99)} = {rnd.choice(names)}({rnd.randrange(999)}) + {rnd.randrange(50)}\n"
                   for _ in range(n_lines))


def _perturb(text: str, seed: int, n: int = 2) -> str:
    lines = text.split("\n")
    rnd = random.Random(seed)
    for _ in range(n):
        lines[rnd.randrange(len(lines) - 1)] = "changed_line = 0"
    return "\n".join(lines)


def test_exact_dedup():
    d = ExactDeduper()
    assert [d.is_duplicate(t) for t in ["a", "b", "a", "a ", "b"]] == [False, False, True, False, True]
    ws = ExactDeduper(normalize_whitespace=True)
    assert [ws.is_duplicate(t) for t in ["x  = 1\n", "x = 1", "x = 2"]] == [False, True, False]
    assert len(d) == 3


def test_near_dedup_finds_planted_near_duplicates():
    originals = [_code(i) for i in range(40)]
    planted = {40 + i: _perturb(originals[i], seed=i) for i in range(0, 40, 4)}  # 10 near copies, 2 lines changed
    texts = originals + list(planted.values())
    near = NearDeduper(NearDedupConfig(threshold=0.7, num_perm=128))
    flags = [near.is_duplicate(t) for t in texts]
    assert flags[:40] == [False] * 40          # distinct random files are kept
    assert all(flags[40:])                      # every planted copy is caught
    # a heavy rewrite (most lines changed) is not a near duplicate
    assert not near.is_duplicate(_perturb(originals[1], seed=99, n=30) + _code(1234))


def test_decontamination_finds_planted_humaneval_solutions():
    problems = load_humaneval()
    assert len(problems) == 164
    dec = Decontaminator.humaneval()
    clean = [_code(i) for i in range(30)]
    p = problems[0]
    planted = [
        "import math\n\n" + p["prompt"] + p["canonical_solution"] + "\nprint('hi')\n",  # verbatim problem + solution
        "# copied\n" + problems[12]["prompt"].replace("    ", "\t"),                    # re-indented prompt
        "def solve(operations):\n" + problems[3]["canonical_solution"].replace("\n", "\n\n"),  # solution body, re-spaced
    ]
    assert [dec.match(t) for t in clean] == [None] * 30
    hits = [dec.match(t) for t in planted]
    assert hits[0] in ("HumanEval/0 prompt", "HumanEval/0 solution")
    assert hits[1] == "HumanEval/12 prompt"
    assert hits[2] == "HumanEval/3 solution"


def test_decontam_ignores_short_generic_benchmark_texts():
    dec = Decontaminator([("tiny", "return a + b"), ("long", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi")],
                         DecontamConfig(ngram=13, min_tokens=13))
    assert dec.match("def f(a, b):\n    return a + b\n") is None
    assert dec.match("# alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu\n") == "long"


def test_filter_texts_counts_reasons():
    problems = load_humaneval()
    base = [_code(i) for i in range(10)]
    items = base + [base[0], _perturb(base[1], 1), problems[5]["prompt"] + problems[5]["canonical_solution"]]
    counts = Counter()
    kept = list(filter_texts(items, exact=ExactDeduper(), near=NearDeduper(NearDedupConfig(num_perm=128)),
                             decontaminator=Decontaminator.humaneval(), counts=counts))
    assert kept == base
    assert counts == {"exact_duplicate": 1, "near_duplicate": 1, "contaminated": 1}
    # works on records through text_of
    recs = [{"instruction": t} for t in base + base[:2]]
    assert len(list(filter_texts(recs, lambda r: r["instruction"], exact=ExactDeduper()))) == 10


HEX_TABLE = '''"""Render bytes as hexadecimal digits."""
HEX_DIGITS = "0 1 2 3 4 5 6 7 8 9 A B C D E F".split()


def to_hex(data: bytes) -> str:
    return "".join(HEX_DIGITS[b >> 4] + HEX_DIGITS[b & 15] for b in data)
'''


def test_decontam_keeps_legitimate_digit_tables_and_finds_real_copies():
    """HumanEval/78 lists `0, 1, ... 9, A, ... F`: a 13-gram of single characters that any
    hex table shares. Such n-grams are not matched on; a real copy of the problem still is."""
    problems = {p["task_id"]: p for p in load_humaneval()}
    dec = Decontaminator.humaneval()
    assert dec.match(HEX_TABLE) is None
    assert dec.match("ALPHABET = '" + " ".join("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") + "'\n") is None
    p78 = problems["HumanEval/78"]
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, A, B, C, D, E, F" in p78["prompt"]
    assert dec.match(HEX_TABLE + "\n" + p78["prompt"] + p78["canonical_solution"]) == "HumanEval/78 prompt"
    assert dec.match(p78["canonical_solution"].replace("    ", "  ")) == "HumanEval/78 solution"
    # the threshold is a setting: allowing trivial n-grams brings back the false positive
    strict = Decontaminator.humaneval(DecontamConfig(max_trivial_fraction=1.0))
    assert strict.match(HEX_TABLE) == "HumanEval/78 prompt"


def test_decontam_streams_long_texts(monkeypatch):
    """Words are read in blocks (bounded memory); an n-gram across a block edge is still found."""
    import codetron.preprocess.quality as quality

    needle = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu"
    dec = Decontaminator([("bench", needle)])
    filler = " ".join(f"w{i}" for i in range(1000))
    monkeypatch.setattr(quality, "_MATCH_BLOCK_WORDS", 64)
    for offset in range(0, 70, 3):  # the needle starts at every position relative to a block edge
        text = " ".join(f"w{i}" for i in range(offset)) + " " + needle + " " + filler
        assert dec.match(text) == "bench", offset
    assert dec.match(filler + " " + needle.rsplit(" ", 1)[0]) is None


def test_near_signature_does_not_depend_on_block_size(monkeypatch):
    import codetron.preprocess.quality as quality

    near = NearDeduper(NearDedupConfig(num_perm=64))
    texts = [_code(7, 200), "one two", ""]
    ref = [near.signature(t) for t in texts]
    monkeypatch.setattr(quality, "_MATCH_BLOCK_WORDS", 50)
    assert all((near.signature(t) == r).all() for t, r in zip(texts, ref))
