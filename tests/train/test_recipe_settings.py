"""Recipes are typed: every setting is a field of one config section with that field's type, and the
published GPU/token/day numbers are typed fields the capacity planner reads."""
import dataclasses
import typing

import pytest

from codetron.megatron_ext.config import SECTIONS, TrainConfig
from codetron.megatron_ext.presets import RECIPES, RecipeSettings, resolve_config, section_of


def _section_types() -> dict[str, dict[str, typing.Any]]:
    cfg = TrainConfig()
    return {sec: typing.get_type_hints(type(getattr(cfg, sec))) for sec in SECTIONS}


def test_every_recipe_setting_is_one_section_field_of_the_same_type():
    types = _section_types()
    for f in dataclasses.fields(RecipeSettings):
        sec = section_of(f.name)
        assert typing.get_type_hints(RecipeSettings)[f.name] == typing.Optional[types[sec][f.name]], f.name
        assert f.default is None, f"{f.name}: unset must mean 'left to the preset'"


def test_recipe_settings_resolve_in_order_preset_recipe_yaml_flags(tmp_path):
    rec = RECIPES["wizardcoder-sft"]
    flat = rec.overrides()
    assert flat["model.seq_length"] == 2048 and flat["checkpoint.finetune"] is True
    assert "optim.adam_beta1" not in flat  # unset fields stay out: the preset/defaults keep them
    cfg = resolve_config(recipe="wizardcoder-sft")
    for key, value in flat.items():
        sec, name = key.split(".")
        assert getattr(getattr(cfg, sec), name) == value, key
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  seq_length: 1024\noptim:\n  lr: 1.0e-5\n")
    cfg = resolve_config(recipe="wizardcoder-sft", yaml_path=str(y), overrides={"optim.lr": 3e-5})
    assert (cfg.model.seq_length, cfg.optim.lr, cfg.model.num_layers) == (1024, 3e-5, 40)


def test_a_setting_outside_the_sections_is_refused():
    from codetron.errors import ConfigError

    with pytest.raises(ConfigError, match="'seed' must name a field of exactly one config section"):
        section_of("seed")  # data.seed and optim.seed


def test_planner_reads_the_published_numbers(monkeypatch, capsys):
    from codetron.slurm.cli import main

    pub = RECIPES["starcoder-pretrain"]
    assert (pub.published_gpus, pub.published_tokens, pub.published_days) == (512, 1e12, 24)
    # Half the GPUs for twice the days: the planner's default device count and comparison follow.
    monkeypatch.setitem(RECIPES, "starcoder-pretrain",
                        dataclasses.replace(pub, published_gpus=256, published_days=48))
    assert main(["plan", "--recipe", "starcoder-pretrain"]) == 0
    out = capsys.readouterr().out
    assert "layout  256 x a100-80gb: TP4 PP4 DP16" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("published:"))
    assert line.startswith("published: 256 GPUs, 48 days for 1e+12 tokens -> MFU ")
