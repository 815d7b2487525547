"""A tiny random GPTBigCode student (multi-query) and a tokenizer trained here, saved as an HF folder."""
from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]


def humaneval_problems(n: int) -> list[dict]:
    from codetron.eval.problems import read_problems

    return read_problems()[:n]


def build_tiny_student(out: Path, texts: list[str], vocab: int = 600, seed: int = 0) -> Path:
    from tests.helpers.models import byte_level_bpe, hf_tokenizer, save, tiny_gpt_bigcode

    tok = byte_level_bpe(texts, vocab, SPECIALS)
    out.mkdir(parents=True, exist_ok=True)
    fast = hf_tokenizer(tok, bos_token=SPECIALS[0], eos_token=SPECIALS[0], pad_token="<fim_pad>")
    model = tiny_gpt_bigcode(tok.get_vocab_size(), hidden=64, layers=4, heads=4, positions=256, seed=seed,
                             activation_function="gelu_pytorch_tanh")
    return save(model, out, fast)


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
