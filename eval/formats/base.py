"""What a prompt format is, and the registry of them.

A format is how a model is addressed. It owns the text around a task's problem (its template), the
stop sequences it adds (an end-of-turn marker), and the clean-up of a model's answer where the
format's published evaluation defines one. Tasks (``codetron.eval.tasks``) hand a format their
problem in one of two shapes and never test a format's name:

- HumanEvalPack tasks give an instruction, an optional code context and the code the answer starts
  with (``join`` then ``wrap``; the harness's ``HumanEvalPack.get_prompt``);
- completion tasks (HumanEval, MBPP and their + versions) give a ``Completion``: the harness prompt a
  plain completion continues and the (instruction, response prefix) of StarCoder2-Instruct's mapping
  (``complete``, ``complete_stop``, ``finish``).

``render`` / ``postprocess`` / ``generation_stop`` handle a HumanEval-schema problem without a task
(RRTF sampling, ``codetron eval generate`` without ``--task``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from codetron.errors import CodetronError
from codetron.eval.prompts import (EOS, PYTHON_STOP, STOP_CONTINUE, cut_python_block, python_instruction,
                                   truncate)


@dataclass(frozen=True, slots=True)
class Completion:
    """A completion-style problem (HumanEval or MBPP schema) as a task hands it to a format."""

    doc: dict
    """The problem record."""
    code: str
    """The harness's prompt: what a plain completion continues."""
    head: str
    """The code a chat answer's completion is appended to for execution (EvalPlus: the original prompt)."""
    instruction: str
    """The instruction of StarCoder2-Instruct's mapping of this problem (starcoder2-self-align text2code.py)."""
    response_prefix: str
    """The code that mapping opens the response with."""


class PromptFormat:
    """One ``--prompt`` format; subclasses set the class attributes and register themselves."""

    name: ClassVar[str]
    """The ``--prompt`` value."""
    source: ClassVar[str]
    """Where the exact text comes from."""
    stop: ClassVar[tuple[str, ...]] = ()
    """Extra stop sequences this format adds to a task's own (its end-of-turn marker)."""
    context_first: ClassVar[bool] = False
    """HumanEvalFix/Explain put the code context before the instruction (harness: continue, instruct)."""
    turn_tokens: ClassVar[tuple[str, str, str] | None] = None
    """(user, end of turn, assistant) tokens, for tasks that take them (instruct-humaneval)."""
    instructed: ClassVar[bool] = False
    """Addresses the model with an instruction: the HumanEvalPack tasks take every such format."""
    default_task: ClassVar[str] = "humanevalsynthesize-python"
    """The task ``codetron eval`` runs for ``--prompt NAME`` without ``--task``."""

    # ------------------------------------------------------------------ HumanEvalPack
    def join(self, instruction: str, context: str) -> str:
        """The harness's ``inp``: the instruction and the code it is about, in this format's order."""
        return context + "\n" + instruction if self.context_first else instruction + "\n" + context

    def wrap(self, inp: str, prompt_base: str) -> str:
        """The harness's HumanEvalPack prompt before its final strip: ``inp`` addressed in this format,
        then the code the answer starts with."""
        raise CodetronError(f"prompt format {self.name!r} is not one the HumanEvalPack tasks take")

    # ------------------------------------------------------------------ completion tasks
    def complete(self, problem: Completion) -> str:
        """The prompt of a completion-style problem (HumanEval, MBPP)."""
        raise CodetronError(f"prompt format {self.name!r} has no prompt for completion tasks (HumanEval, MBPP)")

    def complete_stop(self, task_stop: list[str]) -> list[str]:
        """The stop sequences of a completion task in this format, given the task's own (the harness's)."""
        return list(task_stop)

    def finish(self, problem: Completion, output: str, task_stop: list[str]) -> str:
        """The code of a sample: the prompt and the output cut at the first stop sequence."""
        return self.complete(problem) + truncate(output, self.complete_stop(task_stop))

    # ------------------------------------------------------------------ HumanEval schema, no task
    def render(self, problem: dict) -> tuple[str, str]:
        """``(model input, code prefix)``: the instruction formats render as the harness's
        ``humanevalsynthesize-python`` does; the prefix is the prompt the answer continues, end stripped."""
        return self.wrap(python_instruction(problem).strip(), problem["prompt"]).strip(), problem["prompt"].rstrip()

    def postprocess(self, problem: dict, prefix: str, output: str) -> str:
        """A raw output as the sample's code (harness humanevalsynthesize-python post-processing)."""
        stop = PYTHON_STOP + list(self.stop) + [EOS]
        return prefix + cut_python_block(truncate(output.rstrip(), stop))

    def generation_stop(self) -> tuple[str, ...]:
        """Stop sequences of ``render``'s prompts."""
        return self.stop or tuple(STOP_CONTINUE)


REGISTRY: dict[str, PromptFormat] = {}
"""Every registered format by name (``codetron.eval.formats.FORMATS``)."""


def register(cls: type[PromptFormat]) -> type[PromptFormat]:
    """Class decorator: one instance of ``cls`` becomes the format named ``cls.name``."""
    if cls.name in REGISTRY and type(REGISTRY[cls.name]) is not cls:
        raise CodetronError(f"prompt format {cls.name!r} registered twice ({REGISTRY[cls.name].__module__} "
                            f"and {cls.__module__})")
    REGISTRY[cls.name] = cls()
    return cls


class TemplateFormat(PromptFormat):
    """A format whose HumanEvalPack prompt is one template over ``inp`` and ``prompt_base``."""

    instructed = True
    template: ClassVar[str]
    """``str.format`` template with the fields ``inp`` and ``prompt_base``."""

    def wrap(self, inp: str, prompt_base: str) -> str:
        return self.template.format(inp=inp, prompt_base=prompt_base)
