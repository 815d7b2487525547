"""Instruction prompt templates: the exact text a model is fine-tuned on and then prompted with.

``preprocess`` renders training documents with these templates; ``eval`` (prompt formats, the
serving chat fallback) and generation (completions-API backends, RRTF) prompt a model with the
same text. Why here and not in either stage: the template is the contract *between* training and
inference, and the data path only runs one way -- preprocess may call eval's public APIs (the
sandbox, decoding), eval must never import preprocess. Keeping the contract in the shared core
package lets both sides depend on it without depending on each other.

Every function returns plain strings; end-of-document is never part of the text (the preprocess
pipeline appends the tokenizer's EOD id). Instruction templates return ``(prompt, response)``:
``prompt + response`` is the training text and the loss goes on ``response`` only.
"""
from __future__ import annotations

ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")
"""The Alpaca/WizardCoder preamble (also the serving chat fallback's default system text)."""

ALPACA_PROMPT_NO_INPUT = ALPACA_PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Response:"
"""WizardCoder's training/inference prompt (the Alpaca template without input), exact text."""

ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
"""The Alpaca template for records with a non-empty ``input`` field, exact text."""

ALPACA_STOP = "\n### Instruction:"
"""Where a model prompted with the Alpaca template starts writing the next turn itself."""


def wizardcoder_prompt(instruction: str, input: str = "") -> str:
    """The WizardCoder prompt; generation (or the training response) follows ``### Response:``."""
    if input and input.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def render_wizardcoder(instruction: str, output: str, input: str = "") -> tuple[str, str]:
    """WizardCoder SFT pair: response is the output verbatim (WizardCoder adds nothing between)."""
    return wizardcoder_prompt(instruction, input), output


def render_octocoder(question: str, answer: str) -> tuple[str, str]:
    """OctoCoder's SFT split: prompt ``Question: Q\\n\\nAnswer: `` (trailing space), response ``A``.

    As octopack's target-loss dataset (finetuning/starcoder/finetune.py lines 202-203 and 224-227 at
    e17a8f6): ``"Question: " + Q + "\\n\\nAnswer: "`` is tokenized and masked as one piece and the
    answer alone carries the loss, so the space belongs to the masked prompt."""
    return f"Question: {question}\n\nAnswer: ", answer


def octocoder_prompt(instruction: str, input: str = "") -> str:
    """The OctoCoder inference prompt for an instruction (input, if any, follows it on the next line):
    ``Question: Q\\n\\nAnswer:`` without the space (the model writes what follows ``Answer:``; a prompt
    ending in a space tokenizes unlike the training text, where the space merges with the answer's
    first token or stands alone at the end of the masked prompt)."""
    return f"Question: {join_input(instruction, input)}\n\nAnswer:"


def render_octocoder_instruction(instruction: str, output: str, input: str = "") -> tuple[str, str]:
    return render_octocoder(join_input(instruction, input), output)


STARCODER2_INSTRUCT_SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers "
                              "accurate and reliable responses to user instructions.")
"""The fixed system line of StarCoder2-15B-Instruct-v0.1 (its template rejects system messages)."""

STARCODER2_INSTRUCT_CHAT_TEMPLATE = (
    "{{bos_token}}{{'" + STARCODER2_INSTRUCT_SYSTEM + "\n\n'}}\n"
    "{%- for message in messages %}\n"
    "    {%- if message['role'] == 'system' %}\n"
    "        {{ raise_exception('System messages are not allowed in this template.') }}\n"
    "    {%- else %}\n"
    "        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction\n' + message['content'] + '\n\n'}}\n"
    "        {%- else %}\n"
    "{{'### Response\n' + message['content'] + eos_token + '\n\n'}}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{{'### Response\n'}}"
)
"""The ``chat_template`` of bigcode/starcoder2-15b-instruct-v0.1 (tokenizer_config.json; the same string is
``CHAT_TEMPLATE`` in starcoder2-self-align ``src/star_align/prompt_template.py``), for tokenizer files
written by conversion; ``starcoder2_instruct_prompt`` renders a single turn of it in plain Python."""

STARCODER2_INSTRUCT_STOP = "###"
"""StarCoder2-Instruct's terminator besides EOS (its model card stops on the ``###`` token)."""


def starcoder2_instruct_prompt(instruction: str) -> str:
    """One user turn in StarCoder2-Instruct's chat template, ending where the response starts
    (``### Response\\n``). Without ``bos_token``: its evaluation script (text2code.py) formats the
    same text without it, and Codetron's GPTBigCode/StarCoder2 tokenizers add none."""
    return f"{STARCODER2_INSTRUCT_SYSTEM}\n\n### Instruction\n{instruction}\n\n### Response\n"


def render_starcoder2_instruct(instruction: str, output: str, input: str = "") -> tuple[str, str]:
    """StarCoder2-Instruct SFT pair: the response follows ``### Response\\n`` verbatim (EOD is added by
    the pipeline, where the chat template writes ``eos_token``)."""
    return starcoder2_instruct_prompt(join_input(instruction, input)), output


def render_plain(instruction: str, output: str, input: str = "") -> tuple[str, str]:
    """No template: ``INSTRUCTION[\\n\\nINPUT]\\n\\n`` then the output."""
    return join_input(instruction, input, sep="\n\n") + "\n\n", output


def join_input(instruction: str, input: str, sep: str = "\n") -> str:
    """The instruction with a non-empty ``input`` appended after ``sep``."""
    return f"{instruction}{sep}{input}" if input and input.strip() else instruction


INSTRUCTION_TEMPLATES = {
    "wizardcoder": render_wizardcoder,
    "octocoder": render_octocoder_instruction,
    "plain": render_plain,
    "starcoder2-instruct": render_starcoder2_instruct,
}
"""name -> f(instruction, output, input) -> (prompt, response)."""

BOS_TEMPLATES = frozenset({"starcoder2-instruct"})
"""Instruction templates whose training documents start with the tokenizer's BOS token: StarCoder2-Instruct
encodes the prompt with ``add_bos=True`` (starcoder2-self-align@0b19dbcd ``src/star_align/train.py:51``,
applied in ``llm_wrapper.py:142-153``), and StarCoder2's ``bos_token`` is ``<|endoftext|>``, Codetron's
EOD, so ``codetron preprocess`` puts the EOD id in front of the prompt."""

PROMPT_TEMPLATES = {
    "wizardcoder": wizardcoder_prompt,
    "octocoder": octocoder_prompt,
    "plain": lambda instruction, input="": render_plain(instruction, "", input)[0],
    "starcoder2-instruct": lambda instruction, input="": starcoder2_instruct_prompt(join_input(instruction, input)),
}
"""name -> f(instruction, input) -> prompt, for generation with the training template."""
