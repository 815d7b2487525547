"""``wizardcoder``: the Alpaca preamble with ``### Instruction:`` / ``### Response:``, as the harness's
humanevalpack 'wizardcoder' prompt writes it after WizardCoder's ``src/humaneval_gen.py``."""
from __future__ import annotations

from codetron.eval.formats.base import TemplateFormat, register
from codetron.templates import ALPACA_PREAMBLE


@register
class WizardCoder(TemplateFormat):
    name = "wizardcoder"
    source = "WizardCoder src/humaneval_gen.py; harness humanevalpack 'wizardcoder' and instruct_wizard_humaneval"
    template = ALPACA_PREAMBLE + "\n\n### Instruction:\n{inp}\n\n### Response:\n{prompt_base}"
