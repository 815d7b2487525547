"""``instruct``: the instruction, a blank line, then the code (the harness's humanevalpack 'instruct')."""
from __future__ import annotations

from codetron.eval.formats.base import TemplateFormat, register


@register
class Instruct(TemplateFormat):
    name = "instruct"
    source = "harness humanevalpack prompt 'instruct'"
    context_first = True
    template = "{inp}\n\n{prompt_base}"
