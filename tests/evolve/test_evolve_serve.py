"""`codetron serve`: the OpenAI protocol over real HTTP on loopback, on a tiny random GPTBigCode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from codetron.eval.serve import ALPACA_STOP, SamplingParams, alpaca_chat_prompt, truncate_at_stop
from codetron.preprocess.formats import wizardcoder_prompt


def post(server, path, body, raw: bytes | None = None):
    req = urllib.request.Request(server.url + path, data=raw if raw is not None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_models_and_health(server):
    body = get(server.url + "/models")
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["max_model_len"] == 512
    assert get(server.url.removesuffix("/v1") + "/health")["status"] == "ok"


def test_completion_matches_greedy_reference(server, engine):
    """Greedy text over HTTP equals an argmax loop written here with plain transformers."""
    import torch

    prompt = "def add(a, b):"
    status, body = post(server, "/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 8,
                                                 "temperature": 0})
    assert status == 200 and body["object"] == "text_completion"
    choice = body["choices"][0]
    tok, model = engine.tokenizer, engine.model
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    with torch.inference_mode():
        for _ in range(8):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
    assert choice["text"] == tok.decode(out, skip_special_tokens=True)
    assert choice["finish_reason"] == ("length" if len(out) == 8 else "stop")
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(out),
                             "total_tokens": len(ids) + len(out)}


def test_seeded_sampling_is_reproducible_and_n_choices_differ(server):
    req = {"prompt": ["for i in", "class"], "max_tokens": 12, "temperature": 1.0, "top_p": 0.9, "n": 3, "seed": 7}
    _, a = post(server, "/completions", req)
    _, b = post(server, "/completions", req)
    texts = [c["text"] for c in a["choices"]]
    assert len(texts) == 6 and [c["index"] for c in a["choices"]] == list(range(6))
    assert texts == [c["text"] for c in b["choices"]]
    assert len(set(texts[:3])) > 1  # each choice has its own generator
    _, c = post(server, "/completions", dict(req, seed=8))
    assert [x["text"] for x in c["choices"]] != texts


def test_stop_sequences_are_cut(server):
    _, full = post(server, "/completions", {"prompt": "def", "max_tokens": 20, "temperature": 0})
    text = full["choices"][0]["text"]
    stop = text[3:5]
    assert len(stop) == 2
    _, cut = post(server, "/completions", {"prompt": "def", "max_tokens": 20, "temperature": 0, "stop": stop})
    assert cut["choices"][0]["text"] == text[:text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert truncate_at_stop("abcXdefY", ["Y", "X"]) == ("abc", True)


def test_chat_uses_alpaca_fallback_and_matches_completions(server):
    """Without a tokenizer chat template, a one-message chat is WizardCoder's Alpaca prompt."""
    instruction = "Write a Python function that reverses a string."
    assert alpaca_chat_prompt([{"role": "user", "content": instruction}]) == wizardcoder_prompt(instruction)
    status, chat = post(server, "/chat/completions", {"model": "tiny", "messages": [
        {"role": "user", "content": instruction}], "max_tokens": 10, "temperature": 0.8, "seed": 3})
    assert status == 200 and chat["object"] == "chat.completion"
    msg = chat["choices"][0]["message"]
    _, comp = post(server, "/completions", {"prompt": wizardcoder_prompt(instruction), "max_tokens": 10,
                                            "temperature": 0.8, "seed": 3, "stop": [ALPACA_STOP]})
    assert msg == {"role": "assistant", "content": comp["choices"][0]["text"]}
    multi = alpaca_chat_prompt([{"role": "system", "content": "SYS"}, {"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
    assert multi == "SYS\n\n### Instruction:\na\n\n### Response:b\n\n### Instruction:\nc\n\n### Response:"


def test_tokenizer_chat_template_is_used(engine):
    tmpl = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    old = engine._template
    engine._template = tmpl
    try:
        text, stop = engine.chat_prompt([{"role": "user", "content": "hi"}])
    finally:
        engine._template = old
    assert (text, stop) == ("<user>hi<assistant>", [])


@pytest.mark.parametrize("path,body,status,param", [
    ("/completions", {"prompt": "x", "temperature": 5}, 400, "temperature"),
    ("/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/completions", {"prompt": "x", "max_tokens": 600}, 400, "max_tokens"),  # over the 512 context
    ("/completions", {"prompt": "x", "n": 99}, 400, "n"),
    ("/completions", {"prompt": "x", "stop": [""]}, 400, "stop"),
    ("/completions", {"prompt": "x", "seed": "a"}, 400, "seed"),
    ("/completions", {"prompt": "x", "stream": "yes"}, 400, "stream"),
    ("/completions", {"prompt": 3}, 400, "prompt"),
    ("/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    ("/chat/completions", {"messages": []}, 400, "messages"),
    ("/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ("/chat/completions", {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
     400, "messages"),
    ("/embeddings", {"input": "x"}, 404, None),
])
def test_bad_requests_get_json_errors(server, path, body, status, param):
    code, payload = post(server, path, body)
    assert code == status
    assert payload["error"]["param"] == param and payload["error"]["message"]


def test_malformed_json_and_server_keeps_serving(server):
    code, payload = post(server, "/completions", None, raw=b"{not json")
    assert code == 400 and "not valid JSON" in payload["error"]["message"]
    code, _ = post(server, "/completions", {"prompt": "x", "max_tokens": 1})
    assert code == 200


def test_sampling_params_defaults():
    p = SamplingParams()
    # the OpenAI API's defaults: what a request that leaves a field out gets
    assert (p.temperature, p.top_p, p.n, p.stop, p.seed, p.max_new_tokens) == (1.0, 1.0, 1, (), None, 256)


@pytest.mark.slow
def test_codetron_serve_command(tiny_model_dir, repo_root):
    """The real CLI: --port 0 prints its URL; answers a chat request; bad folders fail in one line."""
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    bad = subprocess.run([sys.executable, "-m", "codetron", "serve", str(tiny_model_dir / "nope")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "not a Hugging Face model folder" in bad.stderr
    assert "Traceback" not in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "codetron", "serve", str(tiny_model_dir), "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() else "")
        url = line.rsplit(" ", 1)[1].strip()
        assert get(url + "/models")["data"][0]["id"] == tiny_model_dir.name
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read())["choices"][0]["message"]["role"] == "assistant"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
