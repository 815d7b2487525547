"""Published benchmark files on a node without internet: ``codetron eval data fetch TASK...``.

A machine with internet downloads each task's published files from the Hugging Face hub, at the
revision pinned below, into a cache folder; compute nodes then read that folder offline (shared file
system, or copy it). Nothing is downloaded at evaluation time: a task whose files are not in the
cache (and not given with ``--problems FILE``) stops in one line that names the fetch command.

Cache: ``--data-dir``, else ``$CODETRON_EVAL_DATA``, else ``~/.cache/codetron/eval-data``. One folder
per dataset config, ``<owner>/<name>@<revision>/<config>/``, holding the repository's files under
their own paths and ``manifest.json`` (source URLs, sizes, sha256, record count); the folder is
written whole or not at all, and a file whose sha256 no longer matches the manifest is refused.

The download goes through the hub's public HTTP API, as ``huggingface_hub`` does:
``$HF_ENDPOINT/api/datasets/<repo>/revision/<revision>`` lists the files (``siblings``) and confirms the
revision, ``$HF_ENDPOINT/datasets/<repo>/resolve/<revision>/<path>`` serves each file.
"""
from __future__ import annotations

import fnmatch
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codetron.errors import CodetronError
from codetron.fileio import atomic_dir, sha256_file

DATA_ENV = "CODETRON_EVAL_DATA"
"""Environment variable naming the cache folder (``--data-dir`` wins)."""
DEFAULT_DATA_DIR = Path("~/.cache/codetron/eval-data")
ENDPOINT_ENV = "HF_ENDPOINT"
"""The hub's base URL, as huggingface_hub reads it (a mirror, or a test server)."""
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Published:
    """One hub dataset repository as a task reads it, pinned to one revision."""

    repo: str
    """``owner/name`` on the Hugging Face hub."""
    revision: str
    """The commit every fetch takes; the hub must resolve it to itself."""
    patterns: tuple[str, ...]
    """Files to take (``fnmatch``; ``{config}`` is the dataset config): the first pattern that matches
    any file of the revision wins, so a repository that changed layout is still read the same way."""
    license: str
    """As the dataset card states it (the cache is for evaluation, not redistribution)."""
    pinned_by: str
    """Where the revision comes from."""


PUBLISHED: dict[str, Published] = {p.repo: p for p in (
    Published("bigcode/humanevalpack", "9a41762f73a8cb23bb5811b73d5aab164efcf378",
              ("{config}/test-*.parquet", "data/{config}/data/humanevalpack.jsonl"), "MIT",
              "a public pin of the parquet layout; the jsonl layout is the octopack repository's "
              "evaluation/create/humaneval-x/data/<lang>/data/humanevalpack.jsonl"),
    Published("openai/openai_humaneval", "7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544",
              ("openai_humaneval/test-*.parquet",), "MIT", "the revision lm-evaluation-harness users pin"),
    Published("google-research-datasets/mbpp", "4bb6404fdc6cacfda99d4ac4205087b89d32030c",
              ("{config}/test-*.parquet",), "CC-BY-4.0", "public pins of full/test-00000-of-00001.parquet"),
    Published("evalplus/humanevalplus", "d32357cf319e50e9c8d8dab5ea876c72b0fd321b",
              ("data/test-*.parquet", "test.jsonl"), "Apache-2.0", "public pins of HumanEval+ on the hub"),
    Published("evalplus/mbppplus", "b2d74c91837c3f2a20c1299ae98133cbe7cfa077",
              ("data/test-*.parquet",), "Apache-2.0", "public pins of MBPP+ on the hub"),
    Published("nuprl/MultiPL-E", "28441b6024e71d4a1c1c0f6bf171c935cd5a43f2",
              ("{config}/test-*.parquet",), "BSD-3-Clause (prompts: MIT, from HumanEval)",
              "bigcode-evaluation-harness bigcode_eval/tasks/multiple.py (load_dataset revision=)"),
)}
"""Every hub dataset a task reads, at its pinned revision (tasks name them in ``Task.dataset``)."""


def split_dataset(dataset: str) -> tuple[str, str, str]:
    """``owner/name[:config][@revision]`` -> (repo, config, revision); empty strings when absent."""
    name_config, _, revision = dataset.partition("@")
    repo, _, config = name_config.partition(":")
    return repo, config, revision


