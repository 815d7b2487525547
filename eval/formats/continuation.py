"""``continue``: plain left-to-right completion of the code the answer starts with."""
from __future__ import annotations

from codetron.eval.formats.base import Completion, PromptFormat, register
from codetron.eval.prompts import truncate


@register
class Continue(PromptFormat):
    name = "continue"
    source = "plain completion; harness humaneval / humanevalpack 'continue'"
    default_task = "humaneval"
    context_first = True

    def wrap(self, inp: str, prompt_base: str) -> str:
        return prompt_base

    def complete(self, problem: Completion) -> str:
        return problem.code

    def render(self, problem: dict) -> tuple[str, str]:
        return problem["prompt"], problem["prompt"]

    def postprocess(self, problem: dict, prefix: str, output: str) -> str:
        return prefix + truncate(output, self.generation_stop())
