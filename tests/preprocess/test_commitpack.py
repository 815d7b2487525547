import json

import pytest

from codetron.preprocess.commitpack import RULES, CommitFilterConfig, check_commit, check_token_count
from tests.preprocess.conftest import SAMPLES

OLD = "def paginate(items, page, n):\n    return items[page * n:(page + 1) * n]\n"
NEW = "def paginate(items, page, n):\n    return items[(page - 1) * n:page * n]\n"


def rec(subject, old=OLD, new=NEW, message=None):
    return {"old_contents": old, "new_contents": new, "subject": subject, "message": message or subject}


GOOD = "Fix off-by-one error in the pagination helper"

# rule -> (kept example, dropped example): each differs from the other only in what the rule checks
CASES = {
    "old_file_too_long": (rec(GOOD, old="x\n" * 24_999), rec(GOOD, old="x\n" * 25_000)),
    "unchanged": (rec(GOOD), rec(GOOD, new=OLD)),
    "subject_length": (rec("Fix it now ok"), rec("Fix a b c")),
    "subject_too_few_words": (rec("Fix the pagination helper"), rec("Fix paginationhelperbug")),
    "not_capitalized": (rec(GOOD), rec(GOOD.lower())),
    "not_imperative": (rec("Handle the last page in paginate"), rec("Handled the last page in paginate")),
    "bad_message": (rec("Update the pagination docstring text"),
                    rec("Update the pagination docstring text", message="Update the pagination docstring text\n\nSigned-off-by: A <a@b.c>")),
    "version_or_hash": (rec("Add version check to the loader"), rec("Add support for the 1.2.3 loader")),
    "cherry_pick": (rec(GOOD), rec(GOOD, message=GOOD + "\n\n(cherry picked from commit abcdef1234567)")),
    "first_person": (rec("Fix the bug in the pager"), rec("Fix the bug we found in the pager")),
    "url": (rec(GOOD, message=GOOD + "\n\nSee issue 12"), rec(GOOD, message=GOOD + "\n\nSee https://example.org/12")),
    "wip": (rec("Add the pagination helper module"), rec("Add the pagination helper module WIP")),
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
    assert check_commit(rec("Revert the change from 3f9a2c7e in paginate"), CommitFilterConfig()) == "version_or_hash"
    assert check_commit(rec("Revert the change from deadline in paginate"), CommitFilterConfig()) is None


def test_bump_version_dropped_with_probability():
    cfg = CommitFilterConfig()
    r = rec("Bump version of the pagination package")
    drops = sum(check_commit(r, cfg, ("f", i)) == "bump_version" for i in range(2000))
    assert 0.87 < drops / 2000 < 0.93  # 0.9 +- 3 sigma
    assert check_commit(r, cfg, ("f", 7)) == check_commit(r, cfg, ("f", 7))  # reproducible
    assert check_commit(r, CommitFilterConfig(bump_drop_prob=0.0), ("f", 1)) is None
    assert check_commit(rec("Fix the pagination helper bug"), cfg) is None


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
