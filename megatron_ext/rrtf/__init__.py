"""PanGu-Coder2's RRTF, the training side: the indexed pairs dataset (``pairs``) and its writer
(``preprocess``, ``codetron rrtf preprocess``). The loss is ``megatron_ext/objectives/rrtf.py``.

Sampling, teacher responses and unit-test ranking generate data and live in
``preprocess/generate/rrtf/`` (``codetron rrtf sample|rank``).
"""
