"""Same data, same run: data order and FIM draws follow the data's content and the seed, never the
path it was reached by (a copy in another folder, a relative instead of an absolute path)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from codetron.megatron_ext.fingerprint import dataset_fingerprint
from codetron.megatron_ext.objectives import get_objective
from codetron.megatron_ext.tokenizer_info import NullTokenizer
from tests.conftest import ROOT
from tests.objectives.conftest import make_documents, synthetic_sft_pairs, write_pretrain, write_sft
from tests.objectives.test_parity import read_log, run_train, sft_args
from tests.objectives.test_sft import V, sft_cfg


def copy_dataset(prefix: str, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for ext in (".bin", ".idx"):
        shutil.copy(prefix + ext, folder / (os.path.basename(prefix) + ext))
    return str(folder / os.path.basename(prefix))


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """The same SFT data in two folders: (absolute path of one, relative path of the copy from ROOT)."""
    root = tmp_path_factory.mktemp("located")
    for sub in ("a", "other"):
        (root / sub).mkdir()
    here = write_sft(str(root / "a" / "sft"), synthetic_sft_pairs(120, V, seed=11), V)
    there = copy_dataset(here, root / "elsewhere" / "deeper")
    return os.path.abspath(here), os.path.relpath(there, ROOT), root


def rows(path: str, pack: bool) -> tuple[np.ndarray, np.ndarray]:
    cwd = os.getcwd()
    os.chdir(ROOT)  # relative paths are relative to where `codetron train` runs
    try:
        train, _ = get_objective("sft").build_datasets(sft_cfg([path], pack=pack), NullTokenizer(V), 500, 0)
    finally:
        os.chdir(cwd)
    return train.row_docs, train.row_start


@pytest.mark.parametrize("pack", [False, True])
def test_sft_order_ignores_the_path(placed, pack):
    here, there, root = placed
    assert not os.path.isabs(there) and os.path.realpath(os.path.join(ROOT, there)) != os.path.realpath(here)
    a, b = rows(here, pack), rows(there, pack)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert dataset_fingerprint(here) == dataset_fingerprint(os.path.join(ROOT, there))
    # other content, other order: one response a token longer changes the fingerprint and the shuffle
    pairs = synthetic_sft_pairs(120, V, seed=11)
    pairs[5] = (pairs[5][0], [3] + pairs[5][1])
    other = write_sft(str(root / "other" / "sft"), pairs, V)
    assert dataset_fingerprint(other) != dataset_fingerprint(here)
    assert not np.array_equal(rows(other, pack)[0], a[0])


@pytest.mark.slow
def test_moved_data_trains_the_same_curve_bit_for_bit(placed, tmp_path, tiny_tokenizer, tiny_tokenizer_path):
    """Packed SFT and FIM pretraining, each from the absolute path and from a relative path to a
    copy: the loss logs are identical, not merely close."""
    here, there, root = placed
    tok = tiny_tokenizer
    code = write_pretrain(str(root / "a" / "code"), [e + [tok.eod] for e in tok.encode_batch(make_documents(200, seed=3))],
                          tok.vocab_size)
    code_there = os.path.relpath(copy_dataset(code, root / "elsewhere" / "code"), ROOT)
    fim = ["--preset", "debug-tiny", "--model.transformer_impl", "local", "--data.tokenizer", str(tiny_tokenizer_path),
           "--data.fim_rate", "0.5", "--data.fim_spm_rate", "0.5", "--data.split", "100,0,0",
           "--optim.train_iters", "3", "--optim.global_batch_size", "4", "--optim.micro_batch_size", "2"]
    curves = {}
    for name, args in (("sft", lambda p: sft_args(p, 3, False)), ("fim", lambda p: fim + ["--data.data_path", p])):
        for tag, path in (("here", here if name == "sft" else code), ("there", there if name == "sft" else code_there)):
            log = tmp_path / f"{name}_{tag}.jsonl"
            run_train(args(path) + ["--logging.loss_log", str(log)])
            curves[(name, tag)] = [(r["loss"], r["grad_norm"]) for r in read_log(log)]
    for name in ("sft", "fim"):
        assert len(curves[(name, "here")]) == 3
        assert curves[(name, "here")] == curves[(name, "there")], name
