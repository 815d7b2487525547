"""Every shipped recipe runs as shipped, scaled down only in size.

Each test keeps the recipe's own settings -- precision (bf16), data mode (FIM / packed SFT / RRTF),
optimizer and schedule, distributed optimizer, dropout, fine-tuning from a checkpoint -- and shrinks
only the model (debug-tiny), the sequence length, the batch and the layout (at most 4 CPU ranks,
TP>1 and PP>1 kept where the recipe has them). Data is written by `codetron preprocess` from the
bundled samples with the bundled tokenizer, exactly as the README does it. Fine-tuning recipes start
from `codetron convert from-hf` of a Hugging Face GPTBigCode whose position table (n_positions 256)
is larger than the run's sequence length; StarCoder2 recipes shrink to the tiny StarCoder2 preset and
start from a converted Starcoder2ForCausalLM of that shape (sliding window shorter than the sequence). Every run stops after a checkpoint, resumes, finishes and
converts back with `to-hf --check`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env

TOKENIZER = ROOT / "data" / "tokenizer" / "tokenizer.json"
N_POSITIONS = 256
STOP_AT = 2

# What shrinks, per recipe: the layout (<= 4 ranks), batch and sequence; everything else is the recipe's.
# A row may say data="RECIPE" to train on the data written for that recipe (a new recipe of the same data
# mode needs no new preprocessing here; docs/extending.md).
# Instruction samples keep whole prompts (up to ~150 tokens in the bundled samples), so SFT rows are
# longer than pretraining rows; every sequence stays below the 256-position table.
SCALED = {
    "starcoder-pretrain": dict(tp=2, pp=2, nproc=4, gbs=8, iters=4, seq=64),
    "wizardcoder-sft": dict(tp=2, pp=2, nproc=4, gbs=8, iters=4, seq=192),
    "octocoder-sft": dict(tp=2, pp=1, nproc=4, gbs=8, iters=4, seq=192),   # TP4 PP1 -> TP2 x DP2
    "rrtf": dict(tp=2, pp=2, nproc=4, gbs=8, iters=None, seq=64),          # steps from the recipe's epochs
    # TP4 PP2 -> TP2 PP2; batch 4 so the 12 bundled samples make several steps of the recipe's 4 epochs
    "starcoder2-instruct": dict(tp=2, pp=2, nproc=4, gbs=4, iters=None, seq=192, preset="debug-starcoder2"),
    # TP2 x DP2 as shipped (TP2 PP1); batch 4 so the 12 bundled samples make 9 steps of the recipe's 3 epochs
    "deepseek-coder-sft": dict(tp=2, pp=1, nproc=4, gbs=4, iters=None, seq=192, preset="debug-llama"),
}

BASES = {"gpt_bigcode": "base_checkpoint", "starcoder2": "base_checkpoint_starcoder2", "llama": "base_checkpoint_llama"}
"""The converted HF model each family's fine-tuning recipes start from."""


def _run(cmd: list[str], timeout: int = 400):
    import subprocess

    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def _codetron(*args, nproc: int = 1, timeout: int = 400):
    launcher = [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone"] if nproc > 1 else [PYTHON]
    return _run([*launcher, "-m", "codetron", *args], timeout=timeout)


def _vocab() -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER)).get_vocab_size()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recipes")


@pytest.fixture(scope="module")
def base_checkpoint(work) -> Path:
    """A HF GPTBigCode shaped like debug-tiny with an 8192-token vocabulary and 256 positions,
    converted with `codetron convert from-hf` -- the README's fine-tune starting point."""
    from tests.helpers.models import save, tiny_gpt_bigcode

    hf = save(tiny_gpt_bigcode(_vocab(), hidden=64, layers=4, heads=4, positions=N_POSITIONS), work / "hf_base")
    out = work / "base"
    _codetron("convert", "from-hf", hf, out)
    return out


@pytest.fixture(scope="module")
def base_checkpoint_starcoder2(work) -> Path:
    """A HF Starcoder2ForCausalLM shaped like debug-starcoder2 (GQA 4/2, untied, 32-token window)
    with the bundled vocabulary and 256 positions, converted with `codetron convert from-hf`."""
    from tests.helpers.models import save, starcoder2_preset_shape, tiny_starcoder2

    model = tiny_starcoder2(_vocab(), positions=N_POSITIONS, **starcoder2_preset_shape("debug-starcoder2"))
    hf = save(model, work / "hf_base_starcoder2")
    out = work / "base_starcoder2"
    _codetron("convert", "from-hf", hf, out)
    return out


