"""The CPU compatibility layer patches exactly what the pinned megatron-core needs, and says so
loudly when an upgrade moves those call sites."""
import inspect

import pytest
import torch

from codetron.megatron_ext import cpu_compat


def test_patch_targets_match_installed_megatron_core():
    cpu_compat.check_patch_targets()


def test_version_drift_fails_loudly(monkeypatch):
    import megatron.core

    monkeypatch.setattr(megatron.core, "__version__", "0.99.0")
    with pytest.raises(RuntimeError, match="0.99.0 installed, cpu_compat written for 0.16.1"):
        cpu_compat.check_patch_targets()


def test_moved_call_site_fails_loudly(monkeypatch):
    from megatron.core.optimizer import clip_grads

    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: "" if obj is clip_grads else real(obj))
    with pytest.raises(RuntimeError, match="clip_grads no longer contains"):
        cpu_compat.check_patch_targets()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer is a no-op where CUDA exists")
def test_cuda_requests_land_on_cpu():
    cpu_compat.apply()
    assert torch.zeros(2, device="cuda").device.type == "cpu"
    x = torch.ones(3)
    assert x.cuda() is x and x.to("cuda").device.type == "cpu"
    assert x.type() == "torch.cuda.FloatTensor"  # what megatron's optimizer checks
    assert x.type(torch.float64).dtype == torch.float64
    from megatron.core.tensor_parallel import random

    tracker = random.get_cuda_rng_tracker()
    tracker.reset()
    tracker.add("a", 123)
    before = torch.get_rng_state()
    with tracker.fork("a"):
        r1 = torch.rand(2)
    with tracker.fork("a"):
        r2 = torch.rand(2)
    assert torch.equal(torch.get_rng_state(), before)  # forks leave the default stream alone
    assert not torch.equal(r1, r2)  # the named stream advances
