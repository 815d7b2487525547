"""SFT on a real megatron-core GPTModel: packed == unpacked, loss on answers only (exact zeros)."""
import json
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, run_check_script, subprocess_env


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    return run_check_script("tests/objectives/model_checks.py", tmp_path_factory.mktemp("model_checks"))


@pytest.mark.parametrize("mode", ["plain", "norm"])
def test_packed_equals_unpacked(checks, mode):
    r = checks[mode]
    assert r["mask"] and r["docs"] > r["rows"]  # several documents really share a row
    assert abs(r["packed"] - r["unpacked"]) < 1e-5, r
    assert abs(r["unpacked"] - r["reference"]) < 1e-5, r  # each document alone, plain torch
    assert r["grad_diff"] < 1e-5, r
    assert abs(r["packed_without_mask"] - r["packed"]) > 1e-4, r  # the mask matters


def test_norm_target_loss_is_mean_of_sample_means(checks):
    # same documents, different normalisation: the per-sample mean differs from the token mean
    assert abs(checks["norm"]["reference"] - checks["plain"]["reference"]) > 1e-4


def test_prompt_targets_get_exactly_zero_gradient(checks):
    t = checks["tamper"]
    assert t["labels_changed"] > 20  # many prompt labels were replaced...
    assert t["loss_equal"] and t["grads_equal"]  # ...and loss and every gradient are bit-identical


def test_hidden_state_gradient_zero_on_prompt_positions(checks):
    h = checks["hidden"]
    assert h["prompt_positions"] > 20
    assert h["prompt_max"] == 0.0
    assert h["response_rows_nonzero"]