@pytest.fixture(scope="module")
def base_checkpoint_llama(work) -> Path:
    """A HF LlamaForCausalLM shaped like debug-llama (GQA 4/2, SwiGLU, RMSNorm, linear RoPE x2, untied)
    with the bundled vocabulary and 256 positions, converted with `codetron convert from-hf`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from codetron.megatron_ext.presets import get_model_preset

    m = get_model_preset("debug-llama").model
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=_vocab(), hidden_size=m.hidden_size, intermediate_size=m.ffn,
                      num_hidden_layers=m.num_layers, num_attention_heads=m.num_attention_heads,
                      num_key_value_heads=m.num_query_groups, max_position_embeddings=N_POSITIONS,
                      rms_norm_eps=m.layernorm_epsilon, tie_word_embeddings=m.tie_embeddings,
                      rope_parameters={**m.rope_scaling, "rope_theta": m.rotary_base},
                      bos_token_id=0, eos_token_id=0)
    hf = work / "hf_base_llama"
    LlamaForCausalLM(cfg).save_pretrained(str(hf))
    out = work / "base_llama"
    _codetron("convert", "from-hf", hf, out)
    return out


@pytest.fixture(scope="module")
def data(work) -> dict[str, str]:
    """Each recipe's data mode, written by `codetron preprocess` from the bundled samples."""
    samples = ROOT / "data" / "samples"
    d = work / "data"
    out = {
        "starcoder-pretrain": str(d / "stack"),
        "wizardcoder-sft": str(d / "evol"),
        "octocoder-sft": str(d / "commits"),
        "rrtf": str(d / "pairs"),
        "starcoder2-instruct": str(d / "selfalign"),
        "deepseek-coder-sft": str(d / "deepseek"),
    }
    _codetron("preprocess", "code", samples / "the_stack_sample.jsonl", "-o", out["starcoder-pretrain"],
              "--tokenizer", TOKENIZER, "--quiet")
    _codetron("preprocess", "instruct", samples / "evol_instruct_sample.json", "--template", "wizardcoder",
              "-o", out["wizardcoder-sft"], "--tokenizer", TOKENIZER, "--quiet")
    _codetron("preprocess", "commitpack", samples / "commitpack_sample.jsonl", "--commit-format", "octocoder",
              "--layout", "sft", "-o", out["octocoder-sft"], "--tokenizer", TOKENIZER, "--quiet")
    _codetron("preprocess", "instruct", samples / "evol_instruct_sample.json", "--template", "starcoder2-instruct",
              "-o", out["starcoder2-instruct"], "--tokenizer", TOKENIZER, "--quiet")
    # the recipe ships no template (docs/recipes.md); plain instruction/response pairs
    _codetron("preprocess", "instruct", samples / "evol_instruct_sample.json", "--template", "plain",
              "-o", out["deepseek-coder-sft"], "--tokenizer", TOKENIZER, "--quiet")
    ranked = d / "ranked.jsonl"
    with ranked.open("w") as fh:
        for k in range(6):
            fh.write(json.dumps({
                "prompt": f"def add_{k}(a, b):\n    \"\"\"Return a plus {k} plus b.\"\"\"\n",
                "chosen": f"    return a + {k} + b\n",
                "rejected": f"    return a - b  # wrong {k}\n",
                "scores": [3.0, float(k % 3)]}) + "\n")
    _codetron("rrtf", "preprocess", "--input", ranked, "--out", out["rrtf"], "--tokenizer", TOKENIZER)
    out.update({name: out[s["data"]] for name, s in SCALED.items() if "data" in s})
    return out


def _recipe_args(name: str, data_prefix: str, save: Path, base: Path | None, log: Path) -> list[str]:
    s = SCALED[name]
    args = ["train", "--recipe", name, "--preset", s.get("preset", "debug-tiny"),
            "--model.seq_length", str(s["seq"]),
            "--parallel.tensor_model_parallel_size", str(s["tp"]),
            "--parallel.pipeline_model_parallel_size", str(s["pp"]),
            "--optim.global_batch_size", str(s["gbs"]),
            "--data.data_path", data_prefix, "--data.tokenizer", str(TOKENIZER),
            "--checkpoint.save", str(save), "--logging.loss_log", str(log)]
    if s["iters"] is not None:
        # Published horizons (250k / 200 / 35 steps) shrink to a few steps, warmup in proportion.
        args += ["--optim.train_iters", str(s["iters"]), "--optim.lr_warmup_iters", "1"]
    if base is not None:
        args += ["--checkpoint.load", str(base)]
    return args


def _saved_config(save: Path) -> dict:
    it = (save / "latest_checkpointed_iteration.txt").read_text().strip()
    return yaml.safe_load((save / f"iter_{int(it):07d}" / "codetron_config.yaml").read_text())


