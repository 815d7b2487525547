import json
import subprocess

import pytest

from codetron.preprocess.gitcommits import GitCommitsConfig, export, iter_commit_records, lang_of

OLD = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n" * 3
NEW = OLD.replace("return w * h", "if w < 0 or h < 0:\n        raise ValueError('negative size')\n    return w * h")


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "myproj"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "dev@example.org")
    git(r, "config", "user.name", "Dev")
    (r / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, ...\n")
    (r / "shapes.py").write_text(OLD)
    (r / "logo.bin").write_bytes(b"\x89PNG\x00\x01")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "Add shape helpers")
    (r / "shapes.py").write_text(NEW)
    git(r, "commit", "-q", "-am", "Reject negative sizes in area\n\nA negative width is always a caller bug.")
    git(r, "mv", "shapes.py", "geometry.py")
    git(r, "commit", "-q", "-m", "Rename shapes module to geometry")
    git(r, "rm", "-q", "logo.bin")
    git(r, "commit", "-q", "-m", "Remove the unused logo")
    return r


def test_records_from_history(repo):
    recs = list(iter_commit_records(repo, GitCommitsConfig()))
    # newest first; deletion and the binary file are skipped
    assert [(r["subject"], r["old_file"], r["new_file"]) for r in recs] == [
        ("Rename shapes module to geometry", "shapes.py", "geometry.py"),
        ("Reject negative sizes in area", "shapes.py", "shapes.py"),
        ("Add shape helpers", "LICENSE", "LICENSE"),
        ("Add shape helpers", "shapes.py", "shapes.py"),
    ]
    fix = recs[1]
    assert fix["old_contents"] == OLD and fix["new_contents"] == NEW
    assert fix["message"] == "Reject negative sizes in area\n\nA negative width is always a caller bug."
    assert fix["lang"] == "Python" and fix["license"] == "mit" and fix["repos"] == "myproj" and len(fix["commit"]) == 40
    assert recs[3]["old_contents"] == ""  # root commit: a new file
    # the newest two commits: a deletion (skipped) and the rename
    assert len(list(iter_commit_records(repo, GitCommitsConfig(max_commits=2)))) == 1


def test_export_then_commitpack_pipeline(repo, tmp_path, tok):
    from codetron.preprocess.pipeline import run
    from tests.preprocess.conftest import make_cfg, read_docs

    out = tmp_path / "commits.jsonl"
    assert export(repo, out, GitCommitsConfig()) == 4
    s = run(make_cfg([out], tmp_path / "ds", mode="commitpack"))
    # CommitPackFT keeps only the real edit: the rename has identical contents and
    # "Add shape helpers" (two files) has fewer than four words
    assert s["dropped"] == {"unchanged": 1, "subject_too_few_words": 2} and s["docs_kept"] == 1
    texts = [tok.decode(d[0]) for d in read_docs(tmp_path / "ds")]
    assert any(t.startswith("<commit_before>" + OLD + "<commit_msg>Reject negative sizes in area<commit_after>" + NEW) for t in texts)


def test_not_a_repo(tmp_path):
    from codetron.errors import CodetronError

    with pytest.raises(CodetronError, match="git"):
        list(iter_commit_records(tmp_path, GitCommitsConfig()))


def test_lang_of():
    assert lang_of("a/b.py") == "Python" and lang_of("x/Makefile") == "Makefile" and lang_of("x.unknown") is None


def test_non_ascii_and_odd_file_names_are_exported(repo):
    """git quotes such names unless -z is used; they must not be dropped."""
    names = ["café.py", "日本/データ.py", "with space's \"quote\".py", "tab\tname.py"]
    for i, name in enumerate(names):
        path = repo / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n", encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Add modules with non-ASCII names")
    for name in names:
        (repo / name).write_text((repo / name).read_text(encoding="utf-8") + "EXTRA = True\n", encoding="utf-8")
    git(repo, "mv", "café.py", "crème.py")
    (repo / "crème.py").write_text("VALUE_0 = 0\nRENAMED = 1\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Extend the modules with non-ASCII names")
    recs = list(iter_commit_records(repo, GitCommitsConfig(max_commits=2)))
    latest = {(r["old_file"], r["new_file"]): r for r in recs if r["subject"].startswith("Extend")}
    assert set(latest) == {("café.py", "crème.py")} | {(n, n) for n in names[1:]}
    assert latest[("café.py", "crème.py")]["old_contents"] == "VALUE_0 = 0\n"
    assert latest[("日本/データ.py", "日本/データ.py")]["new_contents"] == "VALUE_1 = 1\nEXTRA = True\n"
    added = {r["new_file"] for r in recs if r["subject"].startswith("Add modules")}
    assert added == set(names)
    out = repo.parent / "commits.jsonl"
    assert export(repo, out, GitCommitsConfig(max_commits=2)) == len(recs)
    assert "日本/データ.py" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("url,expected", [
    ("https://github.com/bigcode-project/octopack.git", "bigcode-project/octopack"),
    ("https://user:ghp_secret@github.com/bigcode-project/octopack", "bigcode-project/octopack"),
    ("git@github.com:bigcode-project/octopack.git", "bigcode-project/octopack"),
    ("ssh://git@gitlab.example.org:2222/team/tool.git/", "team/tool"),
    ("/srv/git/team/tool.git", "team/tool"),
    ("file:///srv/git/team/tool", "team/tool"),
])
def test_repos_is_owner_slash_name(repo, url, expected):
    git(repo, "remote", "add", "origin", url)
    recs = list(iter_commit_records(repo, GitCommitsConfig(max_commits=2)))
    assert recs and {r["repos"] for r in recs} == {expected}
    assert all("secret" not in json.dumps(r) for r in recs)
