"""What ``codetron serve`` serves and how, its limits, and the client-error type every part raises."""
from __future__ import annotations

from dataclasses import dataclass


MAX_BODY_BYTES = 8 << 20
"""Largest request body accepted (413 above)."""
MAX_DRAIN_BYTES = 64 << 20
"""Largest refused body still read (and discarded) before the 413 is sent: clients such as urllib and
requests send the whole body before reading the reply, and a server that answers and closes while
they are still sending gives them a broken pipe instead of the 413. A longer body gets the 413 at
once and the connection is closed."""
LISTEN_BACKLOG = 1024
"""Pending TCP connections the kernel queues before accept(). The standard library's 5 made the
kernel reset most of 50 simultaneous connections on loopback; clients must wait, never be dropped."""


@dataclass(kw_only=True, slots=True)
class ServeConfig:
    """What is served and how."""

    model: str
    """Hugging Face model folder (config.json, weights, tokenizer files)."""
    model_name: str | None = None
    """Name reported by /v1/models and required in requests' ``model`` field (default: folder name)."""
    host: str = "127.0.0.1"
    """Interface to bind. The default is loopback only; binding others exposes the model to the network."""
    port: int = 8000
    """TCP port (0 picks a free one and prints it)."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1" or "auto"."""
    dtype: str = "auto"
    """"float32", "bfloat16", "float16" or "auto" (bf16 on GPU, fp32 on CPU)."""
    chat_template: str = "auto"
    """"auto" (the tokenizer's template, else alpaca), "alpaca", or a path to a Jinja template file."""
    max_tokens_limit: int = 4096
    """Largest ``max_tokens`` a request may ask for."""
    max_n: int = 16
    """Largest ``n`` (choices per request)."""
    default_max_tokens: int = 256
    """``max_tokens`` when a request leaves it out."""
    max_batch: int = 32
    """Rows (choices of all batched requests) decoded together at most; 1 decodes one request at a time.
    A request with more choices than this still runs, alone."""
    engine: str = "auto"
    """"transformers" (this process), "vllm" (hand the server over to vLLM's OpenAI server), or "auto":
    vLLM when the ``vllm`` extra is installed and the device is not the CPU, else transformers."""


class RequestError(Exception):
    """A client mistake: becomes a 4xx JSON error."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.kind = message, param, status, kind


