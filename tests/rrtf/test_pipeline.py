"""The demo-sized RRTF pipeline on CPU, and sampling's resume / teacher-endpoint behaviour.

sample (tiny random GPTBigCode student, HumanEval's first problems, canonical solutions as teacher)
-> rank -> preprocess -> convert from-hf -> rrtf train -> convert to-hf -> eval run.
"""
import json

import numpy as np
import pytest

from codetron.preprocess.generate.rrtf.cli import main as rrtf_main
from tests.rrtf.conftest import read_jsonl, run_cli
from tests.rrtf.tiny_hf import build_tiny_student, humaneval_problems, write_demo_inputs


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("rrtf_demo")
    inputs = write_demo_inputs(root, n_problems=3)
    build_tiny_student(root / "student_hf", [p["prompt"] + p["canonical_solution"] for p in humaneval_problems(40)])
    sample_args = ["sample", "--problems", str(inputs["problems"]), "--model", str(root / "student_hf"),
                   "--teacher", str(inputs["teacher"]), "--temperatures", "0.2", "0.8", "--n-samples", "2",
                   "--max-new-tokens", "16", "--chunk", "2", "--out", str(root / "samples.jsonl"), "--no-progress"]
    assert rrtf_main(sample_args) == 0
    return root, inputs, sample_args


@pytest.mark.slow
def test_samples_have_students_at_each_temperature(demo):
    root, _, _ = demo
    recs = read_jsonl(root / "samples.jsonl")
    assert [r["task_id"] for r in recs] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for r in recs:
        assert r["prompt"].startswith('"""\n') and "\n\"\"\"\n" in r["prompt"]  # PanGu-Coder2 docstring prompt
        assert sorted((s["temperature"], s["index"]) for s in r["students"]) == [(0.2, 0), (0.2, 1), (0.8, 0), (0.8, 1)]
        assert len(r["teacher"]) == 1 and r["teacher"][0]["source"] == "file"


def test_sample_resume_redoes_only_missing_problem_identically(demo):
    root, _, args = demo
    out = root / "samples.jsonl"
    lines = out.read_text().splitlines(keepends=True)
    # simulate a crash: the last problem was being written when the job died
    out.write_text("".join(lines[:-1]) + lines[-1][:40])
    assert rrtf_main(args) == 0
    assert out.read_text() == "".join(lines)  # per-sample seeds: the redone problem is identical
    # a resume with other settings is refused instead of mixing two runs
    other = [a if a != "0.8" else "0.9" for a in args]
    from codetron.errors import CodetronError

    with pytest.raises(CodetronError, match="resuming with different settings \\(temperatures\\)"):
        rrtf_main(other)


@pytest.mark.slow
def test_pipeline_rank_preprocess_train_convert_eval(demo):
    root, inputs, _ = demo
    # rank: the canonical teacher passes everything; the random student cannot
    assert rrtf_main(["rank", "--problems", str(inputs["problems"]), "--samples", str(root / "samples.jsonl"),
                      "--out", str(root / "pairs.jsonl"), "--timeout", "3", "--no-progress"]) == 0
    pairs = read_jsonl(root / "pairs.jsonl")
    stats = json.loads((root / "pairs.jsonl.stats.json").read_text())
    assert stats["teacher_tiers"]["pass"] == 3 and stats["kept"] == 3
    assert len(pairs) == stats["pairs"] >= 3
    assert all(p["scores"][0] > p["scores"][1] for p in pairs)  # every pair ranked, no tie
    firsts = {p["task_id"]: p for p in reversed(pairs)}  # each task's first pair: its top response, the teacher
    assert all(p["tiers"][0] == "pass" and p["sources"][0] == "file" for p in firsts.values())

    # preprocess with the student's own tokenizer
    assert rrtf_main(["preprocess", "--input", str(root / "pairs.jsonl"), "--out", str(root / "pairs"),
                      "--tokenizer", str(root / "student_hf"), "--global-batch-size", "4"]) == 0
    from codetron.megatron_ext.rrtf.pairs import PairDataset
    from codetron.preprocess.tokenizer import load_tokenizer

    ds, tok = PairDataset(str(root / "pairs")), load_tokenizer(root / "student_hf")
    assert len(ds) == len(pairs)
    prompt, chosen, rejected, scores = ds[0]
    assert tok.decode(prompt) == pairs[0]["prompt"] and tok.decode(chosen[:-1]) == pairs[0]["chosen"]
    assert chosen[-1] == rejected[-1] == tok.eod and list(scores) == pairs[0]["scores"]

    # the student as a megatron-core checkpoint, fine-tuned with RRTF, converted back, evaluated
    run_cli(["convert", "from-hf", str(root / "student_hf"), str(root / "base"), "--quiet"])
    run_cli(["rrtf", "train", "--config", str(root / "base/iter_0000000/codetron_config.yaml"),
             "--data.data_path", str(root / "pairs"), "--data.tokenizer", str(root / "base/tokenizer/tokenizer.json"),
             "--checkpoint.load", str(root / "base"), "--checkpoint.finetune", "true",
             "--checkpoint.save", str(root / "run"), "--optim.train_iters", "3", "--optim.global_batch_size", "4",
             "--optim.micro_batch_size", "2", "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "0",
             "--model.hidden_dropout", "0", "--model.attention_dropout", "0",
             "--logging.loss_log", str(root / "loss.jsonl")], timeout=400)
    log = read_jsonl(root / "loss.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    # a fresh random student: every response is below the teacher, so the loss is L_ft (~ln V) plus a rank term
    assert log[0]["loss"] > 0.5 * np.log(600)
    run_cli(["convert", "to-hf", str(root / "run"), str(root / "rrtf_hf"), "--quiet"])
    run_cli(["eval", "run", "--model", str(root / "rrtf_hf"), "--problems", str(inputs["problems"]),
             "--prompt", "pangu-coder2", "--n-samples", "1", "--temperature", "0", "--max-new-tokens", "8",
             "--k", "1", "--out", str(root / "eval")], timeout=300)
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "pass@1" in json.dumps(metrics)


def test_teacher_from_openai_compatible_endpoint(tmp_path):
    from tests.helpers.openai_server import scripted_server

    inputs = write_demo_inputs(tmp_path, n_problems=2)
    probs = humaneval_problems(2)
    answers = {p["entry_point"] + "(": p["canonical_solution"] + "\ndef extra():\n    pass\n" for p in probs}

    def reply(prompt: str, body: dict) -> str:
        return next((a for key, a in answers.items() if key in prompt), "    pass\n")

    with scripted_server(reply) as server:
        assert rrtf_main(["sample", "--problems", str(inputs["problems"]), "--teacher-endpoint", server.url,
                          "--teacher-model", "gpt-x", "--out", str(tmp_path / "s.jsonl"), "--no-progress"]) == 0
    recs = read_jsonl(tmp_path / "s.jsonl")
    assert [r["students"] for r in recs] == [[], []]
    # the answer is cut at the prompt format's stop sequence ("\ndef")
    assert [r["teacher"][0]["response"] for r in recs] == [p["canonical_solution"] for p in probs]
    assert server.posts == 2 and server.bodies[0]["model"] == "gpt-x" and server.bodies[0]["temperature"] == 0.0
    assert server.bodies[0]["prompt"] == recs[0]["prompt"]
