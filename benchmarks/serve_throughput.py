"""`codetron serve` throughput: requests/s at concurrency 1, 8 and 32, batched vs one request at a time.

Two servers on loopback over the same model: ``--max-batch 1`` (decode one request at a time, the
server before dynamic batching) and ``--max-batch 32``. Each level sends ``--requests`` chat
requests from that many client threads at once (varied prompts, seeded sampling, ``--max-tokens``
tokens at most). Prints requests/s, generated tokens/s, mean rows per batch, and two ratios:
batched / one-at-a-time at the same concurrency, and batched / batched at concurrency 1.

    python benchmarks/serve_throughput.py [--model DIR] [--requests 64] [--max-tokens 32] [--device cpu]

Without ``--model`` a random GPTBigCode (4 layers, width 256, a BPE trained on this repository's
Python files) is built in a temp dir: the numbers are about the server, not about a model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEVELS = (1, 8, 32)
TASKS = ["Write a function that reverses a string.", "Sort a list of tuples by their second element.",
         "Return the n-th Fibonacci number iteratively.", "Check whether a string is a palindrome.",
         "Parse a CSV line that may contain quoted commas.", "Merge two sorted lists into one sorted list.",
         "Count the words in a text file.", "Compute the greatest common divisor of two integers."]


def build_model(out: Path) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    texts = [p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("*/*.py"))[:200]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2048, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    cfg = GPTBigCodeConfig(vocab_size=len(fast), n_positions=1024, n_embd=256, n_layer=4, n_head=8,
                           multi_query=True, bos_token_id=0, eos_token_id=0)
    GPTBigCodeForCausalLM(cfg).save_pretrained(out)
    return str(out)


def measure(url: str, concurrency: int, requests: int, max_tokens: int) -> tuple[float, int]:
    """(seconds, completion tokens) for ``requests`` chat requests from ``concurrency`` threads."""
    def one(i: int) -> int:
        body = {"messages": [{"role": "user", "content": TASKS[i % len(TASKS)]}], "max_tokens": max_tokens,
                "temperature": 0.8, "seed": i}
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, range(requests)))
    return time.perf_counter() - start, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hugging Face model folder (default: a random model built here)")
    parser.add_argument("--requests", type=int, default=64, help="requests per measurement (default 64)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per request at most (default 32)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    args = parser.parse_args(argv)

    from codetron.eval.serve import Engine, OpenAIServer, ServeConfig

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp))
        rows = {}
        for max_batch in (1, 32):
            engine = Engine(model, device=args.device, max_batch=max_batch)
            server = OpenAIServer(engine, ServeConfig(model=model, model_name="bench", port=0))
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            measure(server.url, 2, 4, args.max_tokens)  # warm-up: allocator, kernels
            for level in LEVELS:
                before = len(engine.batches)
                seconds, tokens = measure(server.url, level, args.requests, args.max_tokens)
                sizes = engine.batches[before:]
                rows[max_batch, level] = (args.requests / seconds, tokens / seconds, sum(sizes) / len(sizes))
            server.shutdown()
            server.server_close()
    print(f"codetron serve, {args.requests} chat requests per level, <= {args.max_tokens} tokens each, "
          f"device {args.device}, {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}")
    print(f"{'concurrency':>11}{'1-at-a-time req/s':>19}{'batched req/s':>15}{'tok/s':>9}{'rows/batch':>12}"
          f"{'vs 1-at-a-time':>16}{'vs conc 1':>11}")
    for level in LEVELS:
        one, batched = rows[1, level], rows[32, level]
        print(f"{level:>11}{one[0]:>19.2f}{batched[0]:>15.2f}{batched[1]:>9.0f}{batched[2]:>12.1f}"
              f"{batched[0] / one[0]:>16.2f}{batched[0] / rows[32, 1][0]:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
