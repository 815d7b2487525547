"""``starchat``: StarChat-beta's markup, an empty system turn first (harness humanevalpack 'starchat')."""
from __future__ import annotations

from codetron.eval.formats.base import TemplateFormat, register


@register
class StarChat(TemplateFormat):
    name = "starchat"
    source = "StarChat-beta markup; harness humanevalpack 'starchat'"
    stop = ("<|end|>",)
    # the instruction tokens bigcode-evaluation-harness's README gives for StarChat-beta
    turn_tokens = ("<|user|>\n", "<|end|>\n", "<|assistant|>\n")
    template = "<|system|>\n<|end|>\n<|user|>\n{inp}<|end|>\n<|assistant|>\n{prompt_base}"
