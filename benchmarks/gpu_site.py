"""Make a bare Python that has torch and nothing else run Codetron from this checkout, offline: the first
step of ``benchmarks/gpu_check.sh``, on the GPU machine and in ``--cpu-dry-run`` alike.

1. Every distribution of ``benchmarks/gpu_wheels.txt`` that the interpreter lacks (or has at another
   pinned version) is installed from the wheel folder into SITE: with ``pip install --no-index
   --target`` when the interpreter has pip, else by unpacking the wheels (a wheel is a zip archive laid
   out for site-packages). The machine's own site-packages are never touched.
2. ``SITE/codetron`` is laid out as setup.py's ``package_dir`` installs it (``codetron/*`` plus one
   folder per stage), with symbolic links into this checkout: the checks run the checkout's code and
   nothing is built.

SITE is ``<site root>/py<major>.<minor>``, so wheels unpacked for one interpreter never serve another.
Prints SITE, the folder to put first on PYTHONPATH; a failure is one line on stderr and exit status 2.
Standard library only: nothing else can be assumed on that machine.
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_LIST = ROOT / "benchmarks" / "gpu_wheels.txt"


class SiteError(Exception):
    """A one-line reason the environment cannot be prepared."""


def normalize(name: str) -> str:
    """PEP 503 name: what a wheel's file name and ``pip`` agree on (``PyYAML`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_wheel_list(path: Path = WHEEL_LIST) -> list[tuple[str, str | None]]:
    """``(name, pinned version or None)`` per line of the wheel list; anything else names file:line."""
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([A-Za-z0-9.+!-]+))?", line)
        if not m:
            raise SiteError(f"{path}:{lineno}: expected `name` or `name==version`, got {line!r}")
        out.append((m.group(1), m.group(2)))
    return out


def missing(wanted: list[tuple[str, str | None]], site: Path) -> list[str]:
    """The requirements (``name`` / ``name==version``) not installed in ``site`` or on ``sys.path``."""
    paths = [str(site), *sys.path]
    out = []
    for name, pin in wanted:
        found = [d.version for d in md.distributions(path=paths)
                 if normalize(d.metadata["Name"] or "") == normalize(name)]
        # the first one on the path is the one Python imports
        if not found or (pin is not None and found[0] != pin):
            out.append(f"{name}=={pin}" if pin else name)
    return out


def wheel_for(requirement: str, wheels: Path) -> Path:
    """The wheel of ``requirement`` in ``wheels`` that this interpreter can use (the pip-less path)."""
    name, _, pin = requirement.partition("==")
    major, minor = sys.version_info[:2]
    ours = {f"cp{major}{minor}", f"py{major}", f"py{major}{minor}"}
    for whl in sorted(wheels.glob("*.whl")):
        parts = whl.stem.split("-")  # name-version(-build)?-python-abi-platform
        if len(parts) < 5 or normalize(parts[0]) != normalize(name) or (pin and parts[1] != pin):
            continue
        if ours & set(parts[-3].split(".")) or parts[-2] == "abi3":  # abi3: any CPython from its tag on
            return whl
    raise SiteError(f"no wheel for {requirement} (Python {sys.version_info[0]}.{sys.version_info[1]}) in {wheels}: "
                    f"fetch them with the pip download command in README.md (GPU check)")


def install(requirements: list[str], wheels: Path, site: Path, use_pip: bool) -> str:
    """Install ``requirements`` from the wheel folder into ``site``; returns how (for the log line)."""
    if not wheels.is_dir():
        raise SiteError(f"missing {' '.join(requirements)} and no wheel folder {wheels}: fetch the wheels with the "
                        f"pip download command in README.md (GPU check)")
    site.mkdir(parents=True, exist_ok=True)
    if use_pip:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
               "--no-deps", "--upgrade", "--target", str(site), *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SiteError(f"pip could not install {' '.join(requirements)} from {wheels}: {tail}")
        return "pip"
    for req in requirements:
        with zipfile.ZipFile(wheel_for(req, wheels)) as zf:
            zf.extractall(site)
    return "unpacked (no pip)"


def stage_folders(setup_py: Path = ROOT / "setup.py") -> list[str]:
    """The stage folders setup.py installs as ``codetron.<stage>`` (its STAGES list), plus ``data``."""
    for node in ast.parse(setup_py.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "STAGES" for t in node.targets):
            return [*ast.literal_eval(node.value), "data"]
    raise SiteError(f"{setup_py}: no STAGES list")


def link_codetron(site: Path, root: Path = ROOT) -> Path:
    """``site/codetron``: links to ``codetron/*`` and to each stage folder, as the installed package."""
    ns = site / "codetron"
    if ns.is_symlink() or ns.is_file():
        ns.unlink()
    elif ns.exists():
        shutil.rmtree(ns)
    ns.mkdir(parents=True)
    for entry in sorted((root / "codetron").iterdir()):
        if entry.name != "__pycache__":
            (ns / entry.name).symlink_to(entry)
    for stage in stage_folders(root / "setup.py"):
        (ns / stage).symlink_to(root / stage)
    return ns


def prepare(wheels: Path, site_root: Path, wheel_list: Path = WHEEL_LIST, use_pip: bool | None = None) -> Path:
    site = site_root / f"py{sys.version_info[0]}.{sys.version_info[1]}"
    need = missing(read_wheel_list(wheel_list), site)
    if need:
        if use_pip is None:
            use_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
        how = install(need, wheels, site, use_pip)
        print(f"gpu_site: installed {' '.join(need)} from {wheels} into {site} ({how})", file=sys.stderr)
        still = missing(read_wheel_list(wheel_list), site)
        if still:
            raise SiteError(f"still missing after the install: {' '.join(still)} (wrong versions in {wheels}?)")
    else:
        print(f"gpu_site: every distribution of {wheel_list.name} is already installed", file=sys.stderr)
    link_codetron(site)
    print(f"gpu_site: {site / 'codetron'} links to the checkout {ROOT}", file=sys.stderr)
    return site


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="wheel folder (default .whl/)")
    ap.add_argument("--site", type=Path, default=ROOT / ".gpu-site", help="install root (default .gpu-site/)")
    args = ap.parse_args(argv)
    try:
        print(prepare(args.wheels.resolve(), args.site.resolve()))
    except SiteError as exc:
        print(f"gpu_site: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
