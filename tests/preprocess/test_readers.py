import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codetron.errors import CodetronError
from codetron.preprocess.readers import ReadError, expand_inputs, iter_chunks, iter_records, parse_item, ItemError
from tests.preprocess.conftest import write_jsonl

RECS = [{"text": f"doc {i}"} for i in range(7)]


def _items(path, **kw):
    out = []
    for c in iter_chunks(str(path), **kw):
        out.append(c if isinstance(c, ReadError) else [(line, parse_item(it)) for line, it in c.items])
    return out


@pytest.mark.parametrize("compress", [None, "gz", "zst"])
def test_jsonl_variants_stream_in_chunks(tmp_path, compress):
    suffix = {None: ".jsonl", "gz": ".jsonl.gz", "zst": ".jsonl.zst"}[compress]
    f = write_jsonl(tmp_path / f"a{suffix}", RECS, compress)
    chunks = _items(f, max_items=3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [line for c in chunks for line, _ in c] == list(range(1, 8))
    assert [r["text"] for c in chunks for _, r in c] == [r["text"] for r in RECS]


def test_json_array_streaming_with_line_numbers(tmp_path):
    f = tmp_path / "evol.json"
    f.write_text(json.dumps(RECS, indent=2))
    recs = list(iter_records(str(f)))
    assert [r.data for r in recs] == RECS
    assert recs[0].line == 2 and recs[1].line == 5  # each object starts on its own line
    # a tiny read size forces objects to straddle buffer refills
    from codetron.preprocess import readers

    chunks = list(readers._json_array_chunks(str(f), 100, 1 << 20, read_size=7))
    assert [o for c in chunks for _, o in c.items] == RECS


def test_json_array_broken(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('[{"text": "ok"},\n{"text": "unterminated}\n')
    out = list(iter_chunks(str(f)))
    assert isinstance(out[-1], ReadError) and "bad JSON" in out[-1].reason
    assert out[0].items[0][1] == {"text": "ok"}


def test_parquet_rows(tmp_path):
    f = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(RECS), f, row_group_size=3)
    recs = list(iter_records(str(f)))
    assert [r.data["text"] for r in recs] == [r["text"] for r in RECS] and recs[-1].line == 7


def test_parse_item_errors():
    with pytest.raises(ItemError, match="not UTF-8"):
        parse_item(b'{"text": "\xff"}\n')
    with pytest.raises(ItemError, match="bad JSON"):
        parse_item(b'{"text": \n')
    with pytest.raises(ItemError, match="expected a JSON object"):
        parse_item(b"[1, 2]\n")


def test_truncated_gzip_reports_line(tmp_path):
    data = gzip.compress("".join(json.dumps({"text": "x" * 50 + str(i)}) + "\n" for i in range(2000)).encode())
    f = tmp_path / "t.jsonl.gz"
    f.write_bytes(data[: len(data) // 2])
    out = list(iter_chunks(str(f)))
    err = out[-1]
    assert isinstance(err, ReadError) and "truncated archive" in err.reason and err.line > 1
    with pytest.raises(CodetronError, match=r"t\.jsonl\.gz:\d+: unreadable from here on"):
        list(iter_records(str(f)))


def test_expand_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.jsonl", "d/sub/a.jsonl.gz", "d/skip.txt", "c.parquet"):
        (tmp_path / name).write_bytes(b"")
    assert [p.split("/")[-1] for p in expand_inputs([str(tmp_path / "d")])] == ["b.jsonl", "a.jsonl.gz"]
    assert expand_inputs([str(tmp_path / "*.parquet")]) == [str(tmp_path / "c.parquet")]
    with pytest.raises(CodetronError, match="no such file"):
        expand_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(CodetronError, match="unsupported input type"):
        expand_inputs([str(tmp_path / "d" / "skip.txt")])
