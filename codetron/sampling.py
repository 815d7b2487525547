"""One definition of how tokens are sampled, and one validator, for every stage that generates.

``codetron eval generate``, ``codetron serve``, ``codetron evolve``, ``codetron selfalign`` and
``codetron rrtf sample`` all draw tokens with the same knobs; each stage keeps its own *defaults*
(a stage config's ``sampling`` field builds a ``SamplingParams`` with the published values) but the
fields, their names and their rules live here.

The rules are the OpenAI API's, because three of these stages talk to OpenAI-compatible servers
(vLLM, TGI, ``codetron serve``) and ``codetron serve`` is one: a value one stage accepts must be one
the server accepts, or a run fails hours in at its first request instead of at its command line.

- ``temperature`` in [0, 2] (OpenAI's range; 0 is greedy decoding)
- ``top_p`` in (0, 1] (0 would keep no token)
- ``max_new_tokens`` >= 1 (the HTTP field is ``max_tokens``; ``codetron serve`` maps it at the boundary)
- ``n`` >= 1
- ``seed`` an integer or None
- ``stop`` non-empty strings, at most 16 (``codetron serve``'s limit; OpenAI's own API takes 4)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from codetron.errors import ConfigError

TEMPERATURE_RANGE = (0.0, 2.0)
"""Inclusive bounds of ``temperature`` (the OpenAI API's)."""
MAX_STOP = 16
"""Most stop sequences one request may carry."""


class SamplingError(ConfigError):
    """A sampling value out of its range; ``field`` names the SamplingParams field."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def cli_flag(name: str) -> str:
    """How the command lines spell a field: ``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


@dataclass(kw_only=True, slots=True)
class SamplingParams:
    """How tokens are drawn for one prompt."""

    temperature: float = 1.0
    """Softmax temperature in [0, 2] (the OpenAI API's range); 0 decodes greedily."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens holding this much probability, in (0, 1]
    (1 keeps every token; ignored when greedy)."""
    max_new_tokens: int = 256
    """Tokens generated at most per sample (``max_tokens`` in the OpenAI HTTP API)."""
    n: int = 1
    """Samples drawn per prompt."""
    seed: int | None = None
    """Base seed; every sample derives its own from it, so a sample does not depend on batching. None
    draws a random one."""
    stop: tuple[str, ...] = ()
    """Stop sequences: a sample ends at the first, which is cut from the text."""

    def validate(self, name: Callable[[str], str] = cli_flag) -> "SamplingParams":
        """Raise a one-line :class:`SamplingError` naming the first bad field (spelled by ``name``:
        a command-line flag by default, the JSON field for ``codetron serve``); return self."""
        def bad(fieldname: str, rule: str, value) -> SamplingError:
            return SamplingError(f"{name(fieldname)} must be {rule}, got {value!r}", fieldname)

        for fieldname in ("temperature", "top_p"):
            value = getattr(self, fieldname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise bad(fieldname, "a number", value)
        lo, hi = TEMPERATURE_RANGE
        if not lo <= self.temperature <= hi:
            raise bad("temperature", f"in [{lo:g}, {hi:g}]", self.temperature)
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "in (0, 1]", self.top_p)
        for fieldname in ("max_new_tokens", "n"):
            value = getattr(self, fieldname)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(fieldname, "an integer >= 1", value)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise bad("seed", "an integer", self.seed)
        stop = self.stop
        if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop) or len(stop) > MAX_STOP:
            raise bad("stop", f"a list of up to {MAX_STOP} non-empty strings", stop)
        return self

    def replace(self, **changes) -> "SamplingParams":
        """A copy with ``changes`` (e.g. one request's seed)."""
        return dataclasses.replace(self, **changes)


def sampling_field(**defaults) -> dataclasses.Field:
    """A stage config's ``sampling`` field whose default holds the stage's own values, e.g.
    ``sampling: SamplingParams = sampling_field(temperature=0.7)`` (the published ones, cited there)."""
    return field(default_factory=lambda: SamplingParams(**defaults))
