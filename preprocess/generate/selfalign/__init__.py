"""StarCoder2-Instruct self-alignment (``codetron selfalign``): seed functions -> concepts -> instruction ->
response with self-validation tests -> execution filter -> one passing response per instruction.

``seeds``     documented Python functions from raw code, filtered (ast rules, HumanEval/MBPP overlap,
              near-duplicates, optional pyright)
``prompts``   the few-shot prompts of S->C, C->I and I->R, read from ``fewshot.txt`` (a data file)
``response``  parsing and sanitising a response; rejecting tests that test nothing
``pipeline``  the per-seed model calls, the sandboxed execution filter, selection, the summary
``cli``       ``codetron selfalign seeds|run``

Method: BigCode, "StarCoder2-Instruct: Fully Transparent and Permissive Self-Alignment for Code
Generation" (2024) and Wei et al., "SelfCodeAlign" (arXiv:2410.24198); the published pipeline is
bigcode-project/starcoder2-self-align. The code here is written from those descriptions on the shared
generation modules (one HTTP client, runner, resumable store, output filtering).
"""
