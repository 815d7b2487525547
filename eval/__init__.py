"""HumanEval-style evaluation: problems, prompt formats, generation, sandboxed execution, pass@k.

Entry point: ``codetron eval`` (eval.cli). Contracts used by other stages: ``codetron.eval.execution``
(``check_program`` / ``check_programs`` / ``ExecResult``), ``codetron.eval.passk``, ``codetron.eval.prompts`` and
``codetron.eval.formats``.
"""
