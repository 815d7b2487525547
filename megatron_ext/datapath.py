"""``data.data_path``: one dataset prefix, several, or a weighted blend ``[w1, p1, w2, p2]``."""
from __future__ import annotations

from codetron.errors import ConfigError


def data_prefixes(data_path: list[str]) -> list[str]:
    """The .bin/.idx prefixes of a blend ``[w1, p1, w2, p2]`` or ``[p1, p2]``."""
    def is_weight(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False
    if len(data_path) >= 2 and is_weight(data_path[0]):
        if len(data_path) % 2:
            raise ConfigError(f"data.data_path: a weighted blend needs weight/prefix pairs, got {len(data_path)} items")
        return list(data_path[1::2])
    return list(data_path)
