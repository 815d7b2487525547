"""GPTBigCode's embd_pdrop has no separate home in megatron-core: its GPTModel applies hidden_dropout
to the embedding output. Conversion maps embd_pdrop onto that (one note when they differ), and the
config no longer carries a field training never read."""
import dataclasses
import inspect
import json

import pytest
import yaml

from codetron.errors import ConfigError
from codetron.convert.hf_config import dropout_note, from_hf_config, to_hf_config
from codetron.megatron_ext.config import ModelConfig, TrainConfig, config_from_dict
from codetron.megatron_ext.presets import resolve_config
from tests.convert.conftest import PYTHON, run, tiny_hf_model

GPTBIGCODE = {"model_type": "gpt_bigcode", "n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 64,
              "vocab_size": 100, "multi_query": True}


def test_megatron_core_drops_embeddings_at_hidden_dropout():
    from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding

    # The fact the mapping rests on; a megatron-core upgrade that adds its own rate must revisit it.
    assert "torch.nn.Dropout(self.config.hidden_dropout)" in inspect.getsource(LanguageModelEmbedding.__init__)
    assert "embedding_dropout" not in {f.name for f in dataclasses.fields(ModelConfig)}


def test_embd_pdrop_maps_to_hidden_dropout_with_a_note_only_when_they_differ():
    model = from_hf_config({**GPTBIGCODE, "resid_pdrop": 0.1, "embd_pdrop": 0.2, "attn_pdrop": 0.05}, "x/config.json")
    assert (model.hidden_dropout, model.attention_dropout) == (0.1, 0.05)
    note = dropout_note({**GPTBIGCODE, "resid_pdrop": 0.1, "embd_pdrop": 0.2}, "x/config.json")
    assert note.startswith("x/config.json: embd_pdrop 0.2 differs from resid_pdrop 0.1") and "\n" not in note
    assert dropout_note({**GPTBIGCODE, "resid_pdrop": 0.1, "embd_pdrop": 0.1}, "x") is None
    assert dropout_note(GPTBIGCODE, "x") is None
    hf = to_hf_config(ModelConfig(hidden_dropout=0.15), 100, 0, 0, None, "float32")
    assert hf["embd_pdrop"] == hf["resid_pdrop"] == 0.15  # what megatron-core trained with


def test_from_hf_notes_a_differing_embd_pdrop_and_converts(tmp_path):
    hf = tiny_hf_model(tmp_path / "hf", layers=2, resid_pdrop=0.1, embd_pdrop=0.3, attn_pdrop=0.0)
    proc = run([PYTHON, "-m", "codetron", "convert", "from-hf", str(hf), str(tmp_path / "ck"), "--quiet"])
    notes = [ln for ln in proc.stdout.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "embd_pdrop 0.3 differs from resid_pdrop 0.1" in notes[0], proc.stdout
    saved = yaml.safe_load((tmp_path / "ck" / "iter_0000000" / "codetron_config.yaml").read_text())
    # dropout is a training setting: the saved config (architecture only) leaves it to the recipe/flags
    assert not {"hidden_dropout", "attention_dropout", "embedding_dropout", "seq_length"} & set(saved["model"])
    report = json.loads((tmp_path / "ck" / "codetron_conversion.json").read_text())
    assert report["notes"] == [notes[0][len("note: "):]]
    assert report["hf_run_settings"]["hidden_dropout"] == 0.1


def test_removed_field_errors_in_files_and_flags_but_old_saved_configs_load(tmp_path):
    with pytest.raises(ConfigError, match="'model.embedding_dropout' was removed: .*model.hidden_dropout"):
        resolve_config(preset="debug-tiny", overrides={"model.embedding_dropout": 0.1})
    y = tmp_path / "c.yaml"
    y.write_text("model:\n  embedding_dropout: 0.0\n")
    with pytest.raises(ConfigError, match=f"{y}: 'model.embedding_dropout' was removed"):
        resolve_config(preset="debug-tiny", yaml_path=str(y))
    old = TrainConfig().to_dict()
    old["model"]["embedding_dropout"] = None  # as saved next to checkpoints before the field went
    old["model"]["hidden_dropout"] = 0.1
    assert config_from_dict(old).model.hidden_dropout == 0.1
