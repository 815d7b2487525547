"""Codetron: code LLM training on megatron-core. See README.md for the data path.

The stages live in top-level folders of the repository (preprocess/, megatron_ext/, slurm/,
convert/, eval/, data/) and install as ``codetron.<stage>`` (setup.py's package_dir), so nothing
with a generic name lands in site-packages. A checkout is used through ``pip install -e .``.
"""

__version__ = "0.1.0"
