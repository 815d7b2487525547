"""End-to-end: records -> .bin/.idx read back with megatron-core's IndexedDataset -> exact text."""
import json
import os

import numpy as np
import pytest

from codetron.errors import CodetronError
from codetron.preprocess import formats
from codetron.preprocess.config import CodeConfig, CommitConfig, InstructConfig
from codetron.preprocess.pipeline import run
from tests.preprocess.conftest import SAMPLES, make_cfg, read_docs, write_jsonl

EOD = "<|endoftext|>"


def _lines(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]


def _code_records(n=40):
    return [{"content": f"def f{i}(x):\n    return x * {i}  # ünï\n", "max_stars_repo_name": f"org/r{i % 5}",
             "max_stars_repo_path": f"src/m{i}.py", "max_stars_count": i * 37, "lang": "Python" if i % 3 else "Go"}
            for i in range(n)]


@pytest.mark.parametrize("p", [1.0, 0.0])
def test_code_round_trip(tmp_path, tok, p):
    recs = _code_records()
    src = write_jsonl(tmp_path / "code.jsonl", recs)
    s = run(make_cfg([src], tmp_path / "out", code=CodeConfig(p_repo=p, p_path=p, p_stars=p)))
    docs = read_docs(tmp_path / "out")
    assert s["docs_kept"] == len(docs) == 40 and s["dtype"] == "uint16"
    for r, doc in zip(recs, docs):
        assert len(doc) == 1 and doc[0][-1] == tok.eod and doc[0].dtype == np.uint16
        meta = (r["max_stars_repo_name"], r["max_stars_repo_path"], r["max_stars_count"]) if p else (None, None, None)
        assert tok.decode(doc[0]) == formats.render_code(r["content"], *meta) + EOD
    assert s["tokens_out"] == sum(len(d[0]) for d in docs)


def test_code_metadata_probability_and_language_filter(tmp_path, tok):
    recs = _code_records(400)
    src = write_jsonl(tmp_path / "code.jsonl", recs)
    run(make_cfg([src], tmp_path / "out", code=CodeConfig(languages=frozenset({"python"}))))
    docs = read_docs(tmp_path / "out")
    assert len(docs) == sum(r["lang"] == "Python" for r in recs)
    texts = [tok.decode(d[0]) for d in docs]
    for tag in ("<reponame>", "<filename>", "<gh_stars>"):
        frac = sum(tag in t for t in texts) / len(texts)
        assert 0.12 < frac < 0.28, (tag, frac)  # StarCoder's 0.2 each


@pytest.mark.parametrize("fmt,layout", [("starcoder", "pretrain"), ("starcoder", "sft"), ("octocoder", "sft"), ("plain", "pretrain")])
def test_commitpack_round_trip(tmp_path, tok, fmt, layout):
    recs = _lines(SAMPLES / "commitpack_sample.jsonl")[:8]  # the eight kept commits
    src = write_jsonl(tmp_path / "c.jsonl", recs)
    run(make_cfg([src], tmp_path / "out", mode="commitpack", layout=layout, commit=CommitConfig(format=fmt, filename=True)))
    docs = read_docs(tmp_path / "out")
    assert len(docs) == 8
    for r, doc in zip(recs, docs):
        if fmt == "plain":
            assert tok.decode(doc[0]) == r["new_contents"] + EOD
            continue
        if fmt == "starcoder":
            prompt, response = formats.render_commit_starcoder(r["old_contents"], r["subject"], r["new_contents"], r["new_file"])
        else:
            prompt, response = formats.render_commit_octocoder(r["old_contents"], r["subject"], r["new_contents"])
        if layout == "sft":
            assert len(doc) == 2
            assert tok.decode(doc[0]) == prompt and tok.decode(doc[1]) == response + EOD
            assert EOD not in tok.decode(doc[0])
        else:
            assert len(doc) == 1 and tok.decode(doc[0]) == prompt + response + EOD


