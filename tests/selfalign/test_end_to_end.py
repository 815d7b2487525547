"""StarCoder2-Instruct, demo-sized, end to end through the CLIs users run (issue 16 item 6).

A tiny StarCoder2-shaped model (GQA 4 heads / 2 KV groups, RoPE, a 32-token sliding window, untied
output, the bundled tokenizer) is served by ``codetron serve``; ``codetron selfalign seeds`` and
``run`` generate tested instruction pairs against it; ``codetron preprocess instruct`` renders them
with the StarCoder2-Instruct template; the model is converted with ``convert from-hf``, fine-tuned
with ``train --config <its from-hf config> --recipe starcoder2-instruct`` in TP2xPP2 (4 ranks),
converted back with ``to-hf --check``, loaded with plain ``AutoModelForCausalLM`` and evaluated with ``eval run --prompt
starcoder2-instruct``.

A random tiny model writes no passing code, so the test *teaches* it first: a scripted server records
the exact prompts ``codetron selfalign run`` sends for two seeds and answers them with hand-written
concepts, instructions and tested responses; the model is then fitted (about 90 Adam steps) until
greedy decoding reproduces every answer. Served for real, it must make the CLI write the same pairs
as the scripted run -- so the few-shot prompts, HTTP, decoding, stop handling, parsing, the sandboxed
execution filter and selection all have to work for the pairs to appear.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.helpers.runs import run_codetron

pytestmark = pytest.mark.slow

SEED_CODE = '''\
def total_price(prices, tax_rate):
    """Sum a list of prices and add tax at tax_rate (0.2 = 20 percent)."""
    subtotal = sum(prices)
    return round(subtotal * (1 + tax_rate), 2)


def initials(full_name):
    """The upper-case initials of a full name, e.g. 'ada lovelace' -> 'AL'."""
    return "".join(part[0].upper() for part in full_name.split())
'''
"""The seed corpus: two documented functions, both kept by ``selfalign seeds``."""


def _answer(solution: str, tests: str, prose: str) -> str:
    return f"{prose}\n\n```python\n{solution}\n```\n\n[Tests]\n\n```python\n{tests}\n```"


TAUGHT = {
    "total_price": (
        "arithmetic, rounding, list summation",
        "Write a Python function `add_vat(net, rate)` that returns net * (1 + rate) rounded to 2 decimals.",
        _answer("def add_vat(net, rate):\n    return round(net * (1 + rate), 2)",
                "assert add_vat(10, 0.2) == 12.0\nassert add_vat(0, 0.5) == 0", "Multiply and round."),
    ),
    "initials": (
        "string splitting, generator expressions, upper case",
        "Write a Python function `acronym(words)` that joins the upper-cased first letters of a list of words.",
        _answer("def acronym(words):\n    return ''.join(w[0].upper() for w in words)",
                "assert acronym(['portable', 'network', 'graphics']) == 'PNG'", "Take each first letter."),
    ),
}
"""seed function -> what the model is taught to answer at S->C, C->I and I->R."""

RUN_FLAGS = ["--responses", "1", "--fewshots", "1", "--fewshots-response", "1", "--temperature", "0",
             "--max-tokens", "96", "--concurrency", "1", "--exec-timeout", "5", "--quiet"]
"""The generation settings of both selfalign runs (they shape the prompts the model is taught)."""

CONTEXT = 136
"""Prompt tokens kept when teaching: 4 layers x a 32-token window see 4 x 31 tokens back, so the logits of
the answer depend on no earlier token (checked below before training on the suffixes)."""


def _run(args: list, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_codetron(args, nproc=nproc, timeout=timeout)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# --- teaching the tiny model ----------------------------------------------------------------------

def _taught_reply(prompt: str, body: dict) -> str:
    """What the scripted server answers at each step, from TAUGHT."""
    tail = prompt.rsplit("## Example ", 1)[1]
    if tail.endswith("### Concepts"):  # the published prompts end there, stripped
        name = re.search(r"^def (\w+)", tail, re.M).group(1)
        return TAUGHT[name][0]
    if "### Property\n" in tail:
        return next(t[1] for t in TAUGHT.values() if t[0] in tail)
    return next(t[2] for t in TAUGHT.values() if t[1] in tail)


def _record_prompts(seeds: Path, out: Path) -> list[tuple[str, str]]:
    """Run the selfalign CLI against the scripted server; the prompts it sent and the answers given."""
    from codetron.preprocess.generate.selfalign.cli import main as selfalign
    from tests.helpers.openai_server import scripted_server

    pairs = []

    def reply(prompt: str, body: dict) -> str:
        pairs.append((prompt, _taught_reply(prompt, body)))
        return pairs[-1][1]

    with scripted_server(reply, model_id="tiny-sc2") as srv:
        assert selfalign(["run", str(seeds), "-o", str(out), "--base-url", srv.url, *RUN_FLAGS]) == 0
    return pairs


def _build_model(out: Path, pairs: list[tuple[str, str]]) -> None:
    """Random StarCoder2 of debug-starcoder2's shape with the bundled tokenizer, fitted until greedy
    decoding of every recorded prompt gives its answer followed by EOS."""
    import torch
    from transformers import PreTrainedTokenizerFast

    from codetron.data import DEFAULT_TOKENIZER
    from tests.helpers.models import starcoder2_preset_shape, tiny_starcoder2

    tok = PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER), eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>")
    # the served prompts (~600 tokens) plus max_tokens must fit the context the server enforces
    model = tiny_starcoder2(len(tok), positions=1024, eos=tok.eos_token_id,
                            **starcoder2_preset_shape("debug-starcoder2"))
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads and cfg.sliding_window < CONTEXT
    rows = [(tok(p, add_special_tokens=False)["input_ids"], tok(a, add_special_tokens=False)["input_ids"]
             + [tok.eos_token_id]) for p, a in pairs]
    with torch.no_grad():  # the suffix is enough: the answer's logits are those of the whole prompt
        p, a = max(rows, key=lambda r: len(r[0]))
        full = model(input_ids=torch.tensor([p + a])).logits[0, len(p) - 1:-1]
        cut = model(input_ids=torch.tensor([p[-CONTEXT:] + a])).logits[0, CONTEXT - 1:-1]
        assert (full - cut).abs().max() < 1e-4
    width = max(CONTEXT + len(a) for _, a in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    att = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, a) in enumerate(rows):
        seq = p[-CONTEXT:] + a
        ids[i, :len(seq)], att[i, :len(seq)] = torch.tensor(seq), 1
        labels[i, CONTEXT - 1:CONTEXT - 1 + len(a)] = torch.tensor(a)  # position t predicts token t + 1
    mask = labels != -100
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    # one thread: on this shared 2-core machine two threads made each step 6x slower (1.5 s vs 0.25 s)
    torch.set_num_threads(1)
    try:
        _fit(model, opt, ids, att, labels, mask)
    finally:
        torch.set_num_threads(threads)
    tok.save_pretrained(str(out))
    model.save_pretrained(str(out))


def _fit(model, opt, ids, att, labels, mask) -> None:
    import torch

    for _ in range(400):
        # the output layer only where an answer token is predicted: the 8k-row head dominates the cost
        logits = model.lm_head(model.model(input_ids=ids, attention_mask=att).last_hidden_state[mask])
        loss = torch.nn.functional.cross_entropy(logits, labels[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05 and bool((logits.argmax(-1) == labels[mask]).all()):
            break
    else:
        raise AssertionError(f"the tiny model did not learn its answers (loss {loss.item():.3f})")


# --- the pipeline, stage by stage (module fixtures: each test checks one stage) --------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sc2_e2e")


@pytest.fixture(scope="module")
def seeds(work) -> Path:
    (work / "corpus").mkdir()
    (work / "corpus" / "pricing.py").write_text(SEED_CODE)
    out = work / "seeds.jsonl"
    _run(["selfalign", "seeds", work / "corpus", "-o", out, "--typecheck", "off", "--quiet"])
    return out


@pytest.fixture(scope="module")
def taught(work, seeds) -> dict:
    """The scripted run (reference output) and the tiny model taught its answers."""
    ref = work / "scripted" / "sa.jsonl"
    ref.parent.mkdir()
    pairs = _record_prompts(seeds, ref)
    _build_model(work / "hf", pairs)
    return {"pairs": pairs, "ref": _read(ref), "hf": work / "hf"}


@pytest.fixture(scope="module")
def served(taught):
    """``codetron serve`` on a free loopback port; yields its base URL."""
    proc = subprocess.Popen([PYTHON, "-m", "codetron", "serve", str(taught["hf"]), "--port", "0", "--device", "cpu",
                             "--model-name", "tiny-sc2"], cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url = None
    deadline = time.time() + 120
    while url is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+\S*)", line)
        url = m.group(1).rstrip("/") if m else None
    if url is None:
        proc.kill()
        raise AssertionError("codetron serve did not start:\n" + "".join(lines)[-3000:])
    # keep draining its output so a chatty server never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    yield url if url.endswith("/v1") else url + "/v1"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def generated(work, seeds, served) -> Path:
    out = work / "served" / "sa.jsonl"
    out.parent.mkdir()
    _run(["selfalign", "run", seeds, "-o", out, "--base-url", served, *RUN_FLAGS])
    return out


@pytest.fixture(scope="module")
def sft_data(work, generated, taught) -> Path:
    prefix = work / "data" / "sc2"
    _run(["preprocess", "instruct", generated, "--template", "starcoder2-instruct", "-o", prefix,
          "--tokenizer", taught["hf"] / "tokenizer.json", "--workers", "1", "--quiet"])
    return prefix


@pytest.fixture(scope="module")
def finetuned(work, taught, sft_data) -> dict:
    base, run, log = work / "base", work / "run", work / "loss.jsonl"
    conv = _run(["convert", "from-hf", taught["hf"], base, "--tp", "2", "--pp", "2", "--quiet"])
    # as `convert from-hf` tells users to: its saved config (model, layout, tokenizer, what to load) plus the
    # recipe, scaled down to a short sequence and a batch of one; the layout is the conversion's TP2xPP2
    assert f"codetron train --config {base}/iter_0000000/codetron_config.yaml" in conv.stdout
    proc = _run(["train", "--config", base / "iter_0000000" / "codetron_config.yaml", "--recipe", "starcoder2-instruct",
                 "--model.seq_length", "192", "--optim.global_batch_size", "1", "--data.data_path", sft_data,
                 "--checkpoint.save", run, "--logging.loss_log", log], nproc=4, timeout=480)
    hf = work / "hf_tuned"
    conv = _run(["convert", "to-hf", run, hf, "--check"])
    return {"run": run, "log": _read(log), "stdout": proc.stdout, "hf": hf, "check": conv.stdout}


# --- the checks ------------------------------------------------------------------------------------

def test_served_model_generates_the_taught_pairs(taught, generated):
    from codetron.preprocess.generate.selfalign.pipeline import ITEM_RULES, RESPONSE_RULES

    stats = json.loads(generated.with_name("sa.stats.json").read_text())
    # every request reached the model over HTTP: S->C, C->I, I->R per seed plus the /v1/models lookup
    assert stats["backend"]["model"] == "tiny-sc2" and stats["complete"]
    assert stats["requests"] == 3 * 2 + 1 and stats["retries"] == 0
    assert stats["stages"] == {"seeds": 2, "concepts": 2, "instructions": 2, "responses": 2, "finished": 2,
                               "parsed": 2, "executed": 2, "passed": 2, "selected": 2}
    assert stats["dropped_items"] == dict.fromkeys(ITEM_RULES, 0)
    assert stats["dropped_responses"] == dict.fromkeys(RESPONSE_RULES, 0)
    assert stats["output"]["written"] == 2
    rows = _read(generated)
    # greedy decoding of the served model reproduced the scripted run byte for byte
    assert rows == taught["ref"]
    assert sorted(r["instruction"] for r in rows) == sorted(t[1] for t in TAUGHT.values())
    assert all(r["output"].endswith("```") and "[Tests]" in r["output"] for r in rows)
    assert len(taught["pairs"]) == 6  # one recorded prompt per step per seed


def test_preprocess_renders_the_starcoder2_instruct_template(generated, sft_data, taught):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from tokenizers import Tokenizer

    from codetron.preprocess.layout import read_sft_document
    from codetron.templates import render_starcoder2_instruct

    summary = json.loads(Path(str(sft_data) + ".summary.json").read_text())
    assert summary["docs_in"] == summary["docs_kept"] == 2
    tok = Tokenizer.from_file(str(taught["hf"] / "tokenizer.json"))
    ds = IndexedDataset(str(sft_data))
    for i, row in enumerate(_read(generated)):
        prompt, response = render_starcoder2_instruct(row["instruction"], row["output"], row["input"])
        p_ids, r_ids = read_sft_document(ds, i)
        assert tok.decode(list(p_ids)) == prompt and prompt.endswith("### Response\n")
        assert tok.decode(list(r_ids[:-1])) == response and r_ids[-1] == tok.token_to_id("<|endoftext|>")


def test_finetune_tp2_pp2_from_its_own_conversion(finetuned):
    from codetron.megatron_ext.presets import resolve_config

    shipped = resolve_config(recipe="starcoder2-instruct").optim
    log, out = finetuned["log"], finetuned["stdout"]
    assert "finetune: loaded weights" in out and "train_epochs 4" in out
    steps = [r["step"] for r in log]
    assert steps == list(range(1, len(log) + 1)) and len(log) >= 4
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in log)
    # the recipe's schedule: peak lr 1e-5 (no warmup at this size), linear decay
    lrs = [r["lr"] for r in log]
    assert 0.5 * shipped.lr < lrs[0] <= shipped.lr == 1e-5
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    state = json.loads((finetuned["run"] / "run_state.json").read_text())
    assert state["state"] == "finished" and state["train_iters"] == len(log)
    # the same samples every epoch (4 of them), fitted better by the last by more than the bf16 wobble
    # between steps (1e-4); measured 1.83e-4 of 0.093. The gain once varied from run to run (1.5e-4 to
    # 5.6e-4) because the SFT epoch shuffle was salted with the data's path -- this module's temporary
    # folder -- not because of the starting model (fitted from a fixed seed); the order now follows the
    # data's content, so the run and this number are the same wherever pytest puts its files.
    per_epoch = len(log) // 4
    first, last = sum(r["loss"] for r in log[:per_epoch]), sum(r["loss"] for r in log[-per_epoch:])
    assert last < first - 1e-4, [r["loss"] for r in log]
    # the run kept the recipe's settings; only size, sequence, batch and layout were scaled down
    it = (finetuned["run"] / "latest_checkpointed_iteration.txt").read_text().strip()
    saved = yaml.safe_load((finetuned["run"] / f"iter_{int(it):07d}" / "codetron_config.yaml").read_text())
    for key in ("lr", "min_lr", "lr_decay_style", "lr_warmup_fraction", "train_epochs", "adam_beta1", "adam_beta2",
                "adam_eps", "weight_decay", "clip_grad", "precision"):
        assert saved["optim"][key] == getattr(shipped, key), key
    # upstream trains one sample per micro-batch, each sample's mean loss averaged (no packing)
    assert saved["data"]["mode"] == "sft" and saved["data"]["pack"] is False and saved["checkpoint"]["finetune"]
    assert saved["data"]["norm_target_loss"] is True and saved["optim"]["clip_grad"] == 0.0
    assert saved["parallel"]["use_distributed_optimizer"] is True
    assert (saved["parallel"]["tensor_model_parallel_size"], saved["parallel"]["pipeline_model_parallel_size"]) == (2, 2)
    m = saved["model"]
    assert (m["family"], m["num_query_groups"], m["sliding_window"], m["hidden_dropout"]) == ("starcoder2", 2, 32, 0.0)
    assert m["sliding_window"] < m["seq_length"]
    assert "check passed" in finetuned["check"]


def test_converted_back_loads_with_plain_transformers_and_changed(finetuned, taught):
    import torch
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(str(finetuned["hf"]))
    orig = AutoModelForCausalLM.from_pretrained(str(taught["hf"]))
    assert type(tuned).__name__ == "Starcoder2ForCausalLM"
    c = tuned.config
    assert (c.num_key_value_heads, c.num_attention_heads, c.sliding_window) == (2, 4, 32)
    assert c.tie_word_embeddings is False
    # the recipe trains in bf16 and to-hf writes the weights as stored: compare with the bf16 original
    assert tuned.dtype == torch.bfloat16
    orig = orig.to(torch.bfloat16)
    ids = torch.randint(0, c.vocab_size, (1, 80), generator=torch.Generator().manual_seed(0))  # longer than the window
    with torch.no_grad():
        logits = tuned(input_ids=ids).logits.float()
        before = orig(input_ids=ids).logits.float()
    assert torch.isfinite(logits).all()
    sd, ref = tuned.state_dict(), orig.state_dict()
    assert set(sd) == set(ref)
    changed = [k for k in sd if not torch.equal(sd[k], ref[k])]
    assert len(changed) > len(sd) // 2, changed  # fine-tuning moved the weights ...
    assert 0 < (logits - before).abs().max() < 1.0  # ... by a lr-1e-5 amount


def test_eval_with_the_starcoder2_instruct_prompt(work, finetuned):
    from codetron.eval.problems import read_problems

    problems = read_problems()[:2]
    (work / "he2.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = work / "eval"
    _run(["eval", "run", "--model", finetuned["hf"], "--problems", work / "he2.jsonl", "--task", "humaneval",
          "--prompt", "starcoder2-instruct", "--n-samples", "1", "--temperature", "0", "--max-new-tokens", "16",
          "--k", "1", "--out", out])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["prompt"] == "starcoder2-instruct"
    score = metrics["humaneval"]["pass@1"]
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    generations = json.loads((out / "generations.json").read_text())
    assert len(generations) == 2 and all(len(g) == 1 and isinstance(g[0], str) for g in generations)
    results = _read(out / "results.jsonl")
    assert [r["task_id"] for r in results] == ["HumanEval/0", "HumanEval/1"]


@pytest.mark.parametrize("cmd", ["from-hf", "to-hf"])
def test_convert_help_names_every_family(cmd, capsys):
    from codetron.convert.cli import main
    from codetron.megatron_ext import families

    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "GPTBigCode, Llama or StarCoder2 folder" in text  # the registry's titles, in name order
    assert all(f.title in text for f in families.all_families()) and len(families.all_families()) == 3
