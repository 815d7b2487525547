"""``pangu-coder2``: the docstring in a triple-quoted string, then the declaration, as PanGu-Coder2
describes its prompt (arXiv:2307.14936, §4.1; the exact string is not published). A completion
format: HumanEval-schema problems only."""
from __future__ import annotations

import textwrap

from codetron.eval.formats.base import Completion, PromptFormat, register
from codetron.eval.prompts import STOP_CONTINUE, split_problem, truncate

PANGU_TEMPLATE = '"""\n{docstring}\n"""\n{declaration}'


def pangu_prompt(problem: dict) -> str:
    parts = split_problem(problem)
    return PANGU_TEMPLATE.format(docstring=textwrap.indent(parts.docstring, "    "), declaration=parts.declaration)


@register
class PanGuCoder2(PromptFormat):
    name = "pangu-coder2"
    source = "PanGu-Coder2 arXiv:2307.14936 §4.1 (described, not published)"
    default_task = "humaneval"
    stop = tuple(STOP_CONTINUE)

    def complete(self, problem: Completion) -> str:
        return pangu_prompt(problem.doc)

    def render(self, problem: dict) -> tuple[str, str]:
        text = pangu_prompt(problem)
        return text, text

    def postprocess(self, problem: dict, prefix: str, output: str) -> str:
        return prefix + truncate(output, self.stop)