@pytest.mark.parametrize("template,layout", [("wizardcoder", "sft"), ("octocoder", "sft"), ("plain", "pretrain")])
def test_instruct_round_trip_keeps_boundary(tmp_path, tok, template, layout):
    from codetron.preprocess.layout import read_sft_document, sft_loss_mask
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    recs = json.loads((SAMPLES / "evol_instruct_sample.json").read_text())[:10]
    run(make_cfg([SAMPLES / "evol_instruct_sample.json"], tmp_path / "out", mode="instruct", layout=layout,
                 instruct=InstructConfig(template=template), dedup="exact", decontaminate=True))
    docs = read_docs(tmp_path / "out")
    assert len(docs) == 10  # 12 records: one exact duplicate, one HumanEval problem removed
    ds = IndexedDataset(str(tmp_path / "out"))
    for i, r in enumerate(recs):
        prompt, response = formats.INSTRUCTION_TEMPLATES[template](r["instruction"], r["output"], r.get("input", ""))
        if layout == "sft":
            p_ids, r_ids = read_sft_document(ds, i)
            assert tok.decode(p_ids) == prompt and tok.decode(r_ids) == response + EOD
            mask = sft_loss_mask(len(p_ids), len(r_ids))
            assert mask.sum() == len(r_ids) and mask[: len(p_ids)].sum() == 0
        else:
            assert tok.decode(docs[i][0]) == prompt + response + EOD


def test_source_tree_mode(tmp_path, tok):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "latin1.py").write_bytes(b"s = '\xe9'\n")
    (root / "big.py").write_text("x = 0\n" * 2000)
    (root / "test_skip.py").write_text("B = 2\n")
    (root / "notes.txt").write_text("not code")
    s = run(make_cfg([root], tmp_path / "out", source_suffixes=(".py",), exclude=("test_*",), max_file_bytes=1000,
                     code=CodeConfig(p_repo=1.0, p_path=1.0, p_stars=0.0)))
    docs = read_docs(tmp_path / "out")
    assert [tok.decode(d[0]) for d in docs] == ["<reponame>proj<filename>pkg/a.py\nA = 1\n" + EOD]
    assert s["dropped"] == {"empty_file": 1, "file_too_large": 1}
    assert s["errors_total"] == 1 and "latin1.py:1: not UTF-8" in s["errors"][0]


