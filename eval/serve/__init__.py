"""``codetron serve``: a Hugging Face model folder behind an OpenAI-compatible HTTP API.

Endpoints (JSON in, JSON out, the OpenAI wire format that vLLM, TGI and llama.cpp also speak):

- ``GET  /v1/models``            the one served model
- ``POST /v1/completions``       ``prompt`` (string or list of strings) -> ``choices[].text``
- ``POST /v1/chat/completions``  ``messages`` -> ``choices[].message.content``
- ``GET  /health``               200 once the model is loaded

Request fields: ``temperature`` (0 = greedy), ``top_p``, ``max_tokens`` or ``max_completion_tokens``,
``stop`` (string or list; the stop sequence is cut from the text, as OpenAI does), ``n``, ``seed``,
``stream`` (server-sent events, ``data: {chunk}`` lines ending with ``data: [DONE]``; with
``stream_options: {"include_usage": true}`` a last chunk carries the usage) and ``user``. Every other
OpenAI field that would change the result (``logprobs``, ``presence_penalty``, ``response_format``,
``tools``, ...) is refused with a 400 naming it, unless it has its no-op value (``presence_penalty:
0``, ``logprobs: false``, ``response_format: {"type": "text"}``): a client is never silently given
something other than what it asked for. Errors come back as ``{"error": {"message", "type", "param",
"code"}}`` with a 4xx/5xx status.

Chat template: the tokenizer's own ``chat_template`` when it has one (``--chat-template auto``),
else the **alpaca** fallback below, which for a single user message is exactly WizardCoder's
training prompt (``codetron.templates.ALPACA_PROMPT_NO_INPUT``), so a model fine-tuned with
``codetron preprocess instruct --template wizardcoder`` is prompted the way it was trained:

    [system text, or the Alpaca preamble]\\n\\n
    ### Instruction:\\n{user}\\n\\n### Response:{assistant}\\n\\n     (repeated per turn)
    ### Instruction:\\n{last user}\\n\\n### Response:

With the fallback, ``"\\n### Instruction:"`` is an implicit stop sequence so a base model does not
write the next turn itself.

Batching: requests that are waiting when the model becomes free are decoded together, as one
left-padded batch of up to ``--max-batch`` rows sharing one KV cache (dynamic batching); a request
gets its answer as soon as its own rows finish, and finished rows leave the batch. Requests that
arrive while a batch decodes wait for the next one (no joining mid-batch: for that, and for
throughput on a GPU, serve the folder with vLLM: ``--engine vllm``, or ``auto`` when the ``vllm``
extra is installed, hands the whole server over to vLLM's OpenAI server with the same model name,
port and chat template).

Reproducibility: with ``seed`` set, choice ``i`` draws from its own ``torch.Generator`` seeded from
``(seed, i)``, so a request's tokens do not depend on the other requests' random draws. A request
decoded alone (``--max-batch 1``, or no other request waiting) is bit-for-bit repeatable; inside a
padded batch its logits can differ in the last float bits, which changes a sampled token only on a
near-tie (the same caveat as vLLM's batching).

Connections: the listen backlog (``LISTEN_BACKLOG``) and one thread per connection mean hundreds of
clients may connect at once; they queue for the model instead of being reset.

Limits (each a JSON error the client can read, never a hung or reset connection): a missing
Content-Length (or a chunked body) is a 411, a negative, malformed or conflicting one a 400; both
close the connection. A body over ``MAX_BODY_BYTES`` (8 MiB) is a 413: up to ``MAX_DRAIN_BYTES``
(64 MiB) it is read and discarded first, because urllib and requests send the whole body before
reading any reply; beyond that the 413 is sent at once and the connection closed. ``Expect:
100-continue`` (curl, for bodies over 1 MiB) gets the 413 instead of the invitation to send. A
prompt whose character count alone proves it cannot fit the context (more than ``(context -
max_tokens) x L`` characters, L the longest token of a BPE vocabulary; ``engine.token_char_bound``
says which tokenizers have no such bound) is refused before it is tokenized; the rest get the exact
token count.
"""
from __future__ import annotations

from codetron.eval.serve.api import OpenAIHandler, OpenAIServer, check_fields, parse_messages, parse_sampling
from codetron.eval.serve.cli import build_parser, choose_engine, exec_vllm, main, vllm_command
from codetron.eval.serve.config import LISTEN_BACKLOG, MAX_BODY_BYTES, MAX_DRAIN_BYTES, RequestError, ServeConfig
from codetron.eval.serve.engine import (ALPACA_JINJA, ALPACA_STOP, Choice, Engine, SamplingParams, alpaca_chat_prompt,
                                        choice_seed, truncate_at_stop)

__all__ = ["ALPACA_JINJA", "ALPACA_STOP", "Choice", "Engine", "LISTEN_BACKLOG", "MAX_BODY_BYTES", "MAX_DRAIN_BYTES",
           "OpenAIHandler", "OpenAIServer", "RequestError", "SamplingParams", "ServeConfig", "alpaca_chat_prompt",
           "build_parser", "check_fields", "choice_seed", "choose_engine", "exec_vllm", "main", "parse_messages",
           "parse_sampling", "truncate_at_stop", "vllm_command"]
