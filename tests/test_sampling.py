"""``codetron.sampling.SamplingParams``: one validator, the same rules and message in every stage
(eval generate, evolve, selfalign, rrtf sample on the command line; serve over HTTP)."""
from __future__ import annotations

import json

import pytest

from codetron.cli import main as codetron
from codetron.sampling import SamplingError, SamplingParams


@pytest.mark.parametrize("changes, message", [
    ({"temperature": -1}, "--temperature must be in [0, 2], got -1"),
    ({"temperature": 2.5}, "--temperature must be in [0, 2], got 2.5"),
    ({"temperature": float("nan")}, "--temperature must be a number, got nan"),
    ({"temperature": True}, "--temperature must be a number, got True"),
    ({"top_p": 0}, "--top-p must be in (0, 1], got 0"),
    ({"top_p": 1.5}, "--top-p must be in (0, 1], got 1.5"),
    ({"max_new_tokens": 0}, "--max-new-tokens must be an integer >= 1, got 0"),
    ({"max_new_tokens": 2.0}, "--max-new-tokens must be an integer >= 1, got 2.0"),
    ({"n": 0}, "--n must be an integer >= 1, got 0"),
    ({"seed": "7"}, "--seed must be an integer, got '7'"),
    ({"stop": ("",)}, "--stop must be a list of up to 16 non-empty strings, got ('',)"),
    ({"stop": "x"}, "--stop must be a list of up to 16 non-empty strings, got 'x'"),
    ({"stop": ("s",) * 17}, "--stop must be a list of up to 16 non-empty strings, got " + repr(("s",) * 17)),
])
def test_bad_value_is_one_line_naming_the_field(changes, message):
    with pytest.raises(SamplingError) as err:
        SamplingParams(**changes).validate()
    assert str(err.value) == message
    assert err.value.field == next(iter(changes))


def test_the_range_edges_are_accepted():
    for params in (SamplingParams(temperature=0, top_p=1), SamplingParams(temperature=2, top_p=1e-6),
                   SamplingParams(max_new_tokens=1, n=1, seed=-3, stop=("\n",) * 16)):
        assert params.validate() is params


def test_names_follow_the_caller():
    with pytest.raises(SamplingError, match=r"^'max_tokens' must be an integer >= 1, got 0$"):
        SamplingParams(max_new_tokens=0).validate(name=lambda f: repr({"max_new_tokens": "max_tokens"}.get(f, f)))


# ---------------------------------------------------------------- the same rule in every stage's CLI


def _cli_error(argv, capsys) -> str:
    assert codetron(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    return lines[0]


def _seeds(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "Add two numbers.", "output": "a + b"}) + "\n")
    return str(seeds)


def test_each_stage_cli_rejects_temperature_minus_one_with_the_same_message(tmp_path, capsys):
    rule = "must be in [0, 2], got -1.0"
    out = str(tmp_path / "out.jsonl")
    url = "http://127.0.0.1:9/v1"  # never contacted: the flags fail first
    assert _cli_error(["eval", "generate", "--model", str(tmp_path), "--out", str(tmp_path / "e"),
                       "--temperature", "-1"], capsys) == f"codetron eval: error: --temperature {rule}"
    for mode in ("evol", "self-instruct"):
        assert _cli_error(["evolve", mode, _seeds(tmp_path), "-o", out, "--base-url", url, "--temperature", "-1"],
                          capsys) == f"codetron evolve: error: --temperature {rule}"
    assert _cli_error(["selfalign", "run", _seeds(tmp_path), "-o", out, "--base-url", url, "--temperature", "-1"],
                      capsys) == f"codetron selfalign: error: --temperature {rule}"
    assert _cli_error(["rrtf", "sample", "--problems", _seeds(tmp_path), "--out", out, "--model", str(tmp_path),
                       "--temperatures", "0.2", "-1"], capsys) == f"codetron rrtf: error: --temperatures {rule}"


def test_each_stage_cli_rejects_the_other_fields_by_the_same_rules(tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    url = "http://127.0.0.1:9/v1"
    assert _cli_error(["eval", "generate", "--model", str(tmp_path), "--out", str(tmp_path / "e"),
                       "--top-p", "0"], capsys) == "codetron eval: error: --top-p must be in (0, 1], got 0.0"
    # eval accepted any temperature >= 0 before; 2.5 is outside the OpenAI range every stage shares now
    assert _cli_error(["eval", "generate", "--model", str(tmp_path), "--out", str(tmp_path / "e"),
                       "--temperature", "2.5"], capsys) == "codetron eval: error: --temperature must be in [0, 2], got 2.5"
    assert _cli_error(["evolve", "evol", _seeds(tmp_path), "-o", out, "--base-url", url, "--max-tokens", "0"],
                      capsys) == "codetron evolve: error: --max-new-tokens must be an integer >= 1, got 0"
    assert _cli_error(["selfalign", "run", _seeds(tmp_path), "-o", out, "--base-url", url, "--top-p", "1.5"],
                      capsys) == "codetron selfalign: error: --top-p must be in (0, 1], got 1.5"
    assert _cli_error(["rrtf", "sample", "--problems", _seeds(tmp_path), "--out", out, "--model", str(tmp_path),
                       "--n-samples", "0"], capsys) == "codetron rrtf: error: --n-samples must be an integer >= 1, got 0"


# ------------------------------------------------------------------ serve: the OpenAI names at the boundary


def _parse(body):
    from codetron.eval.serve.api import parse_sampling
    from codetron.eval.serve.config import ServeConfig

    return parse_sampling(body, ServeConfig(model="m", max_tokens_limit=100, max_n=4, default_max_tokens=16))


def test_serve_maps_openai_names_to_sampling_params():
    assert _parse({}) == SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=16, n=1)
    assert _parse({"max_tokens": 7, "temperature": 0, "top_p": 0.5, "n": 2, "seed": 3, "stop": "x"}) == \
        SamplingParams(temperature=0.0, top_p=0.5, max_new_tokens=7, n=2, seed=3, stop=("x",))
    assert _parse({"max_completion_tokens": 9}).max_new_tokens == 9
    assert _parse({"max_tokens": None, "temperature": None}).max_new_tokens == 16  # JSON null: the default


@pytest.mark.parametrize("body, message, param", [
    ({"temperature": -1}, "'temperature' must be in [0, 2], got -1", "temperature"),
    ({"max_tokens": 0}, "'max_tokens' must be an integer >= 1, got 0", "max_tokens"),
    ({"max_tokens": 101}, "'max_tokens' must be at most 100 on this server (--max-tokens-limit), got 101",
     "max_tokens"),
    ({"max_completion_tokens": 0}, "'max_completion_tokens' must be an integer >= 1, got 0", "max_completion_tokens"),
    ({"n": 5}, "'n' must be at most 4 on this server (--max-n), got 5", "n"),
    ({"top_p": "1"}, "'top_p' must be a number, got '1'", "top_p"),
    ({"seed": 1.5}, "'seed' must be an integer, got 1.5", "seed"),
])
def test_serve_refuses_with_the_same_rules_naming_the_request_field(body, message, param):
    from codetron.eval.serve.config import RequestError

    with pytest.raises(RequestError) as err:
        _parse(body)
    assert (err.value.message, err.value.param) == (message, param)
