"""The families' tensor tables, the special cases and the streaming file formats, checked piece by piece."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from codetron.errors import CodetronError
from codetron.megatron_ext import families
from codetron.megatron_ext.config import ModelConfig
from codetron.megatron_ext.families import layouts as M
from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.safetensors_io import PlannedTensor, SafetensorsFolder, write_sharded
from codetron.convert.to_hf import parse_size


@pytest.mark.slow
def test_table_covers_every_model_key_of_a_trained_checkpoint(run_tp2pp2, run_vpp):
    """If megatron-core renames or adds a parameter, this fails before any conversion goes wrong."""
    from codetron.convert.to_hf import load_run_config
    from codetron.megatron_ext.checkpointing import resolve_checkpoint_dir

    for run, tied in ((run_tp2pp2, True), (run_vpp, False)):
        ckpt = resolve_checkpoint_dir(run)
        md = CheckpointReader(ckpt).metadata.state_dict_metadata
        model = load_run_config(ckpt).model
        table = families.get(model.family).tensors(model, tuple(md[M.WORD_EMBEDDINGS].size)[0])
        tensors = {k: tuple(v.size) for k, v in md.items() if not k.startswith("optimizer") and hasattr(v, "size")}
        assert tensors == table.megatron_shapes()  # every key, and its stacked global shape
        objects = {k for k in md if not k.startswith("optimizer") and k not in tensors}
        assert objects == set(table.extra_state_keys())
        assert (M.OUTPUT_LAYER in tensors) is not tied


@pytest.mark.parametrize("family, hf_config", [
    ("gpt_bigcode", dict(n_embd=64, n_head=4, n_layer=3, n_positions=96, n_inner=160, vocab_size=300,
                         multi_query=True, tie_word_embeddings=True)),
    ("gpt_bigcode", dict(n_embd=64, n_head=4, n_layer=2, n_positions=32, vocab_size=300, multi_query=False,
                         tie_word_embeddings=False)),
    ("starcoder2", dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3,
                        intermediate_size=160, max_position_embeddings=128, vocab_size=300, sliding_window=16,
                        tie_word_embeddings=False)),
    ("starcoder2", dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=1, num_hidden_layers=2,
                        intermediate_size=96, max_position_embeddings=64, vocab_size=300, tie_word_embeddings=True)),
])
def test_family_table_is_what_transformers_builds(family, hf_config):
    """Each family's tensor table (written once, in its module) names exactly the parameters of
    transformers' own model class with their shapes, and the parameter count is theirs."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fam = families.get(family)
    cfg = AutoConfig.for_model(family, **hf_config)
    model = fam.from_hf_config(cfg.to_dict(), "config.json")
    assert model.family == family
    hf = AutoModelForCausalLM.from_config(cfg)
    params = {k: tuple(v.shape) for k, v in hf.named_parameters()}  # a tied lm_head is the embeddings: not listed
    assert (fam.untied_output_hf in params) is not model.tie_embeddings
    assert fam.tensors(model, 384).hf_tensors() == params
    assert fam.num_parameters(model) == sum(p.numel() for p in hf.parameters())
    assert families.num_parameters(model) == fam.num_parameters(model)


def test_registry_lists_the_family_modules_and_rejects_unknown_names():
    from codetron.errors import ConfigError

    assert {"gpt_bigcode", "starcoder2"} <= set(families.names()) and list(families.names()) == sorted(families.names())
    assert [f.name for f in families.all_families()] == list(families.names())
    assert families.for_model_type("starcoder2") is families.get("starcoder2")
    assert families.for_model_type("bert") is None
    with pytest.raises(ConfigError, match=r"model.family must be one of .*gpt_bigcode.*starcoder2.*, not 'gpt2'"):
        families.get("gpt2")
    assert ModelConfig().family == families.DEFAULT_FAMILY in families.names()


