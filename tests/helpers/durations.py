"""Refresh ``tests/durations.json`` from the seconds pytest's cache holds for the last runs.

The xdist schedule (tests/conftest.py) starts the longest groups first. A machine with a pytest
cache knows their lengths from its own runs; a fresh clone (CI) reads them from the committed file,
which ``make test-durations`` rewrites after a full ``make test``. Stale entries only cost balance.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_KEY = "codetron/test-seconds"
"""pytest's cache entry holding each test's seconds (setup + call + teardown) in the runs so far."""
COMMITTED = ROOT / "tests" / "durations.json"
CACHE = ROOT / ".pytest_cache" / "v" / CACHE_KEY


def committed() -> dict[str, float]:
    """tests/durations.json: each test's seconds in a full run (empty where the file is missing)."""
    return json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else {}


def main() -> int:
    if not CACHE.is_file():
        print(f"{CACHE}: no test seconds yet; run `make test` first", file=sys.stderr)
        return 2
    seconds = json.loads(CACHE.read_text())
    rounded = {k: round(v, 1) for k, v in sorted(seconds.items())}
    tmp = COMMITTED.with_suffix(".tmp")
    tmp.write_text(json.dumps(rounded, indent=0) + "\n")
    tmp.replace(COMMITTED)
    print(f"{COMMITTED}: {len(rounded)} tests, {sum(rounded.values()) / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
