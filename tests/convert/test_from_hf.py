"""HF -> megatron-core -> HF: bit-identical round trips, numerical parity, fine-tuning from a conversion."""
from __future__ import annotations

import json

import pytest
import torch

from codetron.convert.dcp_io import CheckpointReader
from codetron.convert.from_hf import FromHFOptions, from_hf
from codetron.convert.to_hf import ToHFOptions, to_hf
from tests.convert.conftest import PYTHON, check_json, read_tensors, run, tiny_hf_model


def _bit_identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)


@pytest.mark.parametrize("multi_query,tie,layout", [
    (True, True, dict(tp=2, pp=2)),
    (True, False, dict(tp=4, pp=2, vpp=2)),
    (False, True, dict(tp=2, pp=1)),  # multi-head GPTBigCode: per-head [q;k;v] rows
])
def test_round_trip_is_bit_identical(tmp_path, multi_query, tie, layout):
    src = tiny_hf_model(tmp_path / "hf", multi_query=multi_query, tie=tie)
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False, **layout))
    to_hf(tmp_path / "meg", tmp_path / "back", ToHFOptions(progress=False))
    original = read_tensors(src)
    if tie:
        original.pop("lm_head.weight", None)  # tied: transformers may store the alias, we never do
    assert _bit_identical(original, read_tensors(tmp_path / "back"))
    # and once in our own format, the files themselves round-trip byte for byte
    from_hf(tmp_path / "back", tmp_path / "meg2", FromHFOptions(progress=False, **layout))
    to_hf(tmp_path / "meg2", tmp_path / "back2", ToHFOptions(progress=False))
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == (tmp_path / "back2" / "model.safetensors").read_bytes()


def test_checkpoint_is_chunked_like_the_target_layout(tmp_path):
    src = tiny_hf_model(tmp_path / "hf")
    from_hf(src, tmp_path / "meg", FromHFOptions(tp=2, pp=2, progress=False))
    reader = CheckpointReader(tmp_path / "meg" / "iter_0000000")
    md = reader.metadata.state_dict_metadata
    emb = md["embedding.word_embeddings.weight"]
    assert tuple(emb.size) == (384, 64)  # 321 padded to a multiple of 128
    assert sorted(tuple(c.offsets) for c in emb.chunks) == [(0, 0), (192, 0)]
    qkv = md["decoder.layers.self_attention.linear_qkv.weight"]
    assert tuple(qkv.size) == (4, 96, 64) and len(qkv.chunks) == 8  # 4 layers x 2 TP ranks
    assert torch.count_nonzero(reader.read("embedding.word_embeddings.weight")[321:]) == 0
    extra = [k for k in md if "_extra_state" in k]
    assert len(extra) == 16 and "decoder.layers.mlp.linear_fc1._extra_state/shard_3_4" in extra
    cfg = (tmp_path / "meg" / "iter_0000000" / "codetron_config.yaml").read_text()
    assert "tensor_model_parallel_size: 2" in cfg and "vocab_size: 321" in cfg
    assert (tmp_path / "meg" / "latest_checkpointed_iteration.txt").read_text() == "0"


@pytest.mark.slow
def test_converted_multihead_model_matches_megatron(tmp_path):
    """Numerical proof of the HF->megatron direction (and of the MHA c_attn layout)."""
    src = tiny_hf_model(tmp_path / "hf", multi_query=False, tie=False)
    from_hf(src, tmp_path / "meg", FromHFOptions(tp=2, progress=False))
    res = check_json(tmp_path / "meg", src, "--seq-len", "48", "--new-tokens", "10")
    assert res["max_abs_diff"] <= 1e-4 and res["greedy_equal"], res


@pytest.mark.slow
def test_finetune_resumes_from_converted_checkpoint(tmp_path, token_data, tokenizer_json):
    """`codetron train --checkpoint.finetune` starts from a from-hf checkpoint. With lr 0 the step must
    leave every weight untouched, so converting its checkpoint back reproduces the HF model exactly:
    the weights were loaded, not initialised, and saved back in training's own layout."""
    src = tiny_hf_model(tmp_path / "hf", vocab=321)
    (src / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    from_hf(src, tmp_path / "meg", FromHFOptions(progress=False))
    proc = run([PYTHON, "-m", "codetron", "train", "--config", str(tmp_path / "meg" / "iter_0000000" / "codetron_config.yaml"),
                "--data.data_path", token_data, "--checkpoint.save", str(tmp_path / "ft"),
                "--model.seq_length", "64", "--optim.train_iters", "1", "--optim.lr", "0", "--optim.min_lr", "0",
                "--optim.lr_warmup_iters", "0"])
    assert "finetune: loaded weights" in proc.stdout
    loss = float(proc.stdout.split("loss ")[1].split()[0])
    assert 0 < loss < 10
    to_hf(tmp_path / "ft", tmp_path / "back", ToHFOptions(progress=False))
    original = read_tensors(src)
    original.pop("lm_head.weight", None)
    assert _bit_identical(original, read_tensors(tmp_path / "back"))
    report = json.loads((tmp_path / "back" / "codetron_conversion.json").read_text())
    assert report["iteration"] == 1 and (tmp_path / "back" / "tokenizer.json").is_file()


def test_embeddings_written_in_row_blocks_still_round_trip(tmp_path, monkeypatch):
    """from-hf splits embeddings into small row blocks (bounded memory); to-hf streams them back."""
    import codetron.convert.streaming as streaming

    monkeypatch.setattr(streaming, "MAX_CHUNK_BYTES", 4096)  # 16 rows of 64 fp32
    src = tiny_hf_model(tmp_path / "hf", tie=False)
    from_hf(src, tmp_path / "meg", FromHFOptions(tp=2, progress=False))
    md = CheckpointReader(tmp_path / "meg" / "iter_0000000").metadata.state_dict_metadata
    assert len(md["embedding.word_embeddings.weight"].chunks) == 384 // 16
    assert len(md["output_layer.weight"].chunks) == 384 // 16
    to_hf(tmp_path / "meg", tmp_path / "back", ToHFOptions(progress=False))
    assert _bit_identical(read_tensors(src), read_tensors(tmp_path / "back"))
