"""codetron processes load the big libraries with the cyclic collector paused (codetron/import_gc.py)."""
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import gc, sys, pathlib, tempfile
    from codetron import import_gc
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "torch_probe_light.py").write_text("import gc\\non = gc.isenabled()\\n")
    sys.path.insert(0, str(d))
    import_gc.HEAVY = import_gc.HEAVY | {{"probe_heavy"}}
    (d / "probe_heavy").mkdir()
    (d / "probe_heavy" / "__init__.py").write_text("import gc\\non = gc.isenabled()\\nfrom probe_heavy import inner\\n")
    (d / "probe_heavy" / "inner.py").write_text("import gc\\non = gc.isenabled()\\n")
    {install}
    frozen = gc.get_freeze_count()
    import probe_heavy, torch_probe_light
    grew = gc.get_freeze_count() > frozen
    frozen = gc.get_freeze_count()
    import probe_heavy  # loaded already: the finder is not asked, nothing frozen
    again = gc.get_freeze_count() > frozen

    class Cycle:
        pass
    gc.collect()
    a = Cycle(); a.me = a; del a  # garbage made after the loads is collected as before
    print(probe_heavy.on, probe_heavy.inner.on, torch_probe_light.on, gc.isenabled(), grew, again,
          gc.collect() > 0, import_gc.installed(), probe_heavy.__loader__.get_source("probe_heavy").startswith("import gc"))
""")


def _probe(install: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(install=install)], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_collector_waits_while_a_heavy_package_loads_and_resumes_after():
    # probe_heavy and its submodule load paused; a module outside HEAVY (torch_probe_light is not the
    # torch package) loads as usual; the loader still answers what the real one does (get_source)
    assert _probe("import_gc.install()") == ["False", "False", "True", "True", "True", "False", "True", "True", "True"]


def test_without_it_the_collector_runs_during_imports():
    # the probe can tell the difference
    assert _probe("") == ["True", "True", "True", "True", "False", "False", "True", "False", "True"]


def test_the_cli_installs_it():
    code = ("import contextlib, io\nfrom codetron import cli, import_gc\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['curves', '--help'])\n    except SystemExit:\n        pass\n"
            "print(import_gc.installed())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "True"


@pytest.mark.parametrize("first", ["import_gc", "jit_off"])
def test_it_composes_with_megatron_jit_off(first):
    """Both finders are on sys.meta_path, in either order: jit_fuser still ends up off."""
    installs = ["from codetron import import_gc; import_gc.install()", "import codetron.megatron_ext"]
    code = ("\n".join(installs if first == "import_gc" else installs[::-1])
            + "\nimport sys, megatron.core\nfrom codetron.megatron_ext.jit_off import jit_fuser_off\n"
            "print(jit_fuser_off(), 'torch._inductor.compile_fx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
