"""The learned position table belongs to the model, not to the run's sequence length.

StarCoder checkpoints have 8192 positions and their fine-tuning recipes train at 2048: the table
must keep 8192 rows (else the checkpoint cannot load), and rows the run never reaches stay as the
checkpoint had them.
"""
from __future__ import annotations

import subprocess

import pytest
import torch
import yaml

from codetron.megatron_ext.presets import MODEL_PRESETS, RECIPES, resolve_config
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.train.conftest import VOCAB, base_args, run_train

N_POSITIONS = 256
SEQ = 64


@pytest.mark.parametrize("name,rows", [("santacoder-1b", 2048), ("starcoderbase-1b", 8192), ("starcoderbase-3b", 8192),
                                       ("starcoderbase-7b", 8192), ("starcoder-15b", 8192), ("debug-tiny", 256),
                                       # StarCoder2: RoPE, but the context its config.json declares
                                       ("starcoder2-3b", 16384), ("starcoder2-7b", 16384),
                                       ("starcoder2-15b", 16384), ("debug-starcoder2", 256),
                                       # Llama architecture: RoPE, the context config.json declares
                                       ("codellama-7b", 16384), ("deepseek-coder-6.7b-base", 16384),
                                       ("qwen2.5-coder-1.5b", 32768), ("qwen2.5-coder-7b", 32768),
                                       ("debug-llama", 256), ("debug-qwen2", 256)])
def test_presets_carry_their_checkpoints_position_table(name, rows):
    assert MODEL_PRESETS[name].model.max_position_embeddings == rows
    assert set(MODEL_PRESETS) == {"santacoder-1b", "starcoderbase-1b", "starcoderbase-3b", "starcoderbase-7b",
                                  "starcoder-15b", "debug-tiny", "starcoder2-3b", "starcoder2-7b", "starcoder2-15b",
                                  "debug-starcoder2", "codellama-7b", "deepseek-coder-6.7b-base",
                                  "qwen2.5-coder-1.5b", "qwen2.5-coder-7b", "debug-llama",
                                  "debug-qwen2"}  # a new preset gets a row here


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_no_recipe_shrinks_the_position_table(recipe):
    cfg = resolve_config(recipe=recipe)
    preset = MODEL_PRESETS[RECIPES[recipe].model_preset].model
    assert cfg.model.positions == preset.max_position_embeddings >= cfg.model.seq_length
    # ... also when the recipe is applied to another preset and the sequence is cut further
    small = resolve_config(preset="debug-tiny", recipe=recipe, overrides={"model.seq_length": 32})
    assert small.model.positions == 256


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A HF GPTBigCode shaped like debug-tiny with 256 positions, through `codetron convert from-hf`."""
    from codetron.convert.from_hf import FromHFOptions, from_hf
    from tests.helpers.models import save, tiny_gpt_bigcode

    root = tmp_path_factory.mktemp("positions")
    hf = save(tiny_gpt_bigcode(VOCAB, hidden=64, layers=4, heads=4, positions=N_POSITIONS), root / "hf")
    from_hf(hf, root / "base", FromHFOptions(progress=False))
    return hf, root / "base"


def test_finetune_at_shorter_seq_keeps_the_checkpoints_table(converted, synthetic_data, tmp_path):
    from safetensors.torch import load_file

    from codetron.convert.to_hf import ToHFOptions, to_hf

    hf, base = converted
    saved = yaml.safe_load((base / "iter_0000000" / "codetron_config.yaml").read_text())
    assert saved["model"]["max_position_embeddings"] == N_POSITIONS  # from-hf records n_positions
    save = tmp_path / "ft"
    # weight decay off: positions past SEQ get no gradient, so they must come back bit-identical
    proc = run_train(base_args(synthetic_data, 3) + [
        "--model.seq_length", str(SEQ), "--optim.weight_decay", "0", "--checkpoint.load", str(base),
        "--checkpoint.finetune", "true", "--checkpoint.save", str(save)])
    assert "finetune: loaded weights" in proc.stdout
    out = tmp_path / "hf_out"
    to_hf(save, out, ToHFOptions(progress=False))
    before = load_file(str(hf / "model.safetensors"))["transformer.wpe.weight"]
    after = load_file(str(next(out.glob("*.safetensors"))))["transformer.wpe.weight"]
    assert after.shape == (N_POSITIONS, 64)
    assert torch.equal(after[SEQ:], before[SEQ:])  # loaded, not re-initialised, and not cut
    assert not torch.equal(after[:SEQ], before[:SEQ])  # the positions the run used were trained


def test_a_different_table_fails_in_one_line_before_any_process_group(converted, synthetic_data):
    _, base = converted
    proc = subprocess.run([PYTHON, "-m", "codetron", "train", *base_args(synthetic_data, 1),
                           "--model.max_position_embeddings", "128", "--checkpoint.load", str(base),
                           "--checkpoint.finetune", "true"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "embedding.position_embeddings.weight has shape (256, 64)" in lines[0]
    assert "model.max_position_embeddings" in lines[0]
    assert "resolved config" not in proc.stdout  # stopped before start-up, so before init_process_group
