"""codetron.records: the one jsonl reader/writer stages share, and its one-line errors."""
from __future__ import annotations

import gzip
import json

import pytest

from codetron.errors import CodetronError
from codetron.records import cut_torn_tail, read_jsonl, write_jsonl


def test_reads_plain_and_gz_with_line_numbers(tmp_path):
    text = '{"a": 1}\n\n   \n{"a": 2, "s": "é"}\n'
    (tmp_path / "r.jsonl").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "r.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(text)
    expected = [(1, {"a": 1}), (4, {"a": 2, "s": "é"})]
    assert list(read_jsonl(tmp_path / "r.jsonl")) == expected
    assert list(read_jsonl(tmp_path / "r.jsonl.gz")) == expected


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n{"a": \n', r"bad.jsonl:2: bad JSON \(Expecting value at column 7\); fix it"),
    (b'{"a": 1}\n\n[1, 2]\n', r"bad.jsonl:3: expected a JSON object, got list; fix it"),
    (b'{"a": 1}\n{"a": "\xff"}\n', r"bad.jsonl:2: not UTF-8 \(byte 7: invalid start byte\); fix it"),
])
def test_bad_lines_are_one_line_errors_naming_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_bytes(content)
    with pytest.raises(CodetronError, match=message) as info:
        list(read_jsonl(tmp_path / "bad.jsonl", hint="; fix it"))
    assert "\n" not in str(info.value)


def test_missing_file_names_what_it_is(tmp_path):
    with pytest.raises(CodetronError, match=r"nope.jsonl: teacher file not found"):
        next(read_jsonl(tmp_path / "nope.jsonl", what="teacher"))


def test_write_is_atomic_and_round_trips(tmp_path):
    rows = [{"k": i, "t": "ü"} for i in range(3)]
    assert write_jsonl(tmp_path / "out.jsonl", rows, ensure_ascii=False) == 3
    assert "ü" in (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert [r for _, r in read_jsonl(tmp_path / "out.jsonl")] == rows

    def failing():
        yield {"k": 0}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "half.jsonl", failing())
    assert list(tmp_path.iterdir()) == [tmp_path / "out.jsonl"]  # no half-written file, no temp left


def test_cut_torn_tail(tmp_path):
    path = tmp_path / "log.jsonl"
    assert cut_torn_tail(path) == 0  # missing file: nothing to do
    whole = json.dumps({"a": 1}) + "\n"
    path.write_text(whole + '{"a": 2, "b"')
    assert cut_torn_tail(path) == len('{"a": 2, "b"')
    assert path.read_text() == whole
    assert cut_torn_tail(path) == 0
