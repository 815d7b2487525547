"""`datasets` inputs (save_to_disk directories, parquet, hub names) and --split-sentences, offline.

Every input kind must give the bytes the same records give as jsonl; sentence splitting must put
one sentence per sequence inside its document and keep the ids equal to the per-sentence encodings.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codetron.errors import CodetronError, ConfigError
from codetron.preprocess.config import CodeConfig, SentenceConfig
from codetron.preprocess.pipeline import run
from codetron.preprocess.readers import expand_inputs
from tests.preprocess.conftest import REPO, make_cfg, read_docs, write_jsonl

datasets = pytest.importorskip("datasets", reason="the `datasets` package (codetron[data]) is not installed")

RECORDS = [
    {"content": f"def f{i}(x):\n    return x * {i}  # é ü 漢\n", "max_stars_repo_name": f"org/repo{i % 3}",
     "max_stars_repo_path": f"src/m{i}.py", "max_stars_count": (i * 37) % 2000 if i % 4 else None, "lang": "Python"}
    for i in range(11)
]
# p = 1 keeps every metadata field: the per-record coins hash the input's file name, which differs
# between a .jsonl file and a dataset directory, and the comparison is about the reader.
ALL_FIELDS = CodeConfig(p_repo=1.0, p_path=1.0, p_stars=1.0)


def _columns(records):
    return {k: [r[k] for r in records] for k in records[0]}


def _outputs(prefix):
    return [open(f"{prefix}{ext}", "rb").read() for ext in (".bin", ".idx")]


def test_save_to_disk_and_parquet_give_the_jsonl_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = write_jsonl(tmp_path / "recs.jsonl", RECORDS)
    datasets.Dataset.from_dict(_columns(RECORDS)).save_to_disk(str(tmp_path / "ds"), num_shards=3)
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "recs.parquet", row_group_size=4)
    # chunks of 4 records cut across the dataset's shards and the parquet row groups
    ref = run(make_cfg([src], tmp_path / "ref", chunk_docs=4, code=ALL_FIELDS))
    assert ref["docs_kept"] == len(RECORDS)
    for name, inp in (("disk", tmp_path / "ds"), ("parquet", tmp_path / "recs.parquet")):
        s = run(make_cfg([inp], tmp_path / name, chunk_docs=4, code=ALL_FIELDS))
        assert s["docs_in"] == len(RECORDS) and s["errors_total"] == 0, s
        assert _outputs(tmp_path / name) == _outputs(tmp_path / "ref"), name


def test_dataset_directories_inside_a_tree_are_one_input_each(tmp_path):
    tree = tmp_path / "tree"
    datasets.Dataset.from_dict(_columns(RECORDS[:5])).save_to_disk(str(tree / "a_ds"))
    write_jsonl(tree / "b.jsonl", RECORDS[5:])
    # its state.json / dataset_info.json are metadata, not records
    assert expand_inputs([str(tree)]) == [str(tree / "a_ds"), str(tree / "b.jsonl")]
    run(make_cfg([tree], tmp_path / "tree_out", code=ALL_FIELDS))
    run(make_cfg([tree / "a_ds", tree / "b.jsonl"], tmp_path / "named", code=ALL_FIELDS))
    assert _outputs(tmp_path / "tree_out") == _outputs(tmp_path / "named")
    assert len(read_docs(tmp_path / "tree_out")) == len(RECORDS)

    ds = datasets.Dataset.from_dict(_columns(RECORDS[:2]))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(CodetronError, match=r"DatasetDict \(splits: (train, test|test, train)\).*dd/(train|test)"):
        expand_inputs([str(tmp_path / "dd")])


def test_damaged_arrow_shard_keeps_earlier_rows_and_names_the_row(tmp_path):
    from codetron.preprocess.readers import ReadError, iter_chunks

    datasets.Dataset.from_dict(_columns(RECORDS)).save_to_disk(str(tmp_path / "ds"), num_shards=2)
    second = sorted((tmp_path / "ds").glob("data-*.arrow"))[1]
    second.write_bytes(second.read_bytes()[:200])
    out = list(iter_chunks(str(tmp_path / "ds"), max_items=4))
    rows = [line for c in out if not isinstance(c, ReadError) for line, _ in c.items]
    assert rows == list(range(1, 7))  # save_to_disk puts rows 1-6 in the first of two shards
    assert isinstance(out[-1], ReadError) and out[-1].line == 7 and "unreadable from here on" in out[-1].reason


def test_hub_name_streams_with_its_config_split_and_data_dir(tmp_path, monkeypatch):
    """No network here: load_dataset is replaced by a stand-in that checks the call and streams
    the records in column batches, as an IterableDataset does."""
    calls = []

    class Streamed:
        def iter(self, batch_size):
            for i in range(0, len(RECORDS), batch_size):
                yield _columns(RECORDS[i : i + batch_size])

    def load_dataset(path, name=None, **kw):
        calls.append((path, name, kw))
        return Streamed()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    name = "hf://bigcode/the-stack-smol@v1.0/data/python:cfg:valid"
    run(make_cfg([write_jsonl(tmp_path / "recs.jsonl", RECORDS)], tmp_path / "ref", code=ALL_FIELDS))
    s = run(make_cfg([name], tmp_path / "hub", code=ALL_FIELDS, chunk_docs=5))
    assert s["docs_kept"] == len(RECORDS) and s["inputs"] == [name]
    assert _outputs(tmp_path / "hub") == _outputs(tmp_path / "ref")
    assert calls and all(c == ("bigcode/the-stack-smol", "cfg", {"split": "valid", "data_dir": "data/python",
                                                               "revision": "v1.0", "streaming": True}) for c in calls)
    with pytest.raises(CodetronError, match="expected hf://OWNER/NAME"):
        expand_inputs(["hf://no-owner"])


def test_hub_name_offline_is_one_line_naming_the_dataset(tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "codetron", "preprocess", "text", "hf://someone/some-corpus::test",
                           "-o", str(tmp_path / "o"), "--quiet"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "hf://someone/some-corpus::test: cannot stream dataset someone/some-corpus from the Hugging Face hub" in lines[0]
    assert "HF_DATASETS_OFFLINE" in lines[0]
    assert not list(tmp_path.glob("o.*"))


# --- --split-sentences ------------------------------------------------------------------------

TEXT = "The quick brown fox jumps. It was fast!\nWas it seen? Nobody knows.\n\nA new paragraph starts here."
SENTENCES = ["The quick brown fox jumps.", "It was fast!", "Was it seen?", "Nobody knows.", "A new paragraph starts here."]
WITH_NEWLINES = ["The quick brown fox jumps. ", "It was fast!\n", "Was it seen? ", "Nobody knows.\n\n", "A new paragraph starts here."]
DOCS = [{"text": TEXT}, {"text": "  One sentence without a stop"}, {"text": "This is Dr. Smith. He is here."}]


def _split_cfg(tmp_path, name, workers=1, punkt_model="default", **sentences):
    """Untrained Punkt unless told: the machine's nltk data must not change what is expected."""
    cfg = make_cfg([write_jsonl(tmp_path / "docs.jsonl", DOCS)], tmp_path / name, mode="text", workers=workers)
    cfg.job.sentences = SentenceConfig(split=True, punkt_model=punkt_model, **sentences)
    return cfg


