"""A real single-node Slurm for the whole session, stopped by PID however the session ends."""
import os
import sys

import pytest

from tests.conftest import ROOT, subprocess_env


def _skip(config, reason: str):
    # Printed past output capture as well as recorded: a Slurm-less CI must say loudly why these
    # acceptance tests did not run (pytest shows skip reasons only with -rs).
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\nSKIPPING the real-Slurm tests: {reason}", file=sys.stderr, flush=True)
    else:
        print(f"SKIPPING the real-Slurm tests: {reason}", file=sys.stderr, flush=True)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory, pytestconfig):
    import subprocess

    from codetron.errors import CodetronError
    from codetron.slurm.local_cluster import LocalCluster, have_slurm, install_slurm

    if not have_slurm():
        if os.geteuid() != 0:
            _skip(pytestconfig, "slurm-wlm/munge are not installed and installing them needs root (apt-get install slurm-wlm munge)")
        print("installing slurm-wlm + munge with apt-get", file=sys.stderr)
        try:
            install_slurm(timeout=300)
        except (CodetronError, OSError, subprocess.TimeoutExpired) as exc:
            _skip(pytestconfig, f"could not install slurm-wlm/munge: {exc}")
    # A short root: the munge socket path must stay under the 108-byte AF_UNIX limit.
    root = tmp_path_factory.mktemp("slurm")
    cluster = LocalCluster(root, cpus=4)
    try:
        cluster.start(timeout=60)  # stops whatever it started (by PID) before raising
    except (CodetronError, OSError, subprocess.TimeoutExpired) as exc:
        _skip(pytestconfig, f"could not start a local Slurm in {root}: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def job_env():
    """Environment for sbatch: this checkout importable in the job, one thread per rank."""
    return subprocess_env(OMP_NUM_THREADS=1, PYTHONUNBUFFERED=1)


@pytest.fixture(scope="session")
def render():
    """``codetron slurm ARGV`` in-process; asserts success."""
    def run(argv: list[str]) -> None:
        from codetron.slurm.cli import main

        assert main(argv) == 0
    return run
