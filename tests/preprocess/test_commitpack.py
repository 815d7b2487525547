import json

import pytest

from codetron.preprocess.commitpack import RULES, CommitFilterConfig, check_commit, check_token_count
from tests.preprocess.conftest import SAMPLES

OLD = "def paginate(items, page, n):\n    return items[page * n:(page + 1) * n]\n"
NEW = "def paginate(items, page, n):\n    return items[(page - 1) * n:page * n]\n"


def rec(subject, old=OLD, new=NEW, message=None, new_file=None):
    r = {"old_contents": old, "new_contents": new, "subject": subject, "message": message or subject}
    if new_file:
        r["new_file"] = new_file
    return r


GOOD = "Fix off-by-one error in the pagination helper"

# rule -> (kept example, dropped example): each differs from the other only in what the rule checks
CASES = {
    "old_file_too_long": (rec(GOOD, old="x\n" * 24_999), rec(GOOD, old="x\n" * 25_000)),
    "new_file_empty": (rec(GOOD, new="\n"), rec(GOOD, new="")),
    "unchanged": (rec(GOOD), rec(GOOD, new=OLD)),
    "issue_reference": (rec(GOOD + " of the list"), rec(GOOD + " (#123)")),
    "filename_in_subject": (rec(GOOD, new_file="web/paging.py"), rec(GOOD, new_file="web/pagination.py")),
    "subject_length": (rec("Fix ab c d e"), rec("Fix ab c d")),
    "subject_too_few_words": (rec("Fix the pagination helper now"), rec("Fix the pagination helper")),
    "not_capitalized": (rec(GOOD), rec(GOOD.lower())),
    "not_imperative": (rec("Handle the last page in paginate"), rec("Handled the last page in paginate")),
    "bad_message": (rec("Update the pagination docstring text"), rec("Update the docstring text after code review")),
    "version_or_hash": (rec("Add version check to the loader"), rec("Add support for the 1.2.3 loader")),
    "cherry_pick": (rec(GOOD, message=GOOD + "\n\n(cherry picked from commit abcdef1234567)"),
                    rec(GOOD + " (cherry picked from commit abcdef1)")),
    "first_person": (rec("Fix the bug we found in the pager"), rec("Fix the bug i found in the pager")),
    "url": (rec(GOOD, message=GOOD + "\n\nSee https://example.org/12"), rec(GOOD + " from https://example.org/12")),
    "wip": (rec('Remove "Work in progress caveat"'), rec("Add the pagination helper module WIP")),
}


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_kept_and_dropped(rule):
    cfg = CommitFilterConfig()
    kept, dropped = CASES[rule]
    assert check_commit(kept, cfg, ("f", 1)) is None
    assert check_commit(dropped, cfg, ("f", 1)) == rule
    # switched off, the same record passes this rule
    assert check_commit(dropped, CommitFilterConfig(disabled=frozenset({rule})), ("f", 1)) != rule


def test_hash_in_subject():
    sha = "3f9a2c7e" * 5
    assert check_commit(rec(f"Revert the change from {sha} in paginate"), CommitFilterConfig()) == "version_or_hash"
    assert check_commit(rec("Revert the change from deadline in paginate"), CommitFilterConfig()) is None


# The commits issue 14 found wrongly dropped, and OctoPack's verdict on each.
KEPT = [
    "Close the pager temp file before unlinking it",  # "close" is missing from OctoPack's verb list
    "Set blocking I/O flags for FreeBSD",  # "I/O" is not the pronoun I
    'Remove "Work in progress caveat"',  # a quoted name, not a work-in-progress commit
    "Fix wiping of the cache directory on exit",  # OctoPack's substring test sees "wip" in "wiping"
    "Avoid a second lookup of the page size",
    "Speed up the pagination of long lists",  # a two-word opening from OctoPack's list
]
DROPPED = [
    ("Closed the pager temp file before unlinking", "not_imperative"),
    ("Merge the pagination helpers into one module", "bad_message"),  # CommitPack drops every "merge..."
    ("Fix the pagination bug I introduced yesterday", "first_person"),
    ("Fix the pagination helper, thanks to Ana for the report", "bad_message"),
    ("Fix pagination crash reported in issue 159", "issue_reference"),
    ("Add pagination helpers for the admin panel (WIP)", "wip"),
    ("Release the pagination fix as 2.4.1 today", "version_or_hash"),
]


@pytest.mark.parametrize("subject", KEPT)
def test_issue_cases_are_kept(subject):
    assert check_commit(rec(subject, new_file="src/pager.py" if "pager" not in subject else "src/term.c"), CommitFilterConfig()) is None