def test_workers_give_identical_output_and_bounded_inflight(tmp_path):
    recs = _code_records(300)
    src = write_jsonl(tmp_path / "code.jsonl", recs)
    run(make_cfg([src], tmp_path / "one", workers=1, chunk_docs=16, dedup="exact"))
    s = run(make_cfg([src], tmp_path / "two", workers=2, chunk_docs=16, dedup="exact"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"one{ext}").read_bytes() == (tmp_path / f"two{ext}").read_bytes()
    assert s["docs_kept"] == 300


def test_runner_consumes_input_lazily():
    from codetron.preprocess import pipeline
    from codetron.preprocess.readers import Chunk
    from tests.preprocess.conftest import make_cfg as mk

    pulled = []

    def chunks():
        for i in range(50):
            pulled.append(i)
            yield Chunk("x.jsonl", [(1, {"content": f"x = {i}\n"})])

    cfg = mk(["x"], "unused", workers=2)
    runner = pipeline._Runner(cfg)
    try:
        it = runner.run(chunks())
        next(it)
        assert len(pulled) <= 2 * cfg.workers + 1  # never more than the in-flight limit
        rest = list(it)
        assert len(rest) == 49
    finally:
        runner.close(True)


def test_shards_merge_to_the_full_dataset(tmp_path, tok):
    from codetron.preprocess.merge import merge

    recs = _code_records(100)
    src = write_jsonl(tmp_path / "code.jsonl", recs)
    full = run(make_cfg([src], tmp_path / "full", chunk_docs=7))
    shards = [run(make_cfg([src], tmp_path / f"s{i}", chunk_docs=7, shard=(i, 3))) for i in range(3)]
    assert all(0 < s["docs_kept"] < 100 for s in shards)
    m = merge([str(tmp_path / f"s{i}") for i in range(3)], str(tmp_path / "merged"))
    assert m["documents"] == 100 and m["docs_in"] == 100 and m["tokens_out"] == full["tokens_out"]
    key = lambda docs: sorted(tok.decode(d[0]) for d in docs)  # noqa: E731
    assert key(read_docs(tmp_path / "merged")) == key(read_docs(tmp_path / "full"))
    # many files: each shard takes whole files, and merging in shard order restores the input order
    files = [write_jsonl(tmp_path / f"part{i}.jsonl", recs[i * 25:(i + 1) * 25]) for i in range(4)]
    for i in range(2):
        run(make_cfg(files, tmp_path / f"f{i}", shard=(i, 2)))
    run(make_cfg(files, tmp_path / "ff"))
    merge([str(tmp_path / "f0"), str(tmp_path / "f1")], str(tmp_path / "fm"))
    got = [tok.decode(d[0]) for d in read_docs(tmp_path / "fm")]
    order = [tok.decode(d[0]) for d in read_docs(tmp_path / "ff")]
    assert got == order[0:25] + order[50:75] + order[25:50] + order[75:100]


def _corrupt_inputs(tmp_path):
    import gzip

    d = tmp_path / "in"
    d.mkdir()
    good = [{"content": f"x = {i}\n"} for i in range(5)]
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(1, b'{"content": "broken json\n')  # a raw newline: the record spans lines 2-3
    lines.insert(3, b'{"content": "bad \xff\xfe utf8"}')
    lines.append(json.dumps({"path": "no content"}).encode())
    lines.append(json.dumps({"content": "   \n"}).encode())
    (d / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    blob = gzip.compress("".join(json.dumps({"content": f"y_{i} = {i} * 3\n"}) + "\n" for i in range(3000)).encode())
    (d / "b.jsonl.gz").write_bytes(blob[: len(blob) * 2 // 3])
    return d


def test_corrupted_input_skip_reports_and_writes_valid_output(tmp_path, tok):
    d = _corrupt_inputs(tmp_path)
    s = run(make_cfg([d], tmp_path / "out", on_error="skip"))
    errs = s["errors"]
    assert s["errors_total"] == 5
    assert any("a.jsonl:2: bad JSON" in e for e in errs)
    assert any("a.jsonl:5: not UTF-8" in e for e in errs)
    assert any("a.jsonl:9: missing field" in e for e in errs)
    assert any("a.jsonl:10: empty document" in e for e in errs)
    assert any("b.jsonl.gz:" in e and "truncated archive" in e for e in errs)
    docs = read_docs(tmp_path / "out")
    n_gz = s["docs_kept"] - 5
    assert 0 < n_gz < 3000  # the readable part of the truncated archive is kept
    assert [tok.decode(x[0]) for x in docs[:5]] == [f"x = {i}\n" + EOD for i in range(5)]
    assert json.loads((tmp_path / "out.summary.json").read_text())["errors_total"] == 5


def test_corrupted_input_fail_leaves_nothing(tmp_path):
    d = _corrupt_inputs(tmp_path)
    with pytest.raises(CodetronError, match=r"a\.jsonl:2: bad JSON .*--on-error fail"):
        run(make_cfg([d], tmp_path / "out", on_error="fail", workers=2))
    assert [p for p in os.listdir(tmp_path) if p != "in"] == []  # no output, no temp files


def test_nothing_kept_is_an_error_without_output(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", [{"content": " "}, {"content": ""}])
    with pytest.raises(CodetronError, match="no documents kept from 2 read"):
        run(make_cfg([src], tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl"]


def test_dedup_in_pipeline(tmp_path):
    s = run(make_cfg([SAMPLES / "the_stack_sample.jsonl", SAMPLES / "the_stack_sample.parquet"], tmp_path / "o",
                     dedup="near", decontaminate=True))
    # jsonl: 13 = 10 distinct + exact copy + near copy + HumanEval file; the parquet repeats all 13:
    # its HumanEval file is contaminated again and the other 12 (near copy included, whose digest was
    # recorded before near dedup removed it) are exact duplicates of the jsonl's
    assert s["docs_kept"] == 10
    assert s["dropped"] == {"exact_duplicate": 1 + 12, "near_duplicate": 1, "contaminated": 2}
    assert s["contaminated"][0].endswith(":13: HumanEval/0 prompt")


def test_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        run(make_cfg([SAMPLES / "the_stack_sample.jsonl"], tmp_path / "o"))
    finally:
        os.umask(old)
    for ext in (".bin", ".idx", ".summary.json"):
        assert (tmp_path / f"o{ext}").stat().st_mode & 0o777 == 0o644


def test_text_mode_with_large_vocab_writes_int32(tmp_path):
    """A 70k-id tokenizer does not fit uint16: the output switches to int32 and keeps ids > 65535."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from codetron.preprocess.tokenizer import load_tokenizer

    vocab = {"<|endoftext|>": 0, "<fim_pad>": 1, "[UNK]": 2, **{f"w{i}": i + 3 for i in range(70_000)}}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(tmp_path / "big.json"))
    big = load_tokenizer(tmp_path / "big.json")
    assert big.vocab_size == 70_003
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "w1 w69999 w65536"}, {"text": "w5"}])
    cfg = make_cfg([src], tmp_path / "out", mode="text")
    cfg.job.tokenizer = str(tmp_path / "big.json")
    s = run(cfg)
    assert s["dtype"] == "int32"
    docs = read_docs(tmp_path / "out")
    assert [d[0].tolist() for d in docs] == [[4, 70002, 65539, 0], [8, 0]]
