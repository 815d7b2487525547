"""Bad input gives one clear line naming the file/field, and never a half-written output."""
from __future__ import annotations

import json
import shutil

import pytest

from codetron.cli import main as codetron_main
from codetron.errors import CodetronError
from codetron.convert.from_hf import FromHFOptions, from_hf
from codetron.convert.to_hf import ToHFOptions, to_hf
from tests.convert.conftest import tiny_hf_model


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    return tiny_hf_model(tmp_path_factory.mktemp("hf") / "m")


@pytest.fixture(scope="module")
def meg_ckpt(tmp_path_factory, hf_model):
    out = tmp_path_factory.mktemp("meg") / "m"
    from_hf(hf_model, out, FromHFOptions(progress=False))
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_not_gpt_bigcode(hf_model, tmp_path):
    bad = _copy(hf_model, tmp_path / "mixtral")  # a model_type no family reads (mixture of experts)
    _edit_config(bad, model_type="mixtral", architectures=["MixtralForCausalLM"])
    with pytest.raises(CodetronError, match=r"config.json: model_type 'mixtral' \(MixtralForCausalLM\) is not a GPTBigCode"):
        from_hf(bad, tmp_path / "out", FromHFOptions(progress=False))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change,msg", [
    ({"activation_function": "relu"}, "activation_function 'relu' is unsupported"),
    ({"add_cross_attention": True}, "add_cross_attention=true"),
    ({"scale_attn_weights": False}, "scale_attn_weights=false"),
    ({"vocab_size": 400}, r"transformer.wte.weight has shape \(321, 64\), config.json implies \(400, 64\)"),
])
def test_unsupported_or_inconsistent_config(hf_model, tmp_path, change, msg):
    bad = _copy(hf_model, tmp_path / "bad")
    _edit_config(bad, **change)
    with pytest.raises(CodetronError, match=msg):
        from_hf(bad, tmp_path / "out", FromHFOptions(progress=False))


def test_bad_layout(hf_model, tmp_path):
    with pytest.raises(CodetronError, match="n_head 4 is not divisible by --tp 3"):
        from_hf(hf_model, tmp_path / "out", FromHFOptions(tp=3, progress=False))
    with pytest.raises(CodetronError, match="n_layer 4 is not divisible by --pp x --vpp = 8"):
        from_hf(hf_model, tmp_path / "out", FromHFOptions(pp=2, vpp=4, progress=False))


def test_missing_shard(hf_model, tmp_path):
    from codetron.convert.safetensors_io import PlannedTensor, SafetensorsFolder, write_sharded

    folder = SafetensorsFolder(hf_model)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(hf_model / "config.json", sharded / "config.json")
    plan = [PlannedTensor(n, folder.shape(n), folder.dtype(n), lambda n=n: folder.read(n)) for n in folder.entries]
    files = write_sharded(sharded, plan, max_shard_bytes=60_000)
    assert len(files) > 2
    (sharded / files[1]).unlink()
    with pytest.raises(CodetronError, match=f"shard\\(s\\) missing: {files[1]}"):
        from_hf(sharded, tmp_path / "out", FromHFOptions(progress=False))


def test_missing_tensor_and_truncated_file(hf_model, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = _copy(hf_model, tmp_path / "bad")
    weights = load_file(str(bad / "model.safetensors"))
    del weights["transformer.h.2.mlp.c_fc.bias"]
    save_file(weights, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CodetronError, match="tensor transformer.h.2.mlp.c_fc.bias is missing"):
        from_hf(bad, tmp_path / "out", FromHFOptions(progress=False))
    data = (hf_model / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CodetronError, match="model.safetensors: truncated"):
        from_hf(bad, tmp_path / "out", FromHFOptions(progress=False))


def test_tokenizer_bigger_than_model(hf_model, tmp_path, tokenizer_json):
    from tokenizers import Tokenizer

    bad = _copy(hf_model, tmp_path / "bad")
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.add_special_tokens(["<extra_a>", "<extra_b>"])
    tok.save(str(bad / "tokenizer.json"))
    with pytest.raises(CodetronError, match="tokenizer has 323 tokens but the model only 321"):
        from_hf(bad, tmp_path / "out", FromHFOptions(progress=False))


def test_to_hf_errors(meg_ckpt, tmp_path, tokenizer_json):
    with pytest.raises(CodetronError, match="no complete checkpoint"):
        to_hf(tmp_path / "nothing", tmp_path / "out", ToHFOptions(progress=False))
    # the converted run's tokenizer is null:321; a 323-token tokenizer cannot belong to it
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.add_special_tokens(["<extra_a>", "<extra_b>"])
    tok.save(str(tmp_path / "big.json"))
    with pytest.raises(CodetronError, match="tokenizer has 323 tokens but the model only 321"):
        to_hf(meg_ckpt, tmp_path / "out", ToHFOptions(tokenizer=str(tmp_path / "big.json"), progress=False))
    with pytest.raises(CodetronError, match="does not exist"):
        to_hf(meg_ckpt, tmp_path / "out", ToHFOptions(tokenizer=str(tmp_path / "nope.json"), progress=False))
    broken = _copy(meg_ckpt, tmp_path / "broken")
    next((broken / "iter_0000000").glob("*.distcp")).unlink()
    with pytest.raises(CodetronError, match=r"checkpoint shard file\(s\) missing: __0_0.distcp"):
        to_hf(broken, tmp_path / "out", ToHFOptions(progress=False))
    gqa = _copy(meg_ckpt, tmp_path / "gqa")
    cfg = gqa / "iter_0000000" / "codetron_config.yaml"
    cfg.write_text(cfg.read_text().replace("num_query_groups: 1", "num_query_groups: 2"))
    with pytest.raises(CodetronError, match="num_query_groups=2 .* has no GPTBigCode form"):
        to_hf(gqa, tmp_path / "out", ToHFOptions(progress=False))
    assert not (tmp_path / "out").exists()


def test_failure_midway_leaves_no_output(meg_ckpt, tmp_path, monkeypatch):
    from codetron.convert import dcp_io

    calls = {"n": 0}
    real = dcp_io.CheckpointReader.read

    def flaky(self, key, layer=None):
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError("disk went away")
        return real(self, key, layer)

    monkeypatch.setattr(dcp_io.CheckpointReader, "read", flaky)
    with pytest.raises(OSError):
        to_hf(meg_ckpt, tmp_path / "out", ToHFOptions(progress=False))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_cli_prints_one_line(hf_model, tmp_path, capsys):
    bad = _copy(hf_model, tmp_path / "mixtral")
    _edit_config(bad, model_type="mixtral")
    rc = codetron_main(["convert", "from-hf", str(bad), str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("codetron convert: error:") and "config.json" in err
