"""Random init: one model per seed in every layout, and pipeline stages that differ.

Megatron-LM offsets each pipeline rank's seed by 100 x pp_rank so stages are not copies of each
other; here, in addition, every weight is drawn from a generator keyed by its global layer (see
``codetron.megatron_ext.initialization``), so the same seed gives bit-identical HF weights after
``codetron convert to-hf`` whether the model was built on one process, TP2xPP2 or PP4.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from tests.train.conftest import base_args, read_log, run_train

LAYOUTS = {
    "tp2pp2": (4, ["--parallel.tensor_model_parallel_size", "2", "--parallel.pipeline_model_parallel_size", "2"]),
    "pp4": (4, ["--parallel.pipeline_model_parallel_size", "4"]),
}
LAYER_TENSORS = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]


def _fresh_hf(data: str, root, name: str, extra: list[str], nproc: int = 1) -> dict[str, torch.Tensor]:
    """Build the model (0 training steps), checkpoint it and convert it to HF weights."""
    from safetensors.torch import load_file

    from codetron.convert.to_hf import ToHFOptions, to_hf

    save = root / name
    run_train(base_args(data, 0) + extra + ["--checkpoint.save", str(save)], nproc=nproc)
    hf = root / f"hf_{name}"
    to_hf(save, hf, ToHFOptions(progress=False))
    out: dict[str, torch.Tensor] = {}
    for f in sorted(hf.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.fixture(scope="module")
def models(synthetic_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    out = {"ref": _fresh_hf(synthetic_data, root, "ref", [])}
    for name, (nproc, extra) in LAYOUTS.items():
        out[name] = _fresh_hf(synthetic_data, root, name, extra, nproc)
    out["seed7"] = _fresh_hf(synthetic_data, root, "seed7", ["--optim.seed", "7"])
    return out


@pytest.mark.slow
def test_pp4_stages_start_different(models):
    pp4 = models["pp4"]
    for suffix in LAYER_TENSORS:
        layers = [pp4[f"transformer.h.{i}.{suffix}"] for i in range(4)]
        for a, b in itertools.combinations(range(4), 2):
            assert not torch.equal(layers[a], layers[b]), (suffix, a, b)
        # draws of megatron's init: std 0.02, output projections 0.02 / sqrt(2 * num_layers)
        want = 0.02 / (8 ** 0.5) if suffix.endswith("c_proj.weight") else 0.02
        assert abs(float(layers[0].std()) / want - 1) < 0.1, (suffix, float(layers[0].std()))


@pytest.mark.slow
def test_the_seed_alone_determines_the_model(models):
    ref = models["ref"]
    for layout in LAYOUTS:
        got = models[layout]
        assert sorted(ref) == sorted(got)
        for name in ref:
            assert torch.equal(ref[name], got[name]), (layout, name)
    other = models["seed7"]
    random_init = [n for n in ref if n.endswith("weight") and ref[n].dim() == 2]
    assert len(random_init) == 2 + 4 * len(LAYER_TENSORS)  # wte, wpe, four matrices per layer
    for name in random_init:
        # another seed: independent draws, correlation near 0 (|r| < 0.1 over >= 4096 values)
        r = torch.corrcoef(torch.stack([ref[name].flatten(), other[name].flatten()]))[0, 1]
        assert abs(float(r)) < 0.1, (name, float(r))


@pytest.mark.slow
def test_fresh_dp2_pp2_trains_as_one_process(synthetic_data, tmp_path):
    """From a fresh init (no shared checkpoint), DP2xPP2 trains as one process does -- which holds
    only if both DP replicas start identical and each stage holds the single process's layers."""
    logs = {}
    for name, nproc, extra in (("one", 1, []), ("dp2pp2", 4, ["--parallel.pipeline_model_parallel_size", "2"])):
        logs[name] = tmp_path / f"{name}.jsonl"
        run_train(base_args(synthetic_data, 3) + extra + ["--logging.loss_log", str(logs[name])], nproc=nproc)
    one, dp2pp2 = read_log(logs["one"]), read_log(logs["dp2pp2"])
    assert len(one) == len(dp2pp2) == 3
    for a, b in zip(one, dp2pp2):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["grad_norm"] - b["grad_norm"]) < 1e-4, (a, b)


def test_keyed_init_is_a_function_of_seed_owner_and_order():
    """The init hook ignores the ambient RNG: same (seed, owner, draw) -> same tensor."""
    from megatron.core.utils import init_method_normal

    from codetron.megatron_ext.initialization import KeyedInit, _DrawCounter

    def draw(seed: int, ambient: int, owner_draws: int) -> torch.Tensor:
        torch.manual_seed(ambient)
        hook = KeyedInit(init_method_normal(0.02), _DrawCounter(seed), "output")
        for _ in range(owner_draws):
            hook(torch.empty(8, 8))
        t = torch.empty(16, 4, dtype=torch.bfloat16)
        hook(t)
        return t

    a = draw(1, ambient=0, owner_draws=1)
    assert torch.equal(a, draw(1, ambient=99, owner_draws=1))
    assert not torch.equal(a, draw(2, ambient=0, owner_draws=1))
    assert not torch.equal(a, draw(1, ambient=0, owner_draws=0))
    # drawn in fp32 and then rounded: the bf16 init is the rounding of the fp32 init
    hook = KeyedInit(init_method_normal(0.02), _DrawCounter(1), "output")
    hook(torch.empty(8, 8))
    f = torch.empty(16, 4)
    hook(f)
    assert torch.equal(a, f.to(torch.bfloat16))
