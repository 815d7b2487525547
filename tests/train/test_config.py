"""Presets, recipes, config resolution and the one-line errors for bad configs."""
import subprocess

import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import ParallelConfig, parse_cli_overrides
from codetron.megatron_ext.presets import MODEL_PRESETS, RECIPES, resolve_config
from tests.conftest import PYTHON, ROOT, subprocess_env


@pytest.mark.parametrize("name", list(MODEL_PRESETS))
def test_every_preset_builds_a_transformer_config(name):
    from codetron.megatron_ext.model import padded_vocab_size, transformer_config

    cfg = resolve_config(preset=name)
    tc = transformer_config(cfg.model, ParallelConfig())
    if cfg.model.family == "gpt_bigcode":
        assert tc.num_query_groups == 1 and tc.window_size is None  # multi-query attention, full context
        assert tc.ffn_hidden_size == 4 * cfg.model.hidden_size
    elif cfg.model.family == "starcoder2":  # grouped-query attention, sliding window (W - 1 keys back + the query)
        assert 1 < tc.num_query_groups < tc.num_attention_heads
        assert tc.window_size == (cfg.model.sliding_window - 1, 0)
        assert tc.ffn_hidden_size == 4 * cfg.model.hidden_size
    else:  # Llama: RMSNorm, SwiGLU at the config's size, no biases but Qwen2's on q/k/v, full context
        assert tc.normalization == "RMSNorm" and tc.gated_linear_unit and not tc.add_bias_linear
        assert tc.add_qkv_bias is bool(cfg.model.qkv_bias) and tc.window_size is None
        assert tc.ffn_hidden_size == cfg.model.ffn_hidden_size and tc.num_query_groups <= tc.num_attention_heads
    assert tc.num_layers == cfg.model.num_layers and tc.hidden_size == cfg.model.hidden_size
    assert padded_vocab_size(cfg.model.vocab_size or 8192, cfg.model, ParallelConfig()) % 128 == 0


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_builds_with_its_parallel_layout(name):
    from codetron.megatron_ext.model import transformer_config
    from codetron.megatron_ext.validate import validate

    cfg = resolve_config(recipe=name)
    p = cfg.parallel
    world = p.tensor_model_parallel_size * p.pipeline_model_parallel_size * 8
    cfg.optim.precision = "fp32"  # TransformerConfig checks bf16 kernels only on GPU
    cfg.parallel.sequence_parallel = False
    cfg.checkpoint.load = "base-model"  # fine-tuning recipes start from a checkpoint
    transformer_config(cfg.model, cfg.parallel, cfg.optim)
    validate(cfg, world, check_data=False)


def test_starcoder_numbers_match_the_paper():
    m = MODEL_PRESETS["starcoder-15b"].model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.seq_length, m.vocab_size) == (40, 6144, 48, 8192, 49152)
    assert abs(families.num_parameters(m) / 1e9 - 15.5) < 0.1
    cfg = resolve_config(recipe="starcoder-pretrain")
    o = cfg.optim
    assert (o.global_batch_size, o.lr, o.min_lr, o.lr_warmup_iters, o.train_iters) == (512, 3e-4, 3e-5, 2000, 250_000)
    assert (o.weight_decay, o.adam_beta2, o.clip_grad, o.lr_decay_style) == (0.1, 0.95, 1.0, "cosine")
    assert cfg.data.fim_rate == 0.5
    w = resolve_config(recipe="wizardcoder-sft").optim
    assert (w.global_batch_size, w.train_iters, w.lr_warmup_iters, w.lr, w.lr_decay_style) == (512, 200, 30, 2e-5, "cosine")
    assert resolve_config(recipe="wizardcoder-sft").model.seq_length == 2048


def test_override_order_and_types(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("preset: debug-tiny\noptim:\n  lr: 1.0e-3\n  train_iters: 7\nmodel:\n  num_layers: 2\n")
    cfg = resolve_config(yaml_path=str(y), overrides=parse_cli_overrides(
        ["--optim.train_iters", "9", "--global_batch_size", "16", "--data.data_path", "a", "b", "--finetune"]))
    assert cfg.model.num_layers == 2 and cfg.optim.lr == 1e-3 and cfg.optim.train_iters == 9
    assert cfg.optim.global_batch_size == 16 and cfg.data.data_path == ["a", "b"] and cfg.checkpoint.finetune is True


@pytest.mark.parametrize("flags,needle", [
    (["--optim.train_iters", "abc"], "optim.train_iters: cannot read 'abc' as int"),
    (["--no_such_field", "1"], "unknown config key 'no_such_field'"),
    (["--seed", "3"], "'seed' is ambiguous"),
])
def test_bad_overrides_raise_one_line(flags, needle):
    with pytest.raises(ConfigError) as exc:
        resolve_config(preset="debug-tiny", overrides=parse_cli_overrides(flags))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def _cli(args, env=None):
    return subprocess.run([PYTHON, "-m", "codetron", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          env=subprocess_env(**(env or {})), timeout=120)


@pytest.mark.parametrize("extra,env,needle", [
    (["--parallel.tensor_model_parallel_size", "2"], {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"},
     "world size 3 is not divisible by tensor x pipeline parallel = 2x1 = 2"),
    (["--parallel.tensor_model_parallel_size", "3"], {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"},
     "num_attention_heads 4 is not divisible by tensor_model_parallel_size 3"),
    (["--optim.global_batch_size", "6", "--optim.micro_batch_size", "4"], {}, "global_batch_size 6 is not divisible"),
    (["--data.data_path", "/nonexistent/prefix"], {}, "/nonexistent/prefix.bin does not exist"),
    (["--preset", "starcoder-99b"], {}, "unknown preset 'starcoder-99b'"),
])
def test_bad_configs_fail_in_one_line_before_any_process_group(synthetic_data, extra, env, needle):
    args = ["--preset", "debug-tiny", "--data.data_path", synthetic_data, "--data.tokenizer", "null:256", *extra]
    proc = _cli(args, env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("codetron train: error:"), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_help_and_field_listing():
    top = subprocess.run([PYTHON, "-m", "codetron", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "preprocess" in top.stdout and "convert" in top.stdout
    fields = _cli(["--fields"])
    assert fields.returncode == 0 and "--optim.lr" in fields.stdout and "Peak learning rate" in fields.stdout


def test_recipe_and_preset_flags_win_over_the_yaml(tmp_path):
    """preset -> recipe -> YAML -> flags: `--recipe X --config run.yaml` trains recipe X even when the YAML
    (a saved run config) names another, and records X."""
    import yaml

    from codetron.megatron_ext.presets import resolve_config

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"recipe": "wizardcoder-sft", "preset": "debug-tiny", "optim": {"lr": 0.5}}))
    chosen = resolve_config(recipe="octocoder-sft", yaml_path=str(path))
    assert (chosen.recipe, chosen.preset, chosen.optim.lr) == ("octocoder-sft", "debug-tiny", 0.5)
    assert chosen.optim.global_batch_size == resolve_config(recipe="octocoder-sft").optim.global_batch_size
    from_file = resolve_config(yaml_path=str(path))
    assert from_file.recipe == "wizardcoder-sft"
    path.write_text(yaml.safe_dump({"recipe": None}))
    assert resolve_config(recipe="octocoder-sft", yaml_path=str(path)).recipe == "octocoder-sft"
