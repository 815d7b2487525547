"""The Llama family end to end through the CLIs users run (issue 27 item 2).

A tiny LlamaForCausalLM shaped like DeepSeek-Coder (the debug-llama preset: GQA 4 heads / 2 KV groups,
SwiGLU, RMSNorm, linear RoPE scaling, untied output), and a tiny Qwen2ForCausalLM shaped like
Qwen2.5-Coder-1.5B (debug-qwen2: QKV biases, tied embeddings), each with the bundled tokenizer, is converted with
``convert from-hf --tp 2 --pp 2``, fine-tuned with ``train --config <its from-hf config> --recipe
deepseek-coder-sft`` in TP2xPP2 (4 ranks, bf16 as the recipe ships), converted back with ``to-hf
--check``, loaded with plain ``AutoModelForCausalLM`` and evaluated with ``eval run`` on two HumanEval
problems.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import PYTHON, ROOT, TORCHRUN, subprocess_env

pytestmark = pytest.mark.slow

N_POSITIONS = 256


def _run(args: list, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    launcher = [PYTHON] if nproc == 1 else [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone"]
    cmd = [*launcher, "-m", "codetron", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


ARCHS = {"llama": ("debug-llama", "LlamaForCausalLM"), "qwen2": ("debug-qwen2", "Qwen2ForCausalLM")}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def work(tmp_path_factory, arch) -> Path:
    return tmp_path_factory.mktemp(f"{arch}_e2e")


@pytest.fixture(scope="module")
def hf_model(work, arch) -> Path:
    """Random weights of the debug preset's shape, the bundled tokenizer, as a hub download looks."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    from codetron.data import DEFAULT_TOKENIZER
    from codetron.megatron_ext.presets import get_model_preset

    tok = PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER), eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>")
    m = get_model_preset(ARCHS[arch][0]).model
    cfg = AutoConfig.for_model(arch, vocab_size=len(tok), hidden_size=m.hidden_size, intermediate_size=m.ffn,
                               num_hidden_layers=m.num_layers, num_attention_heads=m.num_attention_heads,
                               num_key_value_heads=m.num_query_groups, max_position_embeddings=N_POSITIONS,
                               rms_norm_eps=m.layernorm_epsilon, tie_word_embeddings=m.tie_embeddings,
                               rope_parameters={**(m.rope_scaling or {"rope_type": "default"}),
                                                "rope_theta": m.rotary_base},
                               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    out = work / "hf"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def finetuned(work, hf_model) -> dict:
    base, run, log = work / "base", work / "run", work / "loss.jsonl"
    conv = _run(["convert", "from-hf", hf_model, base, "--tp", "2", "--pp", "2", "--quiet"])
    assert f"codetron train --config {base}/iter_0000000/codetron_config.yaml" in conv.stdout
    data = work / "data" / "sft"
    _run(["preprocess", "instruct", ROOT / "data" / "samples" / "evol_instruct_sample.json", "--template", "plain",
          "-o", data, "--tokenizer", hf_model / "tokenizer.json", "--workers", "1", "--quiet"])
    # the recipe as shipped, scaled down to a short sequence and a batch of 4; the layout is the conversion's
    proc = _run(["train", "--config", base / "iter_0000000" / "codetron_config.yaml", "--recipe", "deepseek-coder-sft",
                 "--model.seq_length", "192", "--optim.global_batch_size", "4", "--data.data_path", data,
                 "--checkpoint.save", run, "--logging.loss_log", log], nproc=4, timeout=480)
    hf = work / "hf_tuned"
    check = _run(["convert", "to-hf", run, hf, "--check"])
    return {"run": run, "log": _read(log), "stdout": proc.stdout, "hf": hf, "check": check.stdout}


def test_finetune_tp2_pp2_from_its_own_conversion(finetuned, arch):
    from codetron.megatron_ext.presets import get_model_preset, resolve_config

    shipped = resolve_config(recipe="deepseek-coder-sft").optim
    log, out = finetuned["log"], finetuned["stdout"]
    assert "finetune: loaded weights" in out and "train_epochs 3" in out
    assert [r["step"] for r in log] == list(range(1, len(log) + 1)) and len(log) >= 3
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in log)
    it = (finetuned["run"] / "latest_checkpointed_iteration.txt").read_text().strip()
    saved = yaml.safe_load((finetuned["run"] / f"iter_{int(it):07d}" / "codetron_config.yaml").read_text())
    for key in ("lr", "min_lr", "lr_decay_style", "lr_warmup_iters", "train_epochs", "adam_beta2", "weight_decay",
                "clip_grad", "precision"):
        assert saved["optim"][key] == getattr(shipped, key), key
    assert saved["optim"]["precision"] == "bf16"
    assert (saved["parallel"]["tensor_model_parallel_size"], saved["parallel"]["pipeline_model_parallel_size"]) == (2, 2)
    m, preset = saved["model"], get_model_preset(ARCHS[arch][0]).model
    assert (m["family"], m["num_query_groups"], m["rope_scaling"]) == ("llama", 2, preset.rope_scaling)
    assert bool(m["qkv_bias"]) is (arch == "qwen2") and m["tie_embeddings"] is preset.tie_embeddings
    assert m["max_position_embeddings"] == N_POSITIONS
    assert "check passed" in finetuned["check"]


def test_converted_back_loads_with_plain_transformers_and_changed(finetuned, hf_model, arch):
    import torch
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(str(finetuned["hf"]))
    orig = AutoModelForCausalLM.from_pretrained(str(hf_model))
    assert type(tuned).__name__ == ARCHS[arch][1] == type(orig).__name__
    c = tuned.config
    assert (c.num_key_value_heads, c.num_attention_heads, c.tie_word_embeddings) == (2, 4, arch == "qwen2")
    assert {k: c.rope_parameters[k] for k in ("rope_type", "rope_theta")} == \
        {k: orig.config.rope_parameters[k] for k in ("rope_type", "rope_theta")}
    assert c.rope_parameters.get("factor") == orig.config.rope_parameters.get("factor")
    assert tuned.dtype == torch.bfloat16  # bf16 training, weights written as stored
    orig = orig.to(torch.bfloat16)
    sd, ref = tuned.state_dict(), orig.state_dict()
    assert set(sd) == set(ref)
    changed = [k for k in sd if not torch.equal(sd[k], ref[k])]
    assert len(changed) > len(sd) // 2, changed  # fine-tuning moved the weights ...
    ids = torch.randint(0, c.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        after, before = tuned(input_ids=ids).logits.float(), orig(input_ids=ids).logits.float()
    assert torch.isfinite(after).all() and 0 < (after - before).abs().max() < 1.0  # ... by an lr-2e-5 amount


def test_eval_on_two_humaneval_problems(work, finetuned):
    from codetron.eval.problems import read_problems

    problems = read_problems()[:2]
    (work / "he2.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = work / "eval"
    _run(["eval", "run", "--model", finetuned["hf"], "--problems", work / "he2.jsonl", "--task", "humaneval",
          "--n-samples", "1", "--temperature", "0", "--max-new-tokens", "16", "--k", "1", "--out", out])
    metrics = json.loads((out / "metrics.json").read_text())
    score = metrics["humaneval"]["pass@1"]
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    generations = json.loads((out / "generations.json").read_text())
    assert len(generations) == 2 and all(len(g) == 1 and isinstance(g[0], str) for g in generations)
    assert [r["task_id"] for r in _read(out / "results.jsonl")] == ["HumanEval/0", "HumanEval/1"]
