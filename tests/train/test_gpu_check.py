"""benchmarks/gpu_check.sh cannot rot. Its CPU dry run takes every step the GPU machine takes, in the same
kind of environment: a virtual environment holding only torch (and what torch requires, and pip), the
wheels of benchmarks/gpu_wheels.txt in a wheel folder, no install of codetron. It installs the wheels
offline, links codetron from the checkout, compares a bf16 curve with the stored CPU fp32 one and
measures throughput; the stored reference curve is what today's code produces; and its numbers add up.

The README fills .whl/ with `pip download --python-version 3.12 ... -r benchmarks/gpu_wheels.txt`, which
needs PyPI. Tests have no network, and the only torch here is built for this machine's Python (3.11),
so the wheel folder is filled from the same list with the distributions this test environment has
installed, repacked as wheels: the same files pip would unpack, for the Python that runs the test.
"""
import base64
import hashlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT, subprocess_env
from tests.test_install import setup_kwargs  # noqa: F401  (fixture: setup.py's arguments)

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
REFERENCE = ROOT / "benchmarks" / "results" / "debug_tiny_cpu_fp32.jsonl"
PYVER = f"py{sys.version_info[0]}.{sys.version_info[1]}"

sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import gpu_check
    import gpu_site
finally:
    sys.path.pop(0)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ a bare Python and its wheel folder

def repack(dist_name: str, dest: Path) -> Path:
    """The wheel an installed distribution came from, rebuilt from its recorded files (scripts outside
    site-packages and byte code left out, RECORD rewritten): what `pip download` would have fetched."""
    dist = md.distribution(dist_name)
    tag = next(ln.split(":", 1)[1].strip() for ln in dist.read_text("WHEEL").splitlines() if ln.startswith("Tag:"))
    out = dest / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"
    record, info = [], None
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in dist.files:
            if f.parts[0] == ".." or "__pycache__" in f.parts:
                continue
            if f.parts[0].endswith(".dist-info"):
                info = f.parts[0]
                if f.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                    continue
            data = Path(dist.locate_file(f)).read_bytes()
            zf.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f},sha256={digest},{len(data)}")
        zf.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return out


