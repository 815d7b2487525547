"""Atomic outputs: published only on success, with normal permissions."""
import os

import pytest

from codetron.fileio import atomic_dir, atomic_open


def test_atomic_open_publishes_on_success_with_umask_permissions(tmp_path):
    target = tmp_path / "out.json"
    with atomic_open(target) as fh:
        fh.write("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "out.txt") as fh:
            fh.write("half")
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exchange", ["renameat2", "two-renames"])
def test_atomic_dir_swaps_an_existing_folder_and_hands_over_the_old_one(tmp_path, monkeypatch, exchange):
    from codetron import fileio

    if exchange == "two-renames":  # file systems without RENAME_EXCHANGE, other systems
        monkeypatch.setattr(fileio, "_RENAMEAT2", None)
    elif fileio._RENAMEAT2 is None:
        pytest.skip("renameat2 is not available on this system")
    final = tmp_path / "d"
    final.mkdir()
    (final / "old.txt").write_text("old")
    handed = []

    def keep(old):
        handed.append((old, sorted(p.name for p in old.iterdir())))

    with atomic_dir(final, discard_old=keep) as d:
        (d / "new.txt").write_text("new")
        assert (final / "old.txt").read_text() == "old"  # untouched until the block succeeds
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    (old, names), = handed
    assert names == ["old.txt"] and old.parent == tmp_path and old != final
    # the default discards the old folder; a failing block keeps the current one
    with atomic_dir(final) as d:
        (d / "third.txt").write_text("3")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as d:
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d", old.name])
    assert sorted(p.name for p in final.iterdir()) == ["third.txt"]
