"""Model FLOPs per step against hand calculations (Megatron-LM's num_floating_point_operations).

Per position, for L layers, hidden h, q = heads * head_dim, kv = groups * head_dim, MLP f, padded
vocab V, sequence s:  6 * (L * (h(q + 2kv) + q*s + q*h + 2hf) + hV). And the per-device peak MFU
divides by: the dense bf16 peak listed for the GPU's exact name.
"""
import dataclasses

import pytest

from codetron.megatron_ext.config import LoggingConfig, ModelConfig
from codetron.megatron_ext.metrics import StepLogger, device_peak, flops_per_step, flops_per_token, padded_vocab
from codetron.megatron_ext.presets import resolve_config

STARCODERBASE_1B = ModelConfig(num_layers=24, hidden_size=2048, num_attention_heads=16, num_query_groups=1,
                               ffn_hidden_size=8192, seq_length=8192, vocab_size=49152)
STARCODER_15B = ModelConfig(num_layers=40, hidden_size=6144, num_attention_heads=48, num_query_groups=1,
                            ffn_hidden_size=24576, seq_length=8192, vocab_size=49152)


def test_starcoderbase_1b_by_hand():
    # h 2048, head_dim 2048/16 = 128, q = 2048, kv = 1 * 128 = 128, f 8192, s 8192, V 49152 (already /128)
    # qkv projection   h (q + 2kv) = 2048 * 2304 =      4_718_592
    # scores + context q s         = 2048 * 8192 =     16_777_216   (2 GEMMs x causal half)
    # out projection   q h         = 2048 * 2048 =      4_194_304
    # MLP              2 h f       = 2 * 2048 * 8192 = 33_554_432
    # per layer                                        59_244_544;  x 24 layers = 1_421_869_056
    # logits           h V         = 2048 * 49152 =   100_663_296
    # forward MACs per position                     1_522_532_352;  x 6 = 9_135_194_112 FLOPs
    per_token = 9_135_194_112
    assert padded_vocab(49152, 128) == 49152
    assert flops_per_token(STARCODERBASE_1B, 49152) == per_token
    # one step of the gpu_check shape: micro-batch 1 of 8192 positions, and of 2048 positions
    assert flops_per_step(STARCODERBASE_1B, 49152, 1, 8192) == per_token * 8192
    # at s 2048 only the attention term changes: q s = 2048 * 2048 = 4_194_304 per layer
    per_token_2k = 6 * (24 * (4_718_592 + 4_194_304 + 4_194_304 + 33_554_432) + 100_663_296)
    assert per_token_2k == 7_323_254_784
    assert flops_per_step(STARCODERBASE_1B, 49152, 4, 2048) == 4 * 2048 * per_token_2k
    # the shipped preset is this shape
    assert flops_per_token(resolve_config(preset="starcoderbase-1b").model, 49152) == per_token


def test_starcoder_15b_by_hand():
    # h 6144, head_dim 128, q = 6144, kv = 128, f 24576, s 8192, V 49152
    # qkv projection   6144 * (6144 + 256) =  39_321_600
    # scores + context 6144 * 8192         =  50_331_648
    # out projection   6144 * 6144         =  37_748_736
    # MLP              2 * 6144 * 24576    = 301_989_888
    # per layer                              429_391_872;  x 40 = 17_175_674_880
    # logits           6144 * 49152        = 301_989_888
    # forward MACs per position           17_477_664_768;  x 6 = 104_865_988_608 FLOPs
    per_token = 104_865_988_608
    assert flops_per_token(STARCODER_15B, 49152) == per_token
    # the pretraining recipe's step: 512 x 8192 positions = 4.4e17 FLOPs
    assert flops_per_step(STARCODER_15B, 49152, 512) == 512 * 8192 * per_token
    assert flops_per_token(resolve_config(recipe="starcoder-pretrain").model, 49152) == per_token


def test_causal_attention_is_half_of_the_full_square():
    # The full (non-causal) count the code used before: 12 L s h for QK^T and AV.
    m = STARCODERBASE_1B
    full = 6 * (24 * (4_718_592 + 4_194_304 + 33_554_432) + 100_663_296) + 12 * 24 * 8192 * 2048
    assert full == 11_551_113_216
    causal = flops_per_token(m, 49152)
    assert causal < full
    assert full - causal == 6 * 24 * 2048 * 8192  # exactly half of the attention-score/context GEMMs


