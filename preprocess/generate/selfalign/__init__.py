"""StarCoder2-Instruct self-alignment (``codetron selfalign``): seed functions -> concepts -> instruction ->
response with self-validation tests -> execution filter -> one passing response per instruction.

``seeds``     documented Python functions from raw code, filtered (ast rules, HumanEval/MBPP overlap,
              near-duplicates, optional pyright)
``prompts``   the few-shot prompts of S->C, C->I and I->R (byte for byte the published pipeline's), read
              from a few-shot file in the published format (``fewshot.txt``, Codetron's own examples,
              by default)
``response``  parsing and sanitising a response (whether its tests test anything: ``generate/testcheck``)
``pipeline``  the per-seed model calls, the sandboxed execution filter, selection, the summary
``smart``     the published SMART sanitisation of four-tag responses (the official last data step)
``cli``       ``codetron selfalign seeds|run|smart``

Method: BigCode, "StarCoder2-Instruct: Fully Transparent and Permissive Self-Alignment for Code
Generation" (2024) and Wei et al., "SelfCodeAlign" (arXiv:2410.24198); the published pipeline is
bigcode-project/starcoder2-self-align (0b19dbcd). The code here is written on the shared generation
modules (one HTTP client, runner, resumable store, output filtering) and matched to that code where it
says so; docs/recipes.md (StarCoder2-Instruct) lists every rule, its upstream line and any deviation.
"""