def data_dir(given: str | Path | None = None) -> Path:
    """The cache folder: ``given`` (``--data-dir``), else ``$CODETRON_EVAL_DATA``, else the default."""
    return Path(given or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def published(dataset: str) -> Published | None:
    repo, _, revision = split_dataset(dataset)
    pin = PUBLISHED.get(repo)
    if pin is not None and revision and revision != pin.revision:
        raise CodetronError(f"{dataset}: the task asks revision {revision}, the pin table says {pin.revision}")
    return pin


def entry_dir(dataset: str, root: str | Path | None = None) -> Path:
    """The cache folder of one dataset config at its pinned revision."""
    repo, config, _ = split_dataset(dataset)
    pin = published(dataset)
    if pin is None:
        raise CodetronError(f"{dataset}: no pinned published files known; pass --problems FILE")
    return data_dir(root) / f"{repo}@{pin.revision}" / (config or "default")


def cached_files(dataset: str, root: str | Path | None = None) -> list[Path] | None:
    """The fetched files of ``dataset`` in the cache (checked against their manifest), or None."""
    if published(dataset) is None:
        return None
    folder = entry_dir(dataset, root)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        paths = [(folder / f["path"], f["sha256"]) for f in files]
    except (ValueError, KeyError, TypeError):
        raise CodetronError(f"{manifest}: damaged manifest; fetch again (codetron eval data fetch)") from None
    for path, sha in paths:
        if not path.is_file() or sha256_file(path) != sha:
            raise CodetronError(f"{path}: missing or changed since it was fetched (sha256 differs from "
                                f"{manifest}); fetch again (codetron eval data fetch)")
    return [p for p, _ in paths]


def missing_message(task: str, dataset: str, root: str | Path | None = None, extra: str = "") -> str:
    """The one line a task without its data stops with."""
    where = data_dir(root)
    if published(dataset) is None:
        return f"{task}: no problems file: pass --problems FILE (the published {dataset} file){extra}"
    return (f"{task}: the published {dataset} files are not in {where}: run `codetron eval data fetch {task}` on a "
            f"machine with internet (same --data-dir or ${DATA_ENV}), or pass --problems FILE{extra}")


# ------------------------------------------------------------------------------------ download

def http_get(url: str, timeout: float = 60.0) -> bytes:
    """The body of ``url``; any failure is one ``CodetronError`` line naming the URL."""
    request = urllib.request.Request(url, headers={"User-Agent": "codetron-eval-data"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise CodetronError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CodetronError(f"{url}: cannot download ({reason}); fetch needs a machine with internet") from None


def fetch_dataset(dataset: str, root: str | Path | None = None, *, endpoint: str | None = None,
                  get: Callable[[str], bytes] = http_get, check: Callable[[Path], int] | None = None) -> Path:
    """Download one dataset config's published files at the pinned revision into the cache, unless
    they are there already; ``check(folder)`` (the task's loader) must read them, and returns the
    record count. Returns the cache folder."""
    pin = published(dataset)
    if pin is None:
        raise CodetronError(f"{dataset}: no pinned published files known; pass --problems FILE")
    try:
        if cached_files(dataset, root) is not None:
            return entry_dir(dataset, root)
    except CodetronError:
        pass  # a damaged or changed cache entry: fetched again below, replacing it whole
    repo, config, _ = split_dataset(dataset)
    base = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    api = f"{base}/api/datasets/{repo}/revision/{pin.revision}"
    try:
        info = json.loads(get(api))
        names = [s["rfilename"] for s in info["siblings"]]
    except (ValueError, KeyError, TypeError):
        raise CodetronError(f"{api}: not a hub dataset listing (expected JSON with siblings[].rfilename)") from None
    if info.get("sha") != pin.revision:
        raise CodetronError(f"{api}: the hub resolved revision {pin.revision} to {info.get('sha')}")
    for pattern in pin.patterns:
        chosen = sorted(fnmatch.filter(names, pattern.format(config=config)))
        if chosen:
            break
    else:
        wanted = " or ".join(p.format(config=config) for p in pin.patterns)
        raise CodetronError(f"{repo}@{pin.revision}: no file matches {wanted} ({len(names)} files listed)")
    final = entry_dir(dataset, root)
    with atomic_dir(final) as tmp:
        files = []
        for name in chosen:
            url = f"{base}/datasets/{repo}/resolve/{pin.revision}/{urllib.parse.quote(name)}"
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(get(url))
            files.append({"path": name, "url": url, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        records = check(tmp) if check is not None else None
        (tmp / "manifest.json").write_text(json.dumps(
            {"dataset": dataset, "repo": repo, "config": config, "revision": pin.revision, "license": pin.license,
             "records": records, "files": files}, indent=2) + "\n", encoding="utf-8")
    return final


def files_in(folder: Path) -> list[Path]:
    """The data files of a cache folder (being written or complete), in name order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
