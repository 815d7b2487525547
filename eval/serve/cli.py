"""``codetron serve`` command line: choose the engine (this process or vLLM's server), then listen."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from codetron.cli_args import add_field, field_docs
from codetron.errors import CodetronError
from codetron.eval.serve.api import OpenAIServer
from codetron.eval.serve.config import ServeConfig
from codetron.eval.serve.engine import ALPACA_JINJA, Engine


ENGINES = ("auto", "vllm", "transformers")


def choose_engine(cfg: ServeConfig) -> tuple[str, str | None]:
    """("vllm" or "transformers", a one-line note to print or None)."""
    if cfg.engine not in ENGINES:
        raise CodetronError(f"--engine {cfg.engine!r}: choose auto, vllm or transformers")
    if cfg.engine == "transformers":
        return "transformers", None
    installed = importlib.util.find_spec("vllm") is not None
    if cfg.engine == "vllm":
        if not installed:
            raise CodetronError("--engine vllm: vllm is not installed here (pip install 'codetron[vllm]', "
                                "in its own environment: it pins its own torch)")
        return "vllm", None
    if not installed:
        return "transformers", ("codetron serve: vllm not installed; serving with the transformers engine "
                                "(dynamic batching; pip install 'codetron[vllm]' for GPU throughput)")
    if cfg.device == "cpu":
        return "transformers", "codetron serve: --device cpu: serving with the transformers engine, not vllm"
    return "vllm", None


def _tokenizer_has_template(model_dir: str) -> bool:
    folder = Path(model_dir)
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False


def vllm_command(cfg: ServeConfig, template_dir: str) -> list[str]:
    """vLLM's OpenAI server with this server's settings: model name, address, dtype, limits and the
    same chat template (the alpaca fallback is written to ``template_dir`` as Jinja)."""
    port = cfg.port
    if port == 0:  # vLLM has no "any free port": pick one here and print it like the native server
        with socket.socket() as s:
            s.bind((cfg.host, 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model,
           "--served-model-name", cfg.model_name or Path(cfg.model).resolve().name, "--host", cfg.host,
           "--port", str(port), "--dtype", "auto" if cfg.dtype == "auto" else cfg.dtype,
           "--max-num-seqs", str(max(cfg.max_batch, cfg.max_n))]
    template = None
    if cfg.chat_template == "alpaca" or (cfg.chat_template == "auto" and not _tokenizer_has_template(cfg.model)):
        template = os.path.join(template_dir, "alpaca.jinja")
        Path(template).write_text(ALPACA_JINJA, encoding="utf-8")
    elif cfg.chat_template != "auto":
        template = str(Path(cfg.chat_template).resolve())
    if template:
        cmd += ["--chat-template", template]
    return cmd


def exec_vllm(cfg: ServeConfig) -> None:
    """Replace this process by vLLM's server (signals and exit status are then vLLM's own)."""
    template_dir = tempfile.mkdtemp(prefix="codetron-serve-")
    cmd = vllm_command(cfg, template_dir)
    env = dict(os.environ)
    if cfg.device.startswith("cuda:"):  # vLLM takes its GPU from the environment
        env["CUDA_VISIBLE_DEVICES"] = cfg.device.split(":", 1)[1]
    port = cmd[cmd.index("--port") + 1]
    print(f"codetron serve: handing over to vLLM; listening on http://{cfg.host}:{port}/v1", flush=True)
    os.execvpe(cmd[0], cmd, env)


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codetron serve",
        description="Serve a Hugging Face model folder (e.g. a `codetron convert` output) over the OpenAI "
                    "HTTP API: /v1/models, /v1/completions, /v1/chat/completions (streaming included).",
        epilog="example:\n  codetron serve out/hf-model --port 8000\n"
               "  curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
               "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Write a Python function that "
               "reverses a string.\"}], \"max_tokens\": 128, \"temperature\": 0}'\n"
               "Then point `codetron evolve --base-url http://127.0.0.1:8000/v1` at it.\n"
               "With the vllm extra installed (and a GPU), the same command runs vLLM's server instead.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=field_docs(ServeConfig)["model"])
    for name in ("host", "port", "model_name", "device", "dtype", "chat_template", "max_tokens_limit", "max_n",
                 "default_max_tokens", "max_batch"):
        add_field(p, ServeConfig, name)
    add_field(p, ServeConfig, "engine", choices=ENGINES)
    p.add_argument("--verbose", action="store_true", help="log one line per request")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise CodetronError(f"--port {args.port}: must be in 0..65535")
    if args.max_batch < 1:
        raise CodetronError(f"--max-batch must be >= 1, got {args.max_batch}")
    cfg = ServeConfig(model=args.model, model_name=args.model_name, host=args.host, port=args.port,
                      device=args.device, dtype=args.dtype, chat_template=args.chat_template,
                      max_tokens_limit=args.max_tokens_limit, max_n=args.max_n,
                      default_max_tokens=args.default_max_tokens, max_batch=args.max_batch, engine=args.engine)
    if not 1 <= cfg.default_max_tokens <= cfg.max_tokens_limit:
        raise CodetronError(f"--default-max-tokens must be in 1..--max-tokens-limit ({cfg.max_tokens_limit}), "
                            f"got {cfg.default_max_tokens}")
    if not (Path(cfg.model) / "config.json").is_file():  # fail before the slow torch import
        raise CodetronError(f"{cfg.model}: not a Hugging Face model folder (no config.json)")
    kind, note = choose_engine(cfg)
    if note:
        print(note, file=sys.stderr, flush=True)
    if kind == "vllm":
        exec_vllm(cfg)
    engine = Engine(cfg.model, cfg.device, cfg.dtype, cfg.chat_template, max_batch=cfg.max_batch)
    try:
        server = OpenAIServer(engine, cfg, verbose=args.verbose)
    except OSError as exc:
        raise CodetronError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
    # the URL line is machine-read by scripts (and tests) that start the server with --port 0
    print(f"codetron serve: {server.model_name} on {engine.device} (chat template: {engine.template_name}, "
          f"batches of up to {cfg.max_batch} rows), listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
