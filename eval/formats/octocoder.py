"""``octocoder``: OctoPack's Question/Answer prompt (arXiv:2308.07124; harness humanevalpack 'octocoder')."""
from __future__ import annotations

from codetron.eval.formats.base import TemplateFormat, register


@register
class OctoCoder(TemplateFormat):
    name = "octocoder"
    source = "OctoPack arXiv:2308.07124; harness humanevalpack 'octocoder'"
    template = "Question: {inp}\n\nAnswer:\n{prompt_base}"