def requirement_closure(*roots: str) -> dict[str, md.Distribution]:
    """The installed distributions ``roots`` need, their requirements' requirements included."""
    seen, todo = {}, list(roots)
    while todo:
        name = gpu_site.normalize(todo.pop())
        if name in seen:
            continue
        seen[name] = dist = md.distribution(name)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if not req.marker or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def torch_only_venv(path: Path) -> Path:
    """A virtual environment whose site-packages hold torch, what torch requires and pip, nothing else:
    links to this environment's installed copies (a second torch install would take a minute)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python*/site-packages"))
    for dist in requirement_closure("torch", "pip").values():
        for top in {Path(str(f)).parts[0] for f in dist.files if not str(f).startswith("..")} - {"__pycache__"}:
            if Path(dist.locate_file(top)).exists():
                (site / top).symlink_to(dist.locate_file(top))
    return path / "bin" / "python"


def bare_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"OMP_NUM_THREADS": "1", **{k: str(v) for k, v in extra.items()}})
    return env


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bare")
    wheels = tmp / "whl"
    wheels.mkdir()
    for name, _ in gpu_site.read_wheel_list():
        repack(name, wheels)
    return {"python": torch_only_venv(tmp / "venv"), "wheels": wheels, "site": tmp / "gpu-site"}


@pytest.fixture(scope="module")
def dry_run(bare, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("gpu_check") / "results"
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu-dry-run", "--out-dir", str(out_dir)], cwd=ROOT,
                          env=bare_env(PYTHON=bare["python"], CODETRON_WHEELS=bare["wheels"],
                                       CODETRON_GPU_SITE=bare["site"]),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, out_dir


# ------------------------------------------------------------------ the GPU machine's path, on CPU

def test_readme_fetches_the_wheel_list_for_python_312():
    readme = (ROOT / "README.md").read_text()
    cmd = re.search(r"^pip download (.*\\\n)*.*$", readme, re.M).group(0).replace("\\\n", " ")
    assert cmd.split() == ["pip", "download", "--python-version", "3.12", "--only-binary=:all:", "--implementation",
                           "cp", "--platform", "manylinux_2_28_x86_64", "--no-deps", "-d", ".whl", "-r",
                           "benchmarks/gpu_wheels.txt"]
    names = dict(gpu_site.read_wheel_list())
    # megatron-core's wheel is built per CPython version: the pin is what cpu_compat accepts
    assert names["megatron-core"] == "0.16.1"
    assert {"numpy", "pyyaml", "psutil", "packaging", "setuptools", "tqdm"} <= set(names)


def test_wheel_list_is_the_core_install_less_torch_and_tokenizers(setup_kwargs):  # noqa: F811
    core = {gpu_site.normalize(Requirement(r).name): Requirement(r) for r in setup_kwargs["install_requires"]}
    listed = dict(gpu_site.read_wheel_list())
    # torch is the machine's own; tokenizers loads only for a real tokenizer (the check's is null:V)
    assert set(core) - set(listed) == {"torch", "tokenizers"}
    assert core["megatron-core"].specifier.contains(listed["megatron-core"])


def test_wheel_list_errors_name_the_line(tmp_path):
    bad = tmp_path / "wheels.txt"
    bad.write_text("numpy\n# fine\nmegatron-core>=0.16\n")
    with pytest.raises(gpu_site.SiteError, match=r"wheels.txt:3: expected `name` or `name==version`, got "
                                                 r"'megatron-core>=0.16'"):
        gpu_site.read_wheel_list(bad)


@pytest.mark.slow
def test_the_bare_environment_lacks_what_the_check_installs(bare, dry_run):
    py = bare["python"]
    site = bare["site"] / PYVER
    for module in ("numpy", "megatron.core", "yaml", "codetron"):
        proc = subprocess.run([py, "-c", f"import {module}"], cwd=bare["wheels"], env=bare_env(),
                              capture_output=True, text=True)
        assert f"No module named '{module.split('.')[0]}'" in proc.stderr, (module, proc.stderr[-500:])
    # The failure gpu_check.py once had: with the checkout as working directory, `python -m`/`-c` put it first
    # on sys.path, and its plain codetron/ folder hides the linked stages even with SITE on PYTHONPATH.
    proc = subprocess.run([py, "-c", "import codetron.megatron_ext"], cwd=ROOT, env=bare_env(PYTHONPATH=site),
                          capture_output=True, text=True)
    assert "No module named 'codetron.megatron_ext'" in proc.stderr
    proc = subprocess.run([py, "-c", "import codetron.megatron_ext.training as t; print(t.__file__)"],
                          cwd=bare["wheels"], env=bare_env(PYTHONPATH=site), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).resolve() == ROOT / "megatron_ext" / "training.py"


@pytest.mark.slow
def test_dry_run_installs_the_wheels_offline_and_links_codetron(bare, dry_run):
    proc, _ = dry_run
    site = bare["site"] / PYVER
    installed = re.search(r"gpu_site: installed (.*) from (\S+) into (\S+) \(pip\)", proc.stderr)
    assert installed, proc.stderr[-3000:]
    assert {"megatron-core==0.16.1", "numpy", "pyyaml", "psutil", "packaging", "tqdm"} <= set(
        installed.group(1).split())
    assert installed.group(3) == str(site)
    assert (site / "megatron" / "core").is_dir() and (site / "numpy").is_dir()
    for stage in ("preprocess", "megatron_ext", "slurm", "convert", "eval", "data"):
        assert (site / "codetron" / stage).resolve() == ROOT / stage
    assert (site / "codetron" / "cli.py").resolve() == ROOT / "codetron" / "cli.py"
    # a second run finds everything and installs nothing
    again = subprocess.run([bare["python"], ROOT / "benchmarks" / "gpu_site.py", "--wheels", bare["wheels"],
                            "--site", bare["site"]], env=bare_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == str(site), again.stderr
    assert "every distribution of gpu_wheels.txt is already installed" in again.stderr


@pytest.mark.slow
def test_dry_run_compares_bf16_with_the_stored_fp32_curve(dry_run):
    proc, out_dir = dry_run
    report = (out_dir / "report.txt").read_text()
    assert report.strip() in proc.stdout  # the file holds what was printed
    assert "megatron-core 0.16.1" in report and "device: CPU only (dry run" in report
    assert "transformer_impl sdpa -> sdpa" in report
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([+-][0-9.]+)$", report, re.M)
    stored = read_jsonl(REFERENCE)
    assert [int(r[0]) for r in rows] == list(range(1, 21))
    for (_, ref, got, diff), s in zip(rows, stored):
        assert float(ref) == pytest.approx(s["loss"], abs=1e-5)
        assert float(got) - float(ref) == pytest.approx(float(diff), abs=2e-5)
    worst = float(re.search(r"max \|diff\| ([0-9.]+) over 20 of 20 steps \(tolerance 0.02\): PASS", report).group(1))
    assert worst == pytest.approx(max(abs(float(r[3])) for r in rows), abs=1e-5)
    assert 0 < worst < 5e-3  # bf16 really ran (not fp32), and on CPU it tracks fp32 closely
    results = json.loads((out_dir / "results.json").read_text())
    curve = results["curve"]
    assert curve["pass"] and curve["max_abs_diff"] == pytest.approx(worst, abs=1e-5)
    assert [r["this_run"] for r in curve["steps"]] == [r["loss"] for r in read_jsonl(out_dir / "loss_bf16.jsonl")]
    assert results["env"]["torch"].startswith("2.") and results["env"]["megatron_core"] == "0.16.1"
    assert results["failures"] == []


@pytest.mark.slow
def test_dry_run_throughput_numbers_add_up(dry_run):
    from codetron.megatron_ext.flops import flops_per_token
    from codetron.megatron_ext.presets import resolve_config

    proc, out_dir = dry_run
    report = (out_dir / "report.txt").read_text()
    assert "peak 0.01 TFLOP/s per device (assumed for the dry run)" in report
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.e-]+)\s+([0-9.]+)%\s+([0-9.]+)\s+([0-9.]+)GiB$",
                      report, re.M)
    assert [int(r[0]) for r in rows] == [64, 256]
    stored = json.loads((out_dir / "results.json").read_text())["throughput"]["rows"]
    for (seq, tok_s, real_s, tflops, mfu, step_s, mem), row in zip(rows, stored):
        seq, tok_s = int(seq), float(tok_s)
        model = resolve_config("starcoderbase-1b", overrides={
            "model.num_layers": 2, "model.hidden_size": 64, "model.num_attention_heads": 4,
            "model.max_position_embeddings": 256, "model.seq_length": seq}).model
        expect = tok_s * flops_per_token(model, 256, seq) / 1e12
        assert float(tflops) == pytest.approx(expect, rel=2e-3)
        assert float(mfu) == pytest.approx(100 * expect / 0.01, abs=0.06)
        assert float(real_s) == pytest.approx(tok_s, rel=1e-6)  # synthetic pretraining rows hold no padding
        assert float(step_s) == pytest.approx(seq / tok_s, abs=6e-4)  # micro-batch 1, global batch 1
        assert 0.05 < float(mem) < 8  # process RSS on CPU, from the run's step lines
        assert row["seq"] == seq and row["tokens_per_s"] == pytest.approx(tok_s, abs=0.06)
        assert row["mfu"] == pytest.approx(float(mfu) / 100, abs=6e-4) and row["peak_mem_gib"] == float(mem)
        assert (out_dir / f"seq{seq}.log").read_text().count("step ") >= 3  # each run's output is kept


@pytest.mark.slow
def test_dry_run_without_matplotlib_says_how_to_draw_the_charts(dry_run, tmp_path):
    import shutil

    proc, out_dir = dry_run
    assert (f"charts: matplotlib is not installed here; draw them where it is (pip install -e '.[eval]'): "
            f"python benchmarks/gpu_check.py --charts {out_dir}") in proc.stdout
    copy = tmp_path / "results"
    shutil.copytree(out_dir, copy)
    drawn = subprocess.run([sys.executable, ROOT / "benchmarks" / "gpu_check.py", "--charts", copy],
                           env=bare_env(), capture_output=True, text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    for name in ("loss_bf16_vs_fp32.png", "throughput.png"):
        assert f"chart: {copy / name}" in drawn.stdout
        assert (copy / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ partial results, the budget

@pytest.fixture
def fake_train(monkeypatch):
    """gpu_check's training runs replaced: the curve run writes the stored curve shifted by 0.001, the
    throughput runs write 4 steps at 1000 tok/s, and a run named in ``fail`` stops with an error."""
    fail = set()

    def train(name, overrides, data, loss_log, env, logs, timeout=None):
        if name in fail:
            raise gpu_check.StageFailed(f"{name}: exit status 1, output in {name}.log: CUDA out of memory")
        recs = ([{**r, "loss": r["loss"] + 0.001} for r in read_jsonl(REFERENCE)] if name == "curve_bf16" else
                [{"step": i, "loss": 5.0, "tokens_per_s": 1000.0, "real_tokens_per_s": 1000.0} for i in range(1, 5)])
        loss_log.write_text("".join(json.dumps(r) + "\n" for r in recs))
        return "step      4/4 | loss 5.0 | mem 0.50GiB\n"

    monkeypatch.setattr(gpu_check, "train", train)
    return fail


def test_a_failed_run_keeps_what_was_measured_before_and_after(fake_train, tmp_path, capsys, monkeypatch):
    fake_train.add("seq64")
    # the module was imported long before (as in a full test run): the budget counts from main()
    monkeypatch.setattr(gpu_check, "START", gpu_check.time.time() - 10_000)
    out = tmp_path / "res"
    assert gpu_check.main(["--cpu-dry-run", "--out-dir", str(out)]) == 1
    report = (out / "report.txt").read_text()
    assert "max |diff| 0.00100 over 20 of 20 steps (tolerance 0.02): PASS" in report
    assert "FAILED seq64: exit status 1, output in seq64.log: CUDA out of memory" in report
    assert re.search(r"^  256 +1000\.0 +1000\.0 ", report, re.M)  # the run after the failure was measured
    assert report.rstrip().endswith("1 stage(s) failed; curve PASS")
    results = json.loads((out / "results.json").read_text())
    assert [r["seq"] for r in results["throughput"]["rows"]] == [256]
    assert results["failures"] == ["seq64: exit status 1, output in seq64.log: CUDA out of memory"]


def test_a_failed_curve_run_still_reports_the_steps_it_made(fake_train, tmp_path, monkeypatch):
    def short(name, overrides, data, loss_log, env, logs, timeout=None):
        loss_log.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(REFERENCE)[:7]))
        raise gpu_check.StageFailed(f"{name}: exit status 1: loss is NaN")

    monkeypatch.setattr(gpu_check, "train", short)
    out = tmp_path / "res"
    assert gpu_check.main(["--cpu-dry-run", "--out-dir", str(out)]) == 1
    report = (out / "report.txt").read_text()
    assert "max |diff| 0.00000 over 7 of 20 steps (tolerance 0.02): FAIL" in report
    assert "FAILED curve_bf16: exit status 1: loss is NaN" in report
    assert len(json.loads((out / "results.json").read_text())["curve"]["steps"]) == 7


def test_a_run_that_logged_no_timed_step_is_a_failure_not_a_division_by_zero(fake_train, tmp_path, monkeypatch):
    real_train = gpu_check.train

    def warmup_only(name, overrides, data, loss_log, env, logs, timeout=None):
        out = real_train(name, overrides, data, loss_log, env, logs, timeout)
        if name == "seq256":  # the dry run's one warm-up step and nothing after it
            loss_log.write_text(loss_log.read_text().splitlines()[0] + "\n")
        return out

    monkeypatch.setattr(gpu_check, "train", warmup_only)
    out = tmp_path / "res"
    assert gpu_check.main(["--cpu-dry-run", "--out-dir", str(out)]) == 1
    assert json.loads((out / "results.json").read_text())["failures"] == ["seq256: no timed step in its loss log"]


def test_runs_stop_starting_when_the_budget_is_spent(fake_train, tmp_path, monkeypatch):
    monkeypatch.setenv("CODETRON_GPU_CHECK_START", str(time.time() - gpu_check.BUDGET_S + 10))
    out = tmp_path / "res"
    assert gpu_check.main(["--cpu-dry-run", "--out-dir", str(out)]) == 1
    failures = json.loads((out / "results.json").read_text())["failures"]
    assert len(failures) == 3 and all(re.fullmatch(r"not started: \d+ s of the 480 s budget are spent", f)
                                      for f in failures), failures


def test_an_unlisted_gpu_gets_mfu_na_with_the_reason(fake_train, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(gpu_check, "environment", lambda dry: {
        "host": "h", "python": "3.12.3", "torch": "2.13.0", "megatron_core": "0.16.1", "transformer_engine": "absent",
        "device": "NVIDIA GeForce RTX 4090", "device_count": 1, "driver": "580.1", "cuda": "12.8", "cudnn": "91000",
        "dry_run": False})
    monkeypatch.setattr(gpu_check, "sdpa_kernel_line", lambda: "sdpa kernels: (faked)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "res"
    gpu_check.main(["--out-dir", str(out)])
    report = (out / "report.txt").read_text()
    assert ("MFU n/a: no dense bf16 peak listed for device 'NVIDIA GeForce RTX 4090' (megatron_ext/metrics.py "
            "PEAK_BF16_TFLOPS); pass --peak-tflops N") in report
    assert "device: NVIDIA GeForce RTX 4090 (1 visible) | driver 580.1 | CUDA 12.8 | cuDNN 91000" in report
    rows = re.findall(r"^ +(\d+) +[0-9.]+ +[0-9.]+ +[0-9.e-]+ +n/a ", report, re.M)
    assert rows == ["2048", "8192"]
    assert [r["mfu"] for r in json.loads((out / "results.json").read_text())["throughput"]["rows"]] == [None, None]


# ------------------------------------------------------------------ pieces

def test_wheels_unpack_without_pip(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    for name in ("psutil", "tqdm"):
        repack(name, wheels)
    site = tmp_path / "site"
    assert gpu_site.install(["psutil", "tqdm"], wheels, site, use_pip=False) == "unpacked (no pip)"
    found = {gpu_site.normalize(d.metadata["Name"]): d.version for d in md.distributions(path=[str(site)])}
    assert found == {"psutil": md.version("psutil"), "tqdm": md.version("tqdm")}
    assert (site / "psutil" / "__init__.py").is_file()
    with pytest.raises(gpu_site.SiteError, match=r"no wheel for numpy \(Python 3\.\d+\) in .*whl: fetch them"):
        gpu_site.install(["numpy"], wheels, site, use_pip=False)
    with pytest.raises(gpu_site.SiteError, match="no wheel folder"):
        gpu_site.install(["numpy"], tmp_path / "absent", site, use_pip=False)
    # a pinned version that differs from the installed one counts as missing
    assert gpu_site.missing([("psutil", "0.0.1"), ("tqdm", None)], site) == ["psutil==0.0.1"]


def test_linked_codetron_is_what_setup_py_installs(tmp_path):
    ns = gpu_site.link_codetron(tmp_path)
    names = {p.name for p in ns.iterdir()}
    assert names == ({p.name for p in (ROOT / "codetron").iterdir()} - {"__pycache__"}
                     | {"preprocess", "megatron_ext", "slurm", "convert", "eval", "data"})
    assert gpu_site.link_codetron(tmp_path) == ns  # relinking replaces the old links


@pytest.mark.slow
def test_reference_curve_is_what_the_documented_command_writes(tmp_path):
    fresh = tmp_path / "ref.jsonl"
    proc = subprocess.run(["bash", str(SCRIPT), "--write-reference", str(fresh)], cwd=ROOT,
                          env=subprocess_env(PYTHON=sys.executable, CODETRON_GPU_SITE=tmp_path / "site"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, stored = read_jsonl(fresh), read_jsonl(REFERENCE)
    assert len(got) == len(stored) == 20
    for g, s in zip(got, stored):
        # Regenerate with `benchmarks/gpu_check.sh --write-reference` after an intended numerics change.
        assert abs(g["loss"] - s["loss"]) < 1e-4, (g, s)
    assert stored[-1]["loss"] < stored[0]["loss"] - 0.3  # the curve moves: a comparison against it means something


def test_curve_verdict_fails_on_a_shifted_or_short_curve():
    ref = [{"step": i, "loss": 5.0 - 0.03 * i} for i in range(1, 21)]
    close = [{"step": r["step"], "loss": r["loss"] + 0.004} for r in ref]
    far = [dict(r) for r in close]
    far[12]["loss"] += 0.05
    assert gpu_check.curve_verdict(ref, close)[1]
    lines, ok = gpu_check.curve_verdict(ref, far)
    assert not ok and lines[-1] == "max |diff| 0.05400 over 20 of 20 steps (tolerance 0.02): FAIL"
    assert not gpu_check.curve_verdict(ref, close[:19])[1]  # a run that stopped early fails too


def test_wheel_folder_and_install_target_are_ignored_by_git():
    proc = subprocess.run(["git", "check-ignore", ".whl/x.whl", ".gpu-site/py3.12/numpy"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.stdout.split() == [".whl/x.whl", ".gpu-site/py3.12/numpy"]
