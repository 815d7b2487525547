"""Evaluation tasks named and behaving as bigcode-evaluation-harness's tasks of the same name.

``get_task("humanevalsynthesize-js")`` returns a ``Task``: its problems (``load``), prompt and stop
words per ``--prompt`` format, post-processing of a model's output, and the full program per sample
for the sandbox. ``all_tasks()`` is what ``codetron eval tasks`` lists: the tasks of every module in
this folder, each registering its own (``base.register``); a new task is one new module here
(``docs/extending.md``).
"""
from codetron.eval.tasks.base import Task, all_tasks, get_task
from codetron.eval.tasks.run import run_programs

__all__ = ["Task", "all_tasks", "get_task", "run_programs"]
