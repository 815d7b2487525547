"""``starcoder2-instruct``: StarCoder2-Instruct's chat template (``codetron.templates``) with the code
as the response prefix. Not a harness format: its published evaluation (starcoder2-self-align
``evaluation/text2code.py``) is what the completion tasks reproduce - the problem mapped to an
instruction and a response opening a python fence, generation stopped at the closing fence, the
completion appended to the original prompt (EvalPlus runs prompt + completion)."""
from __future__ import annotations

from codetron.eval.formats.base import Completion, PromptFormat, register
from codetron.templates import starcoder2_instruct_prompt

FENCE_STOP = ["\n```"]
"""text2code.py's stop sequence; the completion is then cut at the first ```."""


def fenced_completion(output: str) -> str:
    """text2code.py's completion: the output up to the first ``` (the fence closing the answer)."""
    i = output.find("```")
    return output if i == -1 else output[:i]


@register
class StarCoder2Instruct(PromptFormat):
    name = "starcoder2-instruct"
    source = "StarCoder2-15B-Instruct-v0.1 chat template and starcoder2-self-align evaluation/text2code.py"
    default_task = "humaneval"
    stop = ("###",)
    instructed = True

    def wrap(self, inp: str, prompt_base: str) -> str:
        return starcoder2_instruct_prompt(inp) + prompt_base

    def complete(self, problem: Completion) -> str:
        return self.wrap(problem.instruction, problem.response_prefix)

    def complete_stop(self, task_stop: list[str]) -> list[str]:
        return list(FENCE_STOP)

    def finish(self, problem: Completion, output: str, task_stop: list[str]) -> str:
        return problem.head + fenced_completion(output)
