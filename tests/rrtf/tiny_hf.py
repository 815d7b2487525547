"""A tiny random GPTBigCode student (multi-query) and a tokenizer trained here, saved as an HF folder."""
from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]


def humaneval_problems(n: int) -> list[dict]:
    from codetron.eval.problems import read_problems

    return read_problems()[:n]


def build_tiny_student(out: Path, texts: list[str], vocab: int = 600, seed: int = 0) -> Path:
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    from tests.conftest import byte_level_bpe

    tok = byte_level_bpe(texts, vocab, SPECIALS)
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0], eos_token=SPECIALS[0],
                                   pad_token="<fim_pad>")
    fast.save_pretrained(str(out))
    torch.manual_seed(seed)
    cfg = GPTBigCodeConfig(vocab_size=tok.get_vocab_size(), n_positions=256, n_embd=64, n_layer=4, n_head=4,
                           multi_query=True, bos_token_id=0, eos_token_id=0, activation_function="gelu_pytorch_tanh")
    GPTBigCodeForCausalLM(cfg).save_pretrained(str(out))
    return out


def write_demo_inputs(root: Path, n_problems: int = 4) -> dict:
    """problems.jsonl (HumanEval's first problems) and teacher.jsonl (their canonical solutions)."""
    problems = humaneval_problems(n_problems)
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    (root / "teacher.jsonl").write_text("".join(json.dumps({"task_id": p["task_id"], "response": p["canonical_solution"]}) + "\n"
                                                for p in problems))
    return {"problems": root / "problems.jsonl", "teacher": root / "teacher.jsonl", "texts": [p["prompt"] + p["canonical_solution"] for p in problems]}


if __name__ == "__main__":
    import sys

    root = Path(sys.argv[1])
    inputs = write_demo_inputs(root)
    from codetron.eval.problems import read_problems

    build_tiny_student(root / "student_hf", [p["prompt"] + p["canonical_solution"] for p in read_problems()])
    print(root)
