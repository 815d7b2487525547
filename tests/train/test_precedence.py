"""Where each setting comes from: preset -> recipe -> YAML -> flags, a converted checkpoint's YAML
carrying the architecture only, and ``train --print-config`` naming the layer behind every value."""
from __future__ import annotations

import yaml

from codetron.megatron_ext.config import MODEL_RUN_SETTINGS, ModelConfig, TrainConfig, architecture
from codetron.megatron_ext.presets import resolve_config
from codetron.megatron_ext.train import main as train_main

# what `convert from-hf` read from a StarCoder-like config.json: n_positions 8192, dropouts 0.1
HF_MODEL = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=8192,
                       max_position_embeddings=8192, hidden_dropout=0.1, attention_dropout=0.1, vocab_size=49152)


def converted_yaml(tmp_path, model: dict) -> str:
    """A saved config shaped like the one `convert from-hf` writes next to its checkpoint."""
    path = tmp_path / "codetron_config.yaml"
    path.write_text(yaml.safe_dump({"model": model, "parallel": {"tensor_model_parallel_size": 1},
                                    "checkpoint": {"load": str(tmp_path), "finetune": True}}, sort_keys=False))
    return str(path)


def test_architecture_leaves_out_the_run_settings():
    arch = architecture(HF_MODEL)
    assert not set(MODEL_RUN_SETTINGS) & set(arch)
    assert arch["max_position_embeddings"] == 8192 and arch["num_layers"] == 2
    assert set(arch) | set(MODEL_RUN_SETTINGS) == set(vars(ModelConfig()))


def test_recipe_training_settings_win_over_a_converted_config(tmp_path):
    path = converted_yaml(tmp_path, architecture(HF_MODEL))
    cfg = resolve_config(recipe="wizardcoder-sft", yaml_path=path)
    assert cfg.model.seq_length == 2048 and cfg.model.hidden_dropout == 0.0 == cfg.model.attention_dropout
    assert cfg.model.num_layers == 2 and cfg.model.max_position_embeddings == 8192  # the converted model's shape
    # the old conversion output (whole model section) is what made 8192 and 0.1 win: an explicit YAML
    # value still outranks the recipe, and --print-config says so
    old = converted_yaml(tmp_path, vars(HF_MODEL))
    cfg = resolve_config(recipe="wizardcoder-sft", yaml_path=old)
    assert cfg.model.seq_length == 8192 and cfg.model.hidden_dropout == 0.1


def test_print_config_names_each_values_source(tmp_path, capsys):
    path = converted_yaml(tmp_path, architecture(HF_MODEL))
    assert train_main(["--recipe", "wizardcoder-sft", "--config", path, "--optim.lr", "1e-3", "--print-config"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split(":")[0].strip(): ln for ln in out.splitlines() if ":" in ln}
    assert lines["seq_length"].endswith("# recipe wizardcoder-sft")
    assert lines["num_layers"] == f"  num_layers: 2  # {path}"
    assert lines["hidden_dropout"].endswith("# preset starcoder-15b")  # the recipe's model preset, not the YAML
    assert lines["lr"] == "  lr: 0.001  # command line"
    assert lines["adam_beta1"].endswith("# default") and lines["recipe"].endswith("# command line")
    assert lines["preset"] == "preset: starcoder-15b  # recipe wizardcoder-sft"
    # the annotations are YAML comments: the printed config still loads as the resolved one
    doc = yaml.safe_load(out)
    assert doc == resolve_config(recipe="wizardcoder-sft", yaml_path=path, overrides={"optim.lr": 1e-3}).to_dict()
    assert doc != TrainConfig().to_dict()
