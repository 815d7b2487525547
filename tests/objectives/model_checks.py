"""Model-level SFT checks on a real megatron-core GPTModel (one CPU process), run as a child process
by test_sft_model.py so the process group and CPU patches never touch the pytest process.

    python tests/objectives/model_checks.py WORKDIR  ->  prints one JSON line of measurements
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

V, SEQ = 256, 64


def loss_and_grads(obj, model, samples):
    """Global-batch loss (sum / count, as the training loop reduces it) and the parameter grads."""
    model.zero_grad(set_to_none=True)
    batch = obj.collate(samples)
    output, loss_fn = obj.forward_step(batch, model)
    loss_sum, count, _ = loss_fn(output)
    (loss_sum / count).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss_sum / count), grads, batch


def max_grad_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main(work: str) -> None:
    from codetron.megatron_ext.model import build_model
    from codetron.megatron_ext.objectives import get_objective
    from codetron.megatron_ext.parallel import LaunchEnv, init_distributed
    from codetron.megatron_ext.presets import resolve_config
    from codetron.megatron_ext.tokenizer_info import NullTokenizer
    from tests.objectives.conftest import synthetic_sft_pairs, write_sft

    cfg = resolve_config("debug-tiny", overrides={"model.seq_length": SEQ, "model.transformer_impl": "local",
                                                  "data.mode": "sft", "data.split": "100,0,0"})
    init_distributed(cfg.parallel, 1234, LaunchEnv(0, 1, 0, "single"))
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.parallel, V, cfg.optim)
    tok = NullTokenizer(V)
    prefix = write_sft(str(Path(work) / "sft"), synthetic_sft_pairs(60, V, seed=4, max_len=30), V)
    cfg.data.data_path = [prefix]
    out: dict = {}

    for norm in (False, True):
        cfg.data.norm_target_loss = norm
        cfg.data.pack = True
        packed_obj = get_objective("sft")
        packed, _ = packed_obj.build_datasets(cfg, tok, 1, 0)
        cfg.data.pack = False
        plain_obj = get_objective("sft")
        plain, _ = plain_obj.build_datasets(cfg, tok, 1, 0)
        row_of = {int(d): i for i, d in enumerate(plain.row_docs)}
        rows = [0, 1]
        docs = [int(d) for r in rows for d in packed.row_docs[packed.row_start[r]:packed.row_start[r + 1]]]
        lp, gp, pbatch = loss_and_grads(packed_obj, model, [packed[r] for r in rows])
        lu, gu, _ = loss_and_grads(plain_obj, model, [plain[row_of[d]] for d in docs])
        # Reference: every document alone in a batch of one, no padding, no mask, torch only.
        per_doc = []
        with torch.no_grad():
            for d in docs:
                s = plain[row_of[d]]
                n = int((s["tokens"] != tok.pad).sum())  # the document, without the padded tail
                losses = model(s["tokens"][None, :n], s["position_ids"][None, :n], None, labels=s["labels"][None, :n])
                resp = s["loss_mask"][:n] > 0
                per_doc.append((float(losses[0][resp].double().sum()), int(resp.sum())))
        if norm:
            ref = sum(a / b for a, b in per_doc) / len(per_doc)
        else:
            ref = sum(a for a, _ in per_doc) / sum(b for _, b in per_doc)
        # Sensitivity: the same packed rows without the block mask (plain causal attention across
        # documents) must give a different loss, or the comparison above proves nothing.
        with torch.no_grad():
            nb = packed_obj.collate([packed[r] for r in rows])
            nb.pop("attention_mask")
            o, fn = packed_obj.forward_step(nb, model)
            s_, c_, _ = fn(o)
            lnomask = float(s_ / c_)
        key = "norm" if norm else "plain"
        out[key] = {"packed": lp, "unpacked": lu, "reference": ref, "grad_diff": max_grad_diff(gp, gu),
                    "docs": len(docs), "rows": len(rows), "mask": "attention_mask" in pbatch,
                    "packed_without_mask": lnomask}

    # Prompt tokens as targets contribute exactly nothing: scramble every prompt label.
    cfg.data.norm_target_loss, cfg.data.pack = False, True
    obj = get_objective("sft")
    ds, _ = obj.build_datasets(cfg, tok, 1, 0)
    samples = [ds[0], ds[1]]
    l0, g0, batch = loss_and_grads(obj, model, samples)
    g = torch.Generator().manual_seed(1)
    tampered = []
    for s in samples:
        s = dict(s)
        prompt = s["loss_mask"] == 0
        s["labels"] = torch.where(prompt, torch.randint(0, V - 2, s["labels"].shape, generator=g), s["labels"])
        tampered.append(s)
    l1, g1, _ = loss_and_grads(obj, model, tampered)
    out["tamper"] = {"loss_equal": l0 == l1, "grads_equal": all(torch.equal(g0[k], g1[k]) for k in g0),
                     "labels_changed": int(sum(int((a["labels"] != b["labels"]).sum()) for a, b in zip(samples, tampered)))}

    # d loss / d (final hidden state) is exactly zero at every prompt position.
    captured = {}

    def hook(_module, _inp, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden.retain_grad()
        captured["h"] = hidden

    handle = model.decoder.register_forward_hook(hook)
    loss_and_grads(obj, model, samples)
    handle.remove()
    grad = captured["h"].grad.transpose(0, 1)  # [s, b, h] -> [b, s, h]
    weights = batch["loss_mask"]
    prompt_grad = grad[weights == 0].abs().max()
    response_grad = grad[weights > 0].abs().min(dim=-1).values.min()
    out["hidden"] = {"prompt_max": float(prompt_grad), "response_rows_nonzero": bool((grad[weights > 0].abs().sum(-1) > 0).all()),
                     "prompt_positions": int((weights == 0).sum()), "response_min": float(response_grad)}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])
