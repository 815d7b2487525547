"""`codetron serve` streaming (server-sent events as the OpenAI API sends them) and the vLLM hand-off."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import serving


@pytest.fixture(scope="module")
def server(tiny_model):
    from codetron.eval.serve import Engine, OpenAIServer, ServeConfig

    srv = OpenAIServer(Engine(tiny_model, device="cpu"), ServeConfig(model=tiny_model, model_name="tiny", port=0))
    with serving(srv):
        yield srv


def request(server, path, body):
    return urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"}, method="POST")


def post(server, path, body):
    with urllib.request.urlopen(request(server, path, body), timeout=60) as resp:
        return json.loads(resp.read())


def stream(server, path, body) -> tuple[list[dict], list[str]]:
    """(parsed data events, raw lines) of one streamed request; checks the SSE framing."""
    with urllib.request.urlopen(request(server, path, dict(body, stream=True)), timeout=60) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        raw = resp.read().decode()
    lines = raw.split("\n")
    assert raw.endswith("data: [DONE]\n\n")
    data = [ln[len("data: "):] for ln in lines if ln]
    assert all(ln.startswith("data: ") for ln in lines if ln) and data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]], lines


def joined(events: list[dict], key) -> dict[int, tuple[str, str]]:
    """index -> (concatenated text, finish_reason) over the events."""
    out: dict[int, list] = {}
    for ev in events:
        for ch in ev["choices"]:
            text, reason = out.setdefault(ch["index"], ["", None])
            assert reason is None, "no event after a choice's finish_reason"
            out[ch["index"]] = [text + key(ch), ch["finish_reason"]]
    return {i: tuple(v) for i, v in out.items()}


def test_completions_stream_equals_the_plain_reply(server):
    body = {"prompt": ["def add(a, b):", "for i in"], "max_tokens": 12, "temperature": 0.9, "n": 2, "seed": 5,
            "stop": ["\n\n"]}
    plain = post(server, "/completions", body)
    events, _ = stream(server, "/completions", dict(body, stream_options={"include_usage": True}))
    assert all(ev["object"] == "text_completion" and ev["id"] == events[0]["id"] for ev in events)
    got = joined(events[:-1], lambda ch: ch["text"])
    assert got == {c["index"]: (c["text"], c["finish_reason"]) for c in plain["choices"]}
    assert len(events) > len(got) + 1  # text arrives in pieces, not in one final event
    assert events[-1]["choices"] == [] and events[-1]["usage"] == plain["usage"]


def test_stream_never_sends_a_stop_sequence_or_text_after_it(server):
    """A stop sequence spread over several tokens must not leak out before the server sees it whole."""
    body = {"prompt": "def", "max_tokens": 24, "temperature": 0}
    full = post(server, "/completions", body)["choices"][0]["text"]
    at = next(i for i in range(len(full)) if full[i:i + 4].isascii() and len(full[i:i + 4]) == 4)
    stop = full[at:at + 4]
    assert full.find(stop) == at and len(server.engine.encode(stop)) > 1  # spans tokens
    events, _ = stream(server, "/completions", dict(body, stop=[stop]))
    assert joined(events, lambda ch: ch["text"]) == {0: (full[:at], "stop")}
    # no event carried the start of the stop sequence beyond what precedes it
    assert "".join(ch["text"] for ev in events for ch in ev["choices"]) == full[:at]


def test_chat_stream_sends_role_then_content_deltas(server):
    body = {"messages": [{"role": "user", "content": "Write a function that adds two numbers."}],
            "max_completion_tokens": 10, "temperature": 0.7, "seed": 3}
    plain = post(server, "/chat/completions", body)
    events, _ = stream(server, "/chat/completions", body)
    assert all(ev["object"] == "chat.completion.chunk" for ev in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in ch["delta"] for ev in events[1:] for ch in ev["choices"])
    got = joined(events, lambda ch: ch["delta"].get("content", ""))
    choice = plain["choices"][0]
    assert got == {0: (choice["message"]["content"], choice["finish_reason"])}
    last = events[-1]["choices"][0]
    assert last["finish_reason"] == choice["finish_reason"]
    # OpenAI's shape: the closing chunk's delta is {} or carries the last non-empty piece of text
    assert last["delta"] == {} or (set(last["delta"]) == {"content"} and last["delta"]["content"] != ""), last
    middle = [ch for ev in events[1:-1] for ch in ev["choices"]]
    assert middle and all(ch["finish_reason"] is None and set(ch["delta"]) == {"content"}
                          and ch["delta"]["content"] != "" for ch in middle), middle


def test_stream_errors_before_any_event_are_plain_json(server):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request(server, "/completions", {"prompt": "x", "stream": True, "max_tokens": 5000}))
    assert err.value.code == 400 and json.loads(err.value.read())["error"]["param"] == "max_tokens"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request(server, "/completions", {"prompt": "x", "stream_options": {"include_usage": True}}))
    assert err.value.code == 400 and json.loads(err.value.read())["error"]["param"] == "stream_options"


def test_alpaca_jinja_renders_the_fallback_prompt(tiny_model):
    """vLLM only takes Jinja templates: the one it gets renders exactly our alpaca fallback."""
    from transformers import AutoTokenizer

    from codetron.eval.serve import ALPACA_JINJA, alpaca_chat_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model)
    for messages in ([{"role": "user", "content": "Reverse a string."}],
                     [{"role": "system", "content": "SYS"}, {"role": "user", "content": "a"},
                      {"role": "assistant", "content": "b"}, {"role": "user", "content": "c\n"}]):
        rendered = tok.apply_chat_template(messages, chat_template=ALPACA_JINJA, tokenize=False,
                                           add_generation_prompt=True)
        assert rendered == alpaca_chat_prompt(messages)


def _serve(args, env_extra, tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env_extra.get("PYTHONPATH"), str(repo)) if p)
    return subprocess.run([sys.executable, "-m", "codetron", "serve", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)


def test_hand_off_to_vllm_when_installed(tiny_model, tmp_path):
    """With a `vllm` package importable, `--engine vllm` execs vLLM's OpenAI server with our settings."""
    fake = tmp_path / "fake"
    api = fake / "vllm" / "entrypoints" / "openai"
    api.mkdir(parents=True)
    for d in (fake / "vllm", fake / "vllm" / "entrypoints", api):
        (d / "__init__.py").write_text("")
    (api / "api_server.py").write_text(
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "tpl = args[args.index('--chat-template') + 1] if '--chat-template' in args else None\n"
        "json.dump({'argv': args, 'template': open(tpl).read() if tpl else None,\n"
        "           'gpus': os.environ.get('CUDA_VISIBLE_DEVICES')}, open(os.environ['FAKE_VLLM_OUT'], 'w'))\n")
    out = tmp_path / "argv.json"
    run = _serve([tiny_model, "--engine", "vllm", "--port", "0", "--model-name", "wc", "--device", "cuda:1",
                  "--max-batch", "48"], {"PYTHONPATH": str(fake), "FAKE_VLLM_OUT": str(out)}, tmp_path)
    assert run.returncode == 0, run.stderr
    got = json.loads(out.read_text())
    argv = dict(zip(got["argv"][::2], got["argv"][1::2]))
    port = int(argv["--port"])
    assert argv["--model"] == tiny_model and argv["--served-model-name"] == "wc" and 0 < port < 65536
    assert argv["--max-num-seqs"] == "48" and got["gpus"] == "1"
    assert f"listening on http://127.0.0.1:{port}/v1" in run.stdout
    from codetron.eval.serve import ALPACA_JINJA

    assert got["template"] == ALPACA_JINJA  # the tiny tokenizer has no chat template of its own


def test_without_vllm_one_line(tiny_model, tmp_path):
    from codetron.eval.serve import ServeConfig, choose_engine

    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; this test checks the message when it is not")
    run = _serve([tiny_model, "--engine", "vllm"], {}, tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and "vllm is not installed" in run.stderr
    kind, note = choose_engine(ServeConfig(model=tiny_model))
    assert kind == "transformers" and "vllm not installed" in note and "\n" not in note
    assert choose_engine(ServeConfig(model=tiny_model, engine="transformers")) == ("transformers", None)
