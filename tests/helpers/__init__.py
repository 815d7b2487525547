"""What several test folders share: tiny HF models and tokenizers (``models``), the fake
OpenAI-compatible server (``openai_server``), launching ``codetron`` and the layout-parity runs
(``runs``). Numbers stay in the tests: each call site passes its own shapes and seeds."""
