"""Bundled data shipped with the package (as ``codetron.data``): the default byte-level BPE
tokenizer (``tokenizer/tokenizer.json``) and the small samples the demo and tests tokenize
(``samples/``: The-Stack-style code, CommitPack commits, Evol-Instruct pairs)."""
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = DATA_DIR / "tokenizer" / "tokenizer.json"
SAMPLES_DIR = DATA_DIR / "samples"
