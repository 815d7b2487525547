"""Data generation: new training data written by models, next to the preprocess stage that tokenizes it.

``evolve/``    Evol-Instruct (WizardCoder / PanGu-Coder2) and self-instruct (StarCoder2-Instruct)
               against a model server or a local model                           (codetron evolve)
``selfalign/`` StarCoder2-Instruct self-alignment: seed functions from raw code, S->C->I->R few-shot,
               execution filter on self-written tests, one passing response each (codetron selfalign)
``rrtf/``      PanGu-Coder2 RRTF data: student sampling, teacher responses, unit-test ranking
               into (chosen, rejected) pairs                                     (codetron rrtf)

Shared by every generator, so a new one (e.g. self-alignment) starts from them:

``backends``   the one OpenAI-compatible HTTP client (retries, back-off, request budget) and a
               local transformers backend with the same ``chat`` interface
``runner``     network-bound units of work on a thread pool that stops cleanly and resumes
``seeds``      seed instructions / code snippets from jsonl, parquet or ``.py`` trees
``store``      append-only, fsynced jsonl logs (resume after a crash, torn last line cut off)
``output``     the training file: decontaminated, deduplicated instruction records

Model inference and sandboxed execution come from eval's public APIs (``codetron.eval.generate.Generator``,
``codetron.eval.execution.check_programs``, ``codetron.eval.serve.Engine``). What trains on the results lives in
``megatron_ext`` (the RRTF pairs dataset and loss).
"""
