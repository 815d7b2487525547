"""FIM: rates, exact round trips (CJK/emoji, tokens that are half a character), pad loss, fragments."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext.fim import PLAIN, PSM, SPM, FIMTransform, rearrange, sample_rng
from codetron.megatron_ext.token_bytes import TokenBytes
from tests.objectives.conftest import make_documents, write_pretrain

SEQ = 128


def token_stream(tok, docs: list[str], sep: int | None = None) -> list[int]:
    ids: list[int] = []
    for e in tok.encode_batch(docs):
        ids += e + [tok.eod]
    return ids


def split_pieces(tokens: list[int], seps: set[int]) -> list[list[int]]:
    out, cur = [], []
    for t in tokens:
        if t in seps:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    out.append(cur)
    return out


def check_round_trip(tr: FIMTransform, original: np.ndarray, out: np.ndarray) -> tuple[int, int]:
    """Every output piece rearranges to its original piece's bytes exactly; the piece that reaches
    the end of the sample to a prefix of them cut at a character boundary. Returns (exact, cut)."""
    ids, tb = tr.ids, tr.token_bytes
    seps = {ids.eod} | ({ids.split} if ids.split is not None else set())
    got = out.tolist()
    while got and got[-1] == ids.pad:
        got.pop()
    orig_pieces = split_pieces(original.tolist(), seps)
    out_pieces = split_pieces(got, seps)
    assert len(out_pieces) <= len(orig_pieces)
    # separators come back in the same order
    assert [t for t in got if t in seps] == [t for t in original.tolist() if t in seps][: len(out_pieces) - 1]
    exact = cut = 0
    for k, piece in enumerate(out_pieces):
        want = tb.join(orig_pieces[k])
        back = rearrange(piece, ids, tb)
        if k < len(out_pieces) - 1:
            assert back == want, (k, back, want)
            exact += 1
        else:
            assert want.startswith(back), (back, want)
            if back != want and piece and piece[0] == ids.prefix:
                # a shortened FIM piece is cut between characters (a sample that starts inside a
                # character keeps those partial bytes at its front)
                back.lstrip(bytes(range(0x80, 0xC0))).decode("utf-8")
                cut += 1
            else:
                exact += back == want
    return exact, cut


@pytest.fixture(scope="module")
def stream(tiny_tokenizer):
    return token_stream(tiny_tokenizer, make_documents(10_500, seed=1, max_lines=2))


def test_token_bytes_cover_split_characters(tiny_tokenizer):
    tb = TokenBytes(tiny_tokenizer)
    text = "x = '🚀 数据 👩‍💻'"
    ids = tiny_tokenizer.encode(text)
    assert tb.join(ids) == text.encode("utf-8")
    halves = [i for i in ids if not _valid(tb.table[i])]
    assert halves, "the tiny tokenizer should split some emoji/CJK character over several tokens"


def _valid(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_rates_and_round_trip_on_10k_documents(tiny_tokenizer, stream):
    tr = FIMTransform(tiny_tokenizer, rate=0.5, spm_rate=0.5)
    kinds = collections.Counter()
    exact = cut = non_ascii = 0
    n = len(stream) // (SEQ + 1)
    for k in range(n):
        sample = np.asarray(stream[k * (SEQ + 1):(k + 1) * (SEQ + 1)])
        out, ks = tr.apply(sample, sample_rng(1234, "stream", k))
        assert out.shape == sample.shape
        kinds.update(ks)
        e, c = check_round_trip(tr, sample, out)
        exact, cut = exact + e, cut + c
        non_ascii += any(b >= 0x80 for b in tr.token_bytes.join(out.tolist()))
    pieces = kinds[PLAIN] + kinds[PSM] + kinds[SPM]
    assert sum(kinds.values()) >= 10_000
    fim_rate = (kinds[PSM] + kinds[SPM]) / pieces
    spm_rate = kinds[SPM] / (kinds[PSM] + kinds[SPM])
    assert abs(fim_rate - 0.5) < 0.02, kinds
    assert abs(spm_rate - 0.5) < 0.02, kinds
    assert exact > 9_000 and cut > 100 and non_ascii > 0.8 * n


@pytest.mark.parametrize("rate,spm", [(0.9, 0.1), (0.1, 1.0)])
def test_other_rates(tiny_tokenizer, stream, rate, spm):
    tr = FIMTransform(tiny_tokenizer, rate=rate, spm_rate=spm)
    kinds = collections.Counter()
    for k in range(600):
        sample = np.asarray(stream[k * (SEQ + 1):(k + 1) * (SEQ + 1)])
        kinds.update(tr.apply(sample, sample_rng(7, "stream", k))[1])
    fim = kinds[PSM] + kinds[SPM]
    assert abs(fim / (fim + kinds[PLAIN]) - rate) < 0.02, kinds
    assert abs(kinds[SPM] / fim - spm) < 0.03, kinds


def test_psm_and_spm_layouts(tiny_tokenizer):
    tok = tiny_tokenizer
    tr = FIMTransform(tok, rate=1.0, spm_rate=0.0)
    text = "def f(x):\n    return '数据🙂'\n"
    ids = tok.encode(text)
    i = tr.ids
    out, kind = tr.transform_piece(ids, np.array([0.0, 0.9, 0.25, 0.6]), None)
    assert kind == PSM and out[0] == i.prefix
    n = len(text)
    a, b = int(0.25 * (n + 1)), int(0.6 * (n + 1))
    assert out == [i.prefix] + tok.encode(text[:a]) + [i.suffix] + tok.encode(text[b:]) + [i.middle] + tok.encode(text[a:b])
    tr_spm = FIMTransform(tok, rate=1.0, spm_rate=1.0)
    out, kind = tr_spm.transform_piece(ids, np.array([0.0, 0.1, 0.25, 0.6]), None)
    assert kind == SPM
    assert out == [i.prefix, i.suffix] + tok.encode(text[b:]) + [i.middle] + tok.encode(text[:a]) + tok.encode(text[a:b])
    assert rearrange(out, i, tr.token_bytes) == text.encode()


def test_sample_starting_and_ending_inside_a_character(tiny_tokenizer):
    """A sample cut inside an emoji whose bytes span several tokens: the partial bytes stay as their
    original tokens, the rest is cut on characters, and the round trip is byte-exact."""
    tok = tiny_tokenizer
    tr = FIMTransform(tok, rate=1.0, spm_rate=0.5)
    text = "🚀👩‍💻 数据 = 函数(🙂)\n" * 3
    ids = tok.encode(text)
    tb = tr.token_bytes
    offs = tb.offsets(ids)
    data = tb.join(ids)
    inside = [k for k in range(1, len(ids)) if 0x80 <= data[offs[k]] < 0xC0]
    assert len(inside) >= 2, "need token boundaries inside characters for this test"
    lo, hi = inside[0], inside[-1]
    piece = ids[lo:hi]
    for seed in range(20):
        out, kind = tr.transform_piece(piece, np.random.default_rng(seed).random(4), None)
        assert kind in (PSM, SPM)
        assert rearrange(out, tr.ids, tb) == tb.join(piece)
        # the pieces between the sentinels are re-tokenized text plus, at most, the raw edge tokens
        assert out.count(tr.ids.prefix) == out.count(tr.ids.middle) == out.count(tr.ids.suffix) == 1


def test_deterministic_per_seed_and_index(tiny_tokenizer, stream):
    tr = FIMTransform(tiny_tokenizer, rate=0.5, spm_rate=0.5)
    sample = np.asarray(stream[: SEQ + 1])
    a = tr.apply(sample, sample_rng(1, "d", 5))[0]
    b = FIMTransform(tiny_tokenizer, 0.5, 0.5).apply(sample, sample_rng(1, "d", 5))[0]
    assert np.array_equal(a, b)
    others = [tr.apply(sample, sample_rng(s, "d", i))[0] for s, i in ((2, 5), (1, 6), (3, 7), (4, 8))]
    assert any(not np.array_equal(a, o) for o in others)


def test_fragment_level_fim(tiny_tokenizer):
    """With a separator token, fragments (e.g. files of one repository) are FIM'd independently and
    separators stay in place."""
    tok = tiny_tokenizer
    sep = tok.token_to_id("<file_sep>")
    tr = FIMTransform(tok, rate=1.0, spm_rate=0.5, split_token="<file_sep>")
    docs = make_documents(60, seed=5)
    ids: list[int] = []
    for k in range(0, 60, 3):
        for j, d in enumerate(docs[k:k + 3]):
            ids += tok.encode(d) + ([sep] if j < 2 else [tok.eod])
    n_frag = seps_kept = 0
    for k in range(len(ids) // (SEQ + 1)):
        sample = np.asarray(ids[k * (SEQ + 1):(k + 1) * (SEQ + 1)])
        out, kinds = tr.apply(sample, sample_rng(3, "frag", k))
        check_round_trip(tr, sample, out)
        got = out.tolist()
        n_frag += got.count(tr.ids.prefix)
        # every fragment that contains text became a FIM piece of its own
        assert got.count(tr.ids.prefix) == sum(1 for x in kinds if x in (PSM, SPM))
        seps_kept += got.count(sep)
    assert n_frag > 40 and seps_kept > 10
    with pytest.raises(ConfigError, match="fim_split_sample"):
        FIMTransform(tok, 0.5, 0.5, split_token="<no_such_token>")


def test_null_tokenizer_is_refused():
    from codetron.megatron_ext.tokenizer_info import NullTokenizer

    with pytest.raises(ConfigError, match="fim"):
        FIMTransform(NullTokenizer(256), 0.5, 0.5)


def test_gpt_dataset_pad_positions_have_no_loss(tiny_tokenizer, tiny_tokenizer_path, tmp_path):
    """Through the pretraining objective (megatron GPTDataset + FIM hook): every position whose label
    is <fim_pad> has loss weight 0, every other position weight 1, and pads do occur."""
    from codetron.megatron_ext.config import TrainConfig
    from codetron.megatron_ext.objectives import get_objective

    tok = tiny_tokenizer
    docs = make_documents(500, seed=11)
    prefix = write_pretrain(str(tmp_path / "code"), [e + [tok.eod] for e in tok.encode_batch(docs)], tok.vocab_size)
    cfg = TrainConfig()
    cfg.model.seq_length = SEQ
    cfg.data.data_path = [prefix]
    cfg.data.tokenizer = str(tiny_tokenizer_path)
    cfg.data.fim_rate, cfg.data.fim_spm_rate = 0.5, 0.5
    cfg.data.split = "100,0,0"
    obj = get_objective("pretrain")
    train, _ = obj.build_datasets(cfg, tok, 150, 0)
    assert type(train).__name__ == "FIMGPTDataset"
    pads = fims = 0
    for idx in range(150):
        raw, _ = train._query_document_sample_shuffle_indices(idx)
        item = train[idx]
        labels_raw = raw[1:]
        is_pad = labels_raw == tok.pad
        pads += int(is_pad.sum())
        fims += int((raw == tok.token_to_id("<fim_prefix>")).sum())
        mask = item["loss_mask"].numpy()
        assert (mask[is_pad] == 0).all()
        assert (mask[~is_pad] == 1).all(), (idx, np.flatnonzero(mask[~is_pad] != 1), raw[-4:], item["labels"][-4:].tolist())
        batch = obj.collate([item])
        assert batch["tokens"].shape == (1, SEQ)
    assert pads > 0 and fims > 100
    # same index -> same sample (the FIM generator is keyed by seed, dataset and index)
    assert np.array_equal(train._query_document_sample_shuffle_indices(17)[0],
                          train._query_document_sample_shuffle_indices(17)[0])
