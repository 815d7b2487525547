"""PanGu-Coder2's RRTF (Rank Responses to align Test & Teacher Feedback): the data side.

``codetron rrtf sample``      student responses from a Hugging Face model folder at several
                              temperatures, teacher responses from files or an OpenAI-compatible server
``codetron rrtf rank``        run every response against the problem's unit tests in the eval sandbox,
                              score compile error < runtime error < partial pass < all pass, write
                              every pair of responses with r_i < r_j (teacher and students alike)
                              + per-tier statistics
``codetron rrtf preprocess``  tokenize pairs into the indexed pairs dataset (``codetron.megatron_ext.rrtf``)
``codetron train --data.mode rrtf``  L = L_rank + L_ft (``megatron_ext/objectives/rrtf.py``)

Modules: ``problems`` (problem schema, PanGu-Coder2 prompt), ``scoring`` (tiers, test harness),
``sample``, ``teacher``, ``rank``, ``cli``.
"""
