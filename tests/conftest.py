"""Shared pytest setup: markers, how the suite splits over pytest-xdist workers, and the
interpreter/launcher of this checkout's environment. Tiny models, the fake OpenAI server and the
parity runner live in ``tests/helpers``."""
import os
import sys
from pathlib import Path

import pytest

from codetron import import_gc

import_gc.install()  # as `codetron` does: collection waits while the workers import torch and friends
import codetron.megatron_ext  # noqa: E402,F401  (first: megatron-core then imports as a run imports it, jit_off.py)

# re-exported: tests import them from here
from tests.helpers import durations
from tests.helpers.models import byte_level_bpe  # noqa: F401
from tests.helpers.openai_server import serving  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes ~4 s or more on a quiet 2-core machine (left out of `make test-fast`, part of `make test`)")
    config.addinivalue_line("markers", "slurm: needs a local Slurm cluster (the fixture starts one)")
    # The eval sandbox refuses to run programs without bubblewrap. The tests' programs are our own,
    # so where it cannot run they opt in to the weak sandbox, explicitly and visibly; the tests of
    # the refusal itself unset this.
    from codetron.eval.execution import SANDBOX_ENV, bubblewrap_status

    usable, why = bubblewrap_status()
    if not usable and SANDBOX_ENV not in os.environ:
        os.environ[SANDBOX_ENV] = "weak"
        print(f"tests: bubblewrap cannot run here ({why}); {SANDBOX_ENV}=weak for the tests' own programs",
              file=sys.stderr)


# --- pytest-xdist: `make test` runs `-n 2` ------------------------------------------------------------
# A worker builds the module- and session-scoped fixtures of the tests it runs, so every test file is one
# unit of work (its module fixtures are built once), and the files that need the same expensive session
# fixture, or a resource there is only one of, form one unit together. The unit of a test is chosen by
# test id alone (the scheduler below sees no fixtures), so FILE_GROUPS names the files, and the workers,
# who do see fixtures, check at collection that every test using a SHARED_FIXTURES fixture is in a file
# of its group. (xdist's own --dist loadgroup marks rewrite item._nodeid, which pytest 9 ignores.)

SHARED_FIXTURES = {
    # there is one local Slurm: two workers would start two clusters on the same ports
    "slurm_cluster": "slurm",
    # two 4-rank training runs (tests/convert/conftest.py)
    "run_tp2pp2": "convert-trained",
    "run_vpp": "convert-trained",
}
"""Session fixture -> the group every test using it must run in."""

FILE_GROUPS = {
    "tests/slurm/test_slurm_cluster.py": "slurm",
    "tests/convert/test_to_hf.py": "convert-trained",
    "tests/convert/test_units.py": "convert-trained",
}
"""Test file -> its group, for files that share a group; any other file is a group of its own."""

DURATIONS_KEY = durations.CACHE_KEY


def xdist_group(nodeid: str) -> str:
    """The unit of work a test runs in: its file's group, else its file."""
    path = nodeid.split("::", 1)[0]
    return FILE_GROUPS.get(path, path)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own; optional: pytest runs without xdist too
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's loadscope, with ``xdist_group`` as the scope: a whole group goes to one worker."""

        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    groups = {item.nodeid: xdist_group(item.nodeid) for item in items}
    wrong = sorted({f"{item.nodeid.split('::')[0]} uses {name}: add it to FILE_GROUPS as {group!r}"
                    for item in items for name, group in SHARED_FIXTURES.items()
                    if name in getattr(item, "fixturenames", ()) and groups[item.nodeid] != group})
    if wrong:
        raise pytest.UsageError("tests/conftest.py: a shared fixture outside its xdist group: " + "; ".join(wrong))
    if hasattr(config, "workerinput"):
        # In the workers (they collect, and must agree on the order): the longest groups first, so a
        # long file does not start last and run alone. A test's seconds in the last run that had it
        # (this machine's pytest cache, else the committed tests/durations.json), else 30 s for a slow
        # one and 1 s for the rest.
        cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
        last = durations.committed()
        last.update(cache.get(DURATIONS_KEY, {}) if cache is not None else {})
        cost: dict[str, float] = {}
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            group, guess = groups[item.nodeid], (30.0 if item.get_closest_marker("slow") else 1.0)
            cost[group] = cost.get(group, 0.0) + last.get(item.nodeid, guess)
            first.setdefault(group, i)
        # stable, and a group's tests stay together and in file order
        items.sort(key=lambda item: (-cost[groups[item.nodeid]], first[groups[item.nodeid]]))


_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    config, cache = session.config, getattr(session.config, "cache", None)
    if _seconds and not hasattr(config, "workerinput") and cache is not None:
        # merged: a partial run (-m, -k, one file) updates only the tests it ran
        cache.set(DURATIONS_KEY, {**cache.get(DURATIONS_KEY, {}), **_seconds})


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def subprocess_env(**extra) -> dict:
    """Environment for child processes: this checkout first on PYTHONPATH, one thread per rank."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_check_script(script: str, work) -> dict:
    """Run a numeric-check script (``python SCRIPT WORKDIR``) in a clean child and return the JSON
    object it prints last: model checks run outside pytest so megatron's global state stays theirs."""
    import json
    import subprocess

    proc = subprocess.run([PYTHON, str(ROOT / script), str(work)], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
