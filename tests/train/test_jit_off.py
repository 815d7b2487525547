"""megatron-core imports without torch.compile wrappers where there is no CUDA (jit_off.py), and
keeps them where there is."""
import subprocess
import sys

import pytest

PROBE = """
import sys
{pre}
import codetron.megatron_ext
import megatron.core
from megatron.core.fusions import fused_bias_gelu
from codetron.megatron_ext.jit_off import jit_fuser_off
compiled = hasattr(fused_bias_gelu.bias_gelu, "_torchdynamo_orig_callable")
print(jit_fuser_off(), compiled, "torch._inductor.compile_fx" in sys.modules)
"""


def _probe(pre: str = "") -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_no_cuda_plain_functions_no_inductor():
    assert _probe() == ["True", "False", "False"]


@pytest.mark.slow
def test_with_cuda_megatron_compiles_as_before():
    # A CUDA machine as megatron-core sees it at import time; nothing is called on the device.
    pre = "import torch; torch.cuda.is_available = lambda: True"
    assert _probe(pre) == ["False", "True", "True"]


def test_bias_gelu_math_unchanged_uncompiled():
    import torch
    import torch.nn.functional as F
    from megatron.core.fusions import fused_bias_gelu

    y = torch.linspace(-4, 4, 101, dtype=torch.float64)
    bias = torch.tensor(0.5, dtype=torch.float64)
    ref = F.gelu(y + bias, approximate="tanh")
    assert (fused_bias_gelu.bias_gelu(bias, y) - ref).abs().max() < 1e-8