def test_mqa_counts_fewer_kv_flops_than_mha():
    mqa = flops_per_token(STARCODERBASE_1B, 49152)
    mha = flops_per_token(dataclasses.replace(STARCODERBASE_1B, num_query_groups=16), 49152)
    gqa = flops_per_token(dataclasses.replace(STARCODERBASE_1B, num_query_groups=4), 49152)
    assert mqa < gqa < mha
    # K and V projections: 2 * h * groups * head_dim per layer, x 6
    assert mha - mqa == 6 * 24 * 2 * 2048 * (16 - 1) * 128
    assert gqa - mqa == 6 * 24 * 2 * 2048 * (4 - 1) * 128


def test_logit_layer_uses_the_padded_vocabulary():
    # SantaCoder's 49280 is already a multiple of 128; a 49153-token vocabulary pads to 49280 rows.
    assert padded_vocab(49153, 128) == 49280 and padded_vocab(256, 128) == 256 and padded_vocab(300, 128) == 384
    a, b = flops_per_token(STARCODERBASE_1B, 49152), flops_per_token(STARCODERBASE_1B, 49280)
    assert b - a == 6 * 2048 * 128
    # StepLogger pads the tokenizer's vocabulary itself
    logger = StepLogger(LoggingConfig(), STARCODERBASE_1B, 49153, world_size=1, enabled=False, tensorboard_dir=None)
    assert logger.flops_tok == b


def test_step_line_mfu_is_flops_per_step_over_time_and_devices(capsys):
    m = dataclasses.replace(STARCODERBASE_1B, seq_length=2048)
    logger = StepLogger(LoggingConfig(peak_tflops=989.0), m, 49152, world_size=8, enabled=True, tensorboard_dir=None)
    seconds = 2.5
    logger.log_step(3, 10, 2.0, 1.0, 1e-4, tokens=64 * 2048, seconds=seconds)
    line = capsys.readouterr().out
    want = 100 * flops_per_step(m, 49152, 64, 2048) / (seconds * 8 * 989e12)
    assert want == pytest.approx(100 * 64 * 2048 * 7_323_254_784 / (2.5 * 8 * 989e12))
    assert f"mfu {want:5.1f}%" in line, (line, want)


def test_slurm_planner_uses_the_same_accounting():
    from codetron.slurm.plan import flops_per_token as plan_flops

    cfg = resolve_config(recipe="starcoder-pretrain")
    assert plan_flops(cfg, 49152) == flops_per_token(cfg.model, 49152) == 104_865_988_608


@pytest.mark.parametrize("name,peak", [
    # torch.cuda.get_device_name() on each card; NVIDIA's datasheets print bf16 with 2:4 sparsity, halved here
    ("NVIDIA H100 80GB HBM3", 989.0),  # SXM5: 1,979 sparse
    ("NVIDIA H100 PCIe", 756.0),  # 1,513 sparse; a substring match on "H100" gave it 989
    ("NVIDIA H100 NVL", 835.0),  # 1,671 sparse
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0),
    ("NVIDIA L40S", 362.0),  # 733 sparse; not the L40's 181
    ("NVIDIA L40", 181.0),
    ("NVIDIA B200", 2250.0),  # HGX B200: 4.5 PFLOP/s sparse
])
def test_peak_by_exact_device_name(name, peak):
    assert device_peak(name) == (peak, "")


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4090", "NVIDIA H100", "H100 PCIe", "NVIDIA A10",
                                  "Tesla V100-SXM2-16GB"])
def test_unlisted_device_gets_no_peak_and_one_line_why(name):
    peak, why = device_peak(name)
    assert peak is None
    assert why == f"no dense bf16 peak listed for device {name!r} (megatron_ext/metrics.py PEAK_BF16_TFLOPS)"


def test_step_line_on_an_unlisted_gpu_says_why_mfu_is_na(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA GeForce RTX 4090")
    StepLogger(LoggingConfig(), STARCODERBASE_1B, 49152, world_size=1, enabled=True, tensorboard_dir=None)
    assert capsys.readouterr().out == ("mfu n/a: no dense bf16 peak listed for device 'NVIDIA GeForce RTX 4090' "
                                       "(megatron_ext/metrics.py PEAK_BF16_TFLOPS); pass --logging.peak_tflops\n")
    # a listed card, or an explicit peak, prints nothing and gets its number
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 PCIe")
    assert StepLogger(LoggingConfig(), STARCODERBASE_1B, 49152, 1, True, None).peak == 756.0
    assert StepLogger(LoggingConfig(peak_tflops=500.0), STARCODERBASE_1B, 49152, 1, True, None).peak == 500.0
    assert capsys.readouterr().out == ""
