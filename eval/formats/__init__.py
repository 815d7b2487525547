"""Prompt formats (``--prompt``): one module per format in this folder, each registering itself.

====================  =========================================================================
continue              ``prompt_base`` alone - plain left-to-right completion
instruct              ``{inp}\\n\\n{prompt_base}``
octocoder             ``Question: {inp}\\n\\nAnswer:\\n{prompt_base}`` (OctoPack, arXiv:2308.07124)
starchat              ``<|system|>\\n<|end|>\\n<|user|>\\n{inp}<|end|>\\n<|assistant|>\\n{prompt_base}``
wizardcoder           the Alpaca preamble, ``### Instruction:\\n{inp}\\n\\n### Response:\\n{prompt_base}``
starcoder2-instruct   StarCoder2-Instruct's chat template with ``prompt_base`` as the response prefix;
                      on HumanEval(+)/MBPP(+) its published evaluation (text2code.py)
pangu-coder2          the docstring in a triple-quoted string, then the declaration (arXiv:2307.14936)
====================  =========================================================================

Source for the harness formats: ``bigcode_eval/tasks/humanevalpack.py`` (``HumanEvalPack.get_prompt``).
``FORMATS`` maps each name to its ``PromptFormat`` (``base.py``); a new format is one new module here
(``docs/extending.md``).
"""
from __future__ import annotations

from codetron.errors import CodetronError
from codetron.eval.formats.base import REGISTRY, Completion, PromptFormat, TemplateFormat, register
from codetron.plugins import import_submodules

FORMATS: dict[str, PromptFormat] = REGISTRY
"""Every prompt format by name, in module name order."""


def discover() -> dict[str, PromptFormat]:
    """Import every module of this folder (they register themselves); returns ``FORMATS``."""
    import_submodules(__name__)
    return FORMATS


discover()


def get_format(name: str) -> PromptFormat:
    """The format named ``name``; one line listing the others when there is none."""
    if name not in FORMATS:
        raise CodetronError(f"unknown prompt format {name!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


def render(problem: dict, fmt: str) -> tuple[str, str]:
    """``(model input, code prefix)`` for a HumanEval-schema problem in format ``fmt`` (RRTF sampling,
    ``codetron eval generate`` without a task): completions for ``continue`` and ``pangu-coder2``
    (the sample is ``prefix + output``), the harness's ``humanevalsynthesize-python`` for the others."""
    return get_format(fmt).render(problem)


def postprocess(problem: dict, fmt: str, prefix: str, output: str) -> str:
    """A raw output as the sample's code, for ``render``'s prompts."""
    return get_format(fmt).postprocess(problem, prefix, output)


__all__ = ["FORMATS", "Completion", "PromptFormat", "TemplateFormat", "discover", "get_format", "postprocess",
           "register", "render"]