def test_every_shipped_recipe_is_run_here():
    """A recipe added to the registry without a row in SCALED would ship untested."""
    from codetron.megatron_ext.presets import RECIPES

    assert sorted(SCALED) == sorted(RECIPES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCALED))
def test_recipe_runs_as_shipped(name, work, data, request):
    from codetron.megatron_ext.presets import resolve_config

    shipped = resolve_config(recipe=name)
    finetune = shipped.checkpoint.finetune
    family = shipped.model.family
    base = request.getfixturevalue(BASES[family]) if finetune else None
    save, log = work / f"run_{name}", work / f"{name}.jsonl"
    args = _recipe_args(name, data[name], save, base, log)
    nproc = SCALED[name]["nproc"]

    first = _codetron(*args, "--checkpoint.exit_at_iter", str(STOP_AT), nproc=nproc)
    if finetune:
        assert "finetune: loaded weights" in first.stdout
    if shipped.parallel.sequence_parallel:
        # a GPU-only setting: dropped on CPU with one line, not an error
        dropped = [ln for ln in first.stdout.splitlines() if "sequence_parallel" in ln and "dropped" in ln]
        assert len(dropped) == 1, first.stdout[-3000:]
    assert json.loads((save / "run_state.json").read_text())["state"] == "preempted"

    second = _codetron(*args, nproc=nproc)
    assert "resumed from" in second.stdout
    state = json.loads((save / "run_state.json").read_text())
    assert state["state"] == "finished"

    # The run kept the recipe's settings: only size, sequence, batch and layout were changed.
    saved = _saved_config(save)
    o, so = saved["optim"], shipped.optim
    assert o["precision"] == so.precision == "bf16"
    for key in ("lr", "min_lr", "lr_decay_style", "lr_warmup_fraction", "weight_decay", "adam_beta1", "adam_beta2",
                "adam_eps", "clip_grad", "micro_batch_size"):
        assert o[key] == getattr(so, key), key
    for key in ("mode", "fim_rate", "fim_spm_rate", "pack", "norm_target_loss"):
        assert saved["data"][key] == getattr(shipped.data, key), key
    for key in ("family", "hidden_dropout", "attention_dropout", "recompute"):
        assert saved["model"][key] == getattr(shipped.model, key), key
    assert saved["parallel"]["use_distributed_optimizer"] == shipped.parallel.use_distributed_optimizer
    assert saved["model"]["max_position_embeddings"] == N_POSITIONS  # the table is never shrunk to seq

    log_rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    steps = [r["step"] for r in log_rows]
    total = state["train_iters"]
    assert steps == list(range(1, total + 1)), steps
    assert all(r["loss"] == r["loss"] and abs(r["loss"]) < 1e4 for r in log_rows)  # finite
    if name == "rrtf":
        assert shipped.optim.train_epochs == 6
        assert total > 1 and "train_epochs" in first.stdout
    if name == "starcoder2-instruct":
        assert shipped.optim.train_epochs == 4 and shipped.optim.lr_warmup_fraction == 0.05
        assert shipped.model.sliding_window == 4096 and saved["model"]["sliding_window"] < s_seq(name)
        assert total > STOP_AT and "train_epochs 4" in first.stdout
        lrs = [r["lr"] for r in log_rows]
        # int(0.05 x a few steps) = 0 warmup steps: the schedule starts at the peak and decays linearly to 0
        assert 0.5 * shipped.optim.lr < lrs[0] <= shipped.optim.lr
        assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.5 * lrs[0]

    hf = work / f"hf_{name}"
    conv = _codetron("convert", "to-hf", save, hf, "--check")
    assert "check passed" in conv.stdout, conv.stdout[-2000:]
    hf_cfg = json.loads((hf / "config.json").read_text())
    if family == "gpt_bigcode":
        assert hf_cfg["n_positions"] == N_POSITIONS
    else:
        assert hf_cfg["model_type"] == family and hf_cfg["max_position_embeddings"] == N_POSITIONS
    if name == "deepseek-coder-sft":
        # 3 epochs of the (at most 12) bundled samples, 4 per step
        assert shipped.optim.train_epochs == 3 and STOP_AT < total <= 9 and "train_epochs 3" in first.stdout
        lrs = [r["lr"] for r in log_rows]
        # the recipe's 10 warmup steps outlast this run: the lr rises all the way, below the peak
        assert all(a < b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < shipped.optim.lr
        rope = hf_cfg["rope_parameters"]
        assert (rope["rope_type"], rope["factor"]) == ("linear", 2.0) and hf_cfg["rope_scaling"]["factor"] == 2.0


def s_seq(name: str) -> int:
    return SCALED[name]["seq"]