@pytest.mark.parametrize("subject,rule", DROPPED)
def test_drops_name_their_rule(subject, rule):
    assert check_commit(rec(subject), CommitFilterConfig()) == rule


def test_octopack_verb_list_is_the_published_one():
    from codetron.preprocess.commitpack import EXTRA_VERBS, IMPERATIVE_VERBS, OCTOPACK_VERBS

    assert len(OCTOPACK_VERBS) == 257 and OCTOPACK_VERBS < IMPERATIVE_VERBS
    assert {"troubleshoot", "decomplexify", "whitelist", "speed up", "deal with", "brush up"} <= OCTOPACK_VERBS
    assert not {"close", "open", "warn", "pass", "fill", "do"} & OCTOPACK_VERBS
    assert {"close", "open", "warn", "pass", "fill", "do"} <= EXTRA_VERBS
    octopack = CommitFilterConfig(verbs="octopack")
    assert check_commit(rec(KEPT[0]), octopack) == "not_imperative"  # exactly OctoPack: "Close" is dropped
    assert check_commit(rec(KEPT[1]), octopack) is None


def test_subject_cleaned_like_octopack():
    from codetron.preprocess.commitpack import clean_subject

    assert clean_subject("[benchmark] Fix billing project [skip ci]") == "Fix billing project"
    assert clean_subject("demo/python/cmd.py: Fix struct.unpack format for Python 3") == "Fix struct.unpack format for Python 3"
    assert clean_subject("Fix the pager [ci skip] [WIP]") == "Fix the pager"
    # the checks see the cleaned subject: a "docs:" prefix is not the opening verb
    assert check_commit(rec("docs: Fix the pagination helper docstring"), CommitFilterConfig()) is None
    assert check_commit(rec("pager: fix the off by one error"), CommitFilterConfig()) == "not_capitalized"


def test_bump_version_dropped_with_probability():
    cfg = CommitFilterConfig()
    r = rec("Bump version of the pagination package")
    drops = sum(check_commit(r, cfg, ("f", i)) == "bump_version" for i in range(2000))
    assert 0.87 < drops / 2000 < 0.93  # 0.9 +- 3 sigma
    assert check_commit(r, cfg, ("f", 7)) == check_commit(r, cfg, ("f", 7))  # reproducible
    assert check_commit(r, CommitFilterConfig(bump_drop_prob=0.0), ("f", 1)) is None
    assert check_commit(rec("Fix the pagination helper bug"), cfg) is None
    for prefix in ("Set version of", "Update version of"):  # OctoPack's three openings
        assert sum(check_commit(rec(f"{prefix} the pagination package"), cfg, ("f", i)) == "bump_version" for i in range(200)) > 150


def test_token_count_rule():
    cfg = CommitFilterConfig()
    assert check_token_count(49, cfg) == "token_count" and check_token_count(769, cfg) == "token_count"
    assert check_token_count(50, cfg) is None and check_token_count(768, cfg) is None
    assert check_token_count(10, CommitFilterConfig(disabled=frozenset({"token_count"}))) is None


def test_unknown_rule_is_config_error():
    from codetron.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown CommitPackFT rule"):
        CommitFilterConfig(disabled=frozenset({"nope"}))


def test_every_rule_has_a_case():
    assert set(CASES) | {"bump_version", "token_count"} == set(RULES)


def test_bundled_sample_drops_each_rule(tmp_path):
    """The CommitPack sample covers every rule; the pipeline counts exactly the planted drops."""
    from collections import Counter

    from codetron.preprocess.pipeline import run
    from tests.preprocess.conftest import make_cfg, read_docs

    s = run(make_cfg([SAMPLES / "commitpack_sample.jsonl"], tmp_path / "c", mode="commitpack"))
    expected = Counter(json.loads((SAMPLES / "commitpack_sample_expected_drops.json").read_text()))
    assert s["dropped"] == dict(expected) and set(expected) == set(RULES)
    assert s["docs_kept"] == 8 == len(read_docs(tmp_path / "c"))


def test_documents_hold_the_cleaned_subject(tmp_path, tok):
    from codetron.preprocess.pipeline import run
    from tests.preprocess.conftest import make_cfg, read_docs, write_jsonl

    r = json.loads((SAMPLES / "commitpack_sample.jsonl").read_text().splitlines()[3])
    clean = r["subject"]
    r["subject"] = r["message"] = f"[web] {clean} [skip ci]"
    run(make_cfg([write_jsonl(tmp_path / "c.jsonl", [r])], tmp_path / "c", mode="commitpack"))
    (doc,) = read_docs(tmp_path / "c")
    assert f"<commit_msg>{clean}<commit_after>" in tok.decode(doc[0])