def test_mqa_qkv_layout_is_queries_then_one_key_then_one_value():
    heads, hd, h = 4, 3, 12
    rows = torch.arange(M.qkv_rows(heads, 1, hd)).float().unsqueeze(1).expand(-1, h)
    hf = M.qkv_megatron_to_hf(rows, heads, 1, hd)
    # GPTBigCode MQA splits c_attn output as (n_embd, head_dim, head_dim)
    q, k, v = hf.split([heads * hd, hd, hd])
    assert torch.equal(q[:, 0], torch.arange(12).float())
    assert torch.equal(k[:, 0], torch.arange(12, 15).float()) and torch.equal(v[:, 0], torch.arange(15, 18).float())
    assert torch.equal(M.qkv_hf_to_megatron(hf, heads, 1, hd), rows)


def test_mha_qkv_layout_is_per_head():
    heads, hd = 2, 2
    bias = torch.arange(M.qkv_rows(heads, heads, hd)).float()
    hf = M.qkv_megatron_to_hf(bias, heads, heads, hd)
    # GPTBigCode MHA views c_attn output as (n_head, 3 * head_dim): head 0 = q0 k0 v0
    assert hf.view(heads, 3 * hd)[0].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(CodetronError, match="grouped-query attention"):
        M.qkv_megatron_to_hf(torch.zeros(16, 4), 4, 2, 2)


def test_streaming_safetensors_are_standard(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(5, 7, generator=g), "b": torch.randn(3, generator=g).to(torch.bfloat16),
               "c": torch.randn(2, 2, generator=g).to(torch.float16)}
    plan = [PlannedTensor(k, tuple(v.shape), v.dtype, lambda v=v: v) for k, v in tensors.items()]
    files = write_sharded(tmp_path, plan, max_shard_bytes=80)
    assert files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {"a": files[0], "b": files[1], "c": files[1]}
    assert index["metadata"]["total_size"] == 5 * 7 * 4 + 3 * 2 + 4 * 2
    for f in files:  # the reference implementation reads what we streamed
        with safe_open(str(tmp_path / f), "pt") as fh:
            for k in fh.keys():
                assert torch.equal(fh.get_tensor(k), tensors[k])
    # and our reader reads what the reference implementation wrote
    save_file(tensors, str(tmp_path / "ref.safetensors"))
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref.safetensors").rename(tmp_path / "ref" / "model.safetensors")
    folder = SafetensorsFolder(tmp_path / "ref")
    assert all(torch.equal(folder.read(k), v) for k, v in tensors.items())
    padded = torch.zeros(8, 7)
    folder.read("a", out=padded)
    assert torch.equal(padded[:5], tensors["a"]) and not padded[5:].any()


def test_checkpoint_reader_slices_match_whole_tensors(tmp_path):
    from codetron.convert.dcp_io import TensorToWrite, write_checkpoint

    full = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(0))
    # stored as 3 layers x 2 column chunks, like a TP2 row-parallel weight
    chunks = [((i, 0, c * 2), (1, 6, 2)) for i in range(3) for c in range(2)]
    t = TensorToWrite("decoder.layers.w", (3, 6, 4), torch.float32, chunks,
                      lambda o, s: full[o[0]:o[0] + s[0], :, o[2]:o[2] + s[2]].clone())
    write_checkpoint(tmp_path, [t], {"obj/shard_0_1": b"payload"}, {"iteration": 0})
    reader = CheckpointReader(tmp_path)
    assert torch.equal(reader.read("decoder.layers.w"), full)
    assert all(torch.equal(reader.read("decoder.layers.w", i), full[i]) for i in range(3))
    assert reader.read_object("obj/shard_0_1") == b"payload"
    assert len(reader.metadata.state_dict_metadata["decoder.layers.w"].chunks) == 6


def test_parse_size():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("300KB") == 300_000 and parse_size("1GiB") == 2**30
    with pytest.raises(CodetronError, match="--max-shard-size"):
        parse_size("lots")
