"""codetron processes import with the cyclic collector paused (codetron/import_gc.py)."""
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import gc, sys, pathlib, tempfile
    from codetron import import_gc
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "probe_outer.py").write_text("import gc\\nouter_on = gc.isenabled()\\nimport probe_inner\\n")
    (d / "probe_inner.py").write_text("import gc\\ninner_on = gc.isenabled()\\n")
    sys.path.insert(0, str(d))
    {install}
    frozen = gc.get_freeze_count()
    import probe_outer, probe_inner
    grew = gc.get_freeze_count() > frozen
    frozen = gc.get_freeze_count()
    import probe_outer  # already loaded: nothing frozen
    again = gc.get_freeze_count() > frozen

    class Cycle:
        pass
    gc.collect()
    a = Cycle(); a.me = a; del a  # garbage made after the imports is collected as before
    print(probe_outer.outer_on, probe_inner.inner_on, gc.isenabled(), grew, again, gc.collect() > 0,
          import_gc.installed())
""")


def _probe(install: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(install=install)], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_collector_waits_while_importing_and_resumes_after():
    assert _probe("import_gc.install()") == ["False", "False", "True", "True", "False", "True", "True"]


def test_without_it_the_collector_runs_during_imports():
    # the probe can tell the difference
    assert _probe("") == ["True", "True", "True", "False", "False", "True", "False"]


def test_the_cli_installs_it():
    code = ("import contextlib, io\nfrom codetron import cli, import_gc\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['curves', '--help'])\n    except SystemExit:\n        pass\n"
            "print(import_gc.installed())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "True"