@pytest.mark.parametrize("keep_newlines, expected", [(False, SENTENCES), (True, WITH_NEWLINES)])
def test_split_sentences_one_sequence_per_sentence(tmp_path, tok, keep_newlines, expected):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    s = run(_split_cfg(tmp_path, "ss", keep_newlines=keep_newlines))
    assert s["sentence_splitter"] == "nltk Punkt with default parameters (--punkt-model default)"
    # untrained Punkt knows no abbreviations: "Dr." ends a sentence (a punkt_tab model fixes it)
    want = [expected, ["  One sentence without a stop"], ["This is Dr.", "Smith.", "He is here."]]
    if keep_newlines:
        want[2] = ["This is Dr. ", "Smith. ", "He is here."]
    ds = IndexedDataset(str(tmp_path / "ss"))
    assert list(ds.document_indices) == [0, 5, 6, 9]
    docs = read_docs(tmp_path / "ss")
    for doc, sentences in zip(docs, want):
        assert [list(seq) for seq in doc] == [tok.encode(t) for t in sentences[:-1]] + [tok.encode(sentences[-1]) + [tok.eod]]
    # the document's ids are the concatenation of the per-sentence encodings, EOD once at the end
    flat = np.concatenate(docs[0])
    assert list(flat) == [i for t in expected for i in tok.encode(t)] + [tok.eod]
    assert list(ds.sequence_lengths) == [len(seq) for doc in docs for seq in doc]


