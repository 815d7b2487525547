import json

import pytest

from codetron.errors import CodetronError
from codetron.preprocess.tokenizer import SPECIAL_TOKENS, TokenizerTrainConfig, load_tokenizer, train_bpe, train_tokenizer_to

TEXTS = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i * 2024)\n", "x = {'k': [1, 2, 3]}\n"] * 20


def test_bundled_tokenizer_contract(tok):
    assert tok.vocab_size == 8192 and tok.kind == "hf"
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(19))  # StarCoder's id order
    assert tok.eod == 0 and tok.pad == 4 and tok.pad != tok.eod
    assert tok.unique_identifiers["sha256"] and json.dumps(tok.unique_identifiers)
    assert tok.path.stat().st_size < 1_000_000
    # digits are split one by one, as StarCoder does
    assert [tok.decode([i]) for i in tok.encode("2024")] == ["2", "0", "2", "4"]


@pytest.mark.parametrize("text", ["", "a", "  leading spaces\n\ttabs\r\n", "ünïcödé → 😀 中文", "<fim_prefix>x<fim_suffix>y<fim_middle>",
                                  "<reponame>r<filename>f.py<gh_stars>1000+\nimport os\n"])
def test_round_trip_exact(tok, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch([text, text]) == [tok.encode(text)] * 2


def test_special_tokens_are_atomic(tok):
    assert tok.encode("<commit_before>") == [15]
    assert tok.encode("a<|endoftext|>b")[1] == 0


def test_train_save_load(tmp_path):
    cfg = TokenizerTrainConfig(vocab_size=300, min_frequency=1)
    t = train_tokenizer_to(tmp_path / "tok", iter(TEXTS), cfg)
    assert t.vocab_size <= 300 and t.token_to_id("<reponame>") == 18
    again = load_tokenizer(tmp_path / "tok")  # directory form
    assert again.encode(TEXTS[0]) == t.encode(TEXTS[0])
    assert again.decode(again.encode(TEXTS[1])) == TEXTS[1]
    # the duck-typed object pickles by path (workers, dataloaders)
    import pickle

    assert pickle.loads(pickle.dumps(again)).encode("x = 1") == again.encode("x = 1")


def test_sentencepiece_model(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS * 5))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=400,
                                   user_defined_symbols=["<fim_prefix>", "<fim_pad>"], byte_fallback=True,
                                   pad_id=3, bos_id=1, eos_id=2, unk_id=0, hard_vocab_limit=False, minloglevel=2)
    t = load_tokenizer(tmp_path / "sp.model")
    assert t.kind == "sentencepiece" and t.eod == 2 and t.pad == 3 and t.vocab_size <= 400
    ids = t.encode("<fim_prefix>def add(a, b):")
    assert t.token_to_id("<fim_prefix>") in ids  # one id (sentencepiece may put its dummy "▁" first)
    assert t.decode(ids) == "<fim_prefix>def add(a, b):"


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(CodetronError, match="not found"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(CodetronError, match="bad.json: not a Hugging Face tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json")
    no_eod = train_bpe(iter(TEXTS), TokenizerTrainConfig(vocab_size=300, min_frequency=1))
    assert no_eod.eod == 0


def test_usable_as_gpt_dataset_tokenizer(tok, tmp_path):
    """megatron-core builds a GPTDataset over our output with our tokenizer object."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from codetron.preprocess.pipeline import run
    from tests.preprocess.conftest import SAMPLES, make_cfg

    run(make_cfg([SAMPLES / "the_stack_sample.jsonl"], tmp_path / "code"))
    cfg = GPTDatasetConfig(random_seed=1, sequence_length=64, tokenizer=tok, blend=([str(tmp_path / "code")], None),
                           split="100,0,0", reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
                           path_to_cache=str(tmp_path / "cache"))
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [8, None, None], lambda: True, cfg).build()
    sample = train[0]
    assert sample["tokens"].shape[0] == 64 and int(sample["tokens"].max()) < tok.vocab_size
