"""Shared pytest setup: markers, how the suite splits over pytest-xdist workers, and the
interpreter/launcher of this checkout's environment. Tiny models, the fake OpenAI server and the
parity runner live in ``tests/helpers``."""
import os
import sys
from pathlib import Path

import pytest

# re-exported: tests import them from here
from tests.helpers.models import byte_level_bpe  # noqa: F401
from tests.helpers.openai_server import serving  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still part of `make test`)")
    config.addinivalue_line("markers", "slurm: needs a local Slurm cluster (the fixture starts one)")
    config.addinivalue_line("markers", "xdist_group(name): run with the other tests of this group on one worker")
    # The eval sandbox refuses to run programs without bubblewrap. The tests' programs are our own,
    # so where it cannot run they opt in to the weak sandbox, explicitly and visibly; the tests of
    # the refusal itself unset this.
    from codetron.eval.execution import SANDBOX_ENV, bubblewrap_status

    usable, why = bubblewrap_status()
    if not usable and SANDBOX_ENV not in os.environ:
        os.environ[SANDBOX_ENV] = "weak"
        print(f"tests: bubblewrap cannot run here ({why}); {SANDBOX_ENV}=weak for the tests' own programs",
              file=sys.stderr)


# --- pytest-xdist: `make test` runs `-n 2 --dist loadgroup --no-loadscope-reorder` --------------------
# A worker builds the module- and session-scoped fixtures of the tests it runs, so every test file is one
# unit of work (its module fixtures are built once), and tests that need the same expensive session
# fixture, or a resource there is only one of, share a named group across files.

SHARED_GROUPS = {
    # there is one local Slurm: two workers would start two clusters on the same ports
    "slurm_cluster": "slurm",
    # two 4-rank training runs (tests/convert/conftest.py), used by test_to_hf and test_units
    "run_tp2pp2": "convert-trained",
    "run_vpp": "convert-trained",
}
"""Fixture name -> the group of every test that uses it, wherever the test lives."""

DURATIONS_KEY = "codetron/test-seconds"
"""pytest's cache entry holding each test's seconds (setup + call + teardown) in the runs so far."""


def xdist_group(item) -> str:
    """The group an item runs in: an explicit ``xdist_group`` mark, else the Slurm group for ``slurm``
    tests, else the group of a shared fixture it uses, else its file."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    if item.get_closest_marker("slurm") is not None:
        return "slurm"
    for name, group in SHARED_GROUPS.items():
        if name in getattr(item, "fixturenames", ()):
            return group
    return item.nodeid.split("::", 1)[0]


def _plain_id(nodeid: str) -> str:
    """A test id without the ``@group`` suffix xdist's loadgroup adds (as xdist splits it)."""
    return nodeid.rsplit("@", 1)[0] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into test-id suffixes
def pytest_collection_modifyitems(config, items):
    groups = {}
    for item in items:
        groups[item.nodeid] = group = xdist_group(item)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):
        # In the workers (they collect, and must agree on the order): the longest groups first, so a
        # long file does not start last and run alone. A test's seconds in the last run that had it,
        # else 30 s for a slow one and 1 s for the rest.
        last = config.cache.get(DURATIONS_KEY, {}) if config.cache is not None else {}
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
    _seconds[_plain_id(report.nodeid)] = _seconds.get(_plain_id(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session):
    config = session.config
    if _seconds and not hasattr(config, "workerinput") and config.cache is not None:
        # merged: a partial run (-m, -k, one file) updates only the tests it ran
        config.cache.set(DURATIONS_KEY, {**config.cache.get(DURATIONS_KEY, {}), **_seconds})


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