def test_split_sentences_workers_and_gpt_dataset(tmp_path, tok):
    """The worker pool gives the in-process bytes, and megatron-core's GPTDataset reads the
    sentence-level dataset: one sample spanning it is a permutation of whole sentences."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    run(_split_cfg(tmp_path, "one"))
    run(_split_cfg(tmp_path, "two", workers=2))
    assert _outputs(tmp_path / "one") == _outputs(tmp_path / "two")

    sequences = [list(seq) for doc in read_docs(tmp_path / "one") for seq in doc]
    total = sum(map(len, sequences))
    cfg = GPTDatasetConfig(random_seed=3, sequence_length=total - 1, tokenizer=tok, blend=([str(tmp_path / "one")], None),
                           split="100,0,0", reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
                           path_to_cache=str(tmp_path / "cache"))
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [1, None, None], lambda: True, cfg).build()
    assert GPTDataset.numel_low_level_dataset(train.dataset) == len(sequences)  # sampled by sentence
    sample = train[0]
    stream = list(np.asarray(sample["tokens"])) + [int(sample["labels"][-1])]
    rest = sorted(sequences, key=len, reverse=True)
    while stream:  # peel whole sentences off the front, each used once
        hit = next((s for s in rest if stream[: len(s)] == s), None)
        assert hit is not None, f"sample does not start with a whole sentence: {stream[:12]}"
        rest.remove(hit)
        stream = stream[len(hit):]
    assert rest == []


def _punkt_tab(root, abbrevs=("dr",)):
    root.mkdir(parents=True)
    (root / "abbrev_types.txt").write_text("".join(a + "\n" for a in abbrevs))
    for name in ("collocations.tab", "ortho_context.tab", "sent_starters.txt"):
        (root / name).write_text("")
    return root


def test_punkt_model_from_a_directory_or_the_nltk_data_path(tmp_path, tok, monkeypatch):
    import nltk

    model = _punkt_tab(tmp_path / "model")
    s = run(_split_cfg(tmp_path, "m", punkt_model=str(model)))
    assert s["sentence_splitter"] == f"nltk Punkt, model {model} (--punkt-model)"
    third = read_docs(tmp_path / "m")[2]
    assert [list(seq) for seq in third] == [tok.encode("This is Dr. Smith."), tok.encode("He is here.") + [tok.eod]]

    # the lookup on nltk's data path (what NLTK_DATA sets), pinned for the workers and the summary
    data = tmp_path / "nltk_data"
    found = _punkt_tab(data / "tokenizers" / "punkt_tab" / "english")
    monkeypatch.setattr(nltk.data, "path", [str(data)])
    s = run(_split_cfg(tmp_path, "d", punkt_model=None, workers=2))
    assert s["sentence_splitter"] == f"nltk Punkt, model punkt_tab/english from {found}"
    assert s["config"]["sentences"]["punkt_model"] == str(found)
    assert _outputs(tmp_path / "d") == _outputs(tmp_path / "m")

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    s = run(_split_cfg(tmp_path, "e", punkt_model=None))
    assert s["sentence_splitter"].startswith("nltk Punkt with default parameters: no punkt_tab/english model in")
    assert s["config"]["sentences"]["punkt_model"] == "default"
    assert read_docs(tmp_path / "e")[2][0].size == len(tok.encode("This is Dr."))


def test_split_sentences_bad_settings_fail_before_work(tmp_path):
    bad_model = tmp_path / "half"
    bad_model.mkdir()
    (bad_model / "abbrev_types.txt").write_text("dr\n")
    with pytest.raises(ConfigError, match=r"--punkt-model .*half: not a punkt_tab directory \(missing collocations.tab"):
        run(_split_cfg(tmp_path, "x", punkt_model=str(bad_model)))
    pickle = tmp_path / "english.pickle"
    pickle.write_bytes(b"\x80\x04N.")
    with pytest.raises(ConfigError, match="pickled Punkt models are not loaded"):
        run(_split_cfg(tmp_path, "x", punkt_model=str(pickle)))
    cfg = _split_cfg(tmp_path, "x")
    cfg.job.mode = "code"
    with pytest.raises(ConfigError, match="--split-sentences is for text mode"):
        run(cfg)
    assert not list(tmp_path.glob("x.*"))


def test_cli_split_sentences_flags(tmp_path, capsys):
    from codetron.cli import main as codetron_main

    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    argv = ["preprocess", "text", str(src), "-o", str(tmp_path / "c"), "--workers", "1", "--quiet", "--no-decontaminate"]
    assert codetron_main(argv + ["--split-sentences", "--keep-newlines", "--punkt-model", "default"]) == 0
    assert capsys.readouterr().err == "split-sentences: nltk Punkt with default parameters (--punkt-model default)\n"
    summary = json.loads((tmp_path / "c.summary.json").read_text())
    assert summary["config"]["sentences"] == {"split": True, "keep_newlines": True, "lang": "english", "punkt_model": "default"}
    assert summary["sequences"] == 9 and summary["docs_kept"] == 3
    assert codetron_main(argv + ["--keep-newlines"]) == 2
    assert "--keep-newlines and --punkt-model need --split-sentences" in capsys.readouterr().err
