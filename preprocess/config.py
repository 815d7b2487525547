"""Typed configuration for ``codetron preprocess`` (one dataclass per concern)."""
from __future__ import annotations

from dataclasses import dataclass, field

from codetron.preprocess.commitpack import CommitFilterConfig
from codetron.preprocess.quality import DecontamConfig, NearDedupConfig
from codetron.preprocess.readers import MAX_DOC_CHARS

MODES = ("code", "commitpack", "instruct", "text")
LAYOUTS = ("pretrain", "sft")
DEFAULT_LAYOUT = {"code": "pretrain", "commitpack": "pretrain", "instruct": "sft", "text": "pretrain"}
"""The layout of each mode when ``JobConfig.layout`` is None."""

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    # The Stack / StarCoderData use the max_stars_* columns; other dumps use the short names.
    "content": ("content", "code", "text"),
    "repo": ("max_stars_repo_name", "repo_name", "repository_name", "repo"),
    "path": ("max_stars_repo_path", "path", "file_path", "filename"),
    "stars": ("max_stars_count", "stars", "star_count", "stargazers_count"),
    "lang": ("lang", "language"),
    "instruction": ("instruction", "prompt", "question"),
    "input": ("input", "context"),
    "output": ("output", "response", "completion", "answer"),
    "text": ("text", "content"),
}
"""Logical field -> record keys tried in order (override with ``--field NAME=KEY``)."""


@dataclass(kw_only=True)
class CodeConfig:
    """Pretraining code documents in StarCoder's metadata format."""

    p_repo: float = 0.2
    """Probability of prefixing ``<reponame>REPO`` (StarCoder: each field independently with 0.2)."""
    p_path: float = 0.2
    """Probability of prefixing ``<filename>PATH``."""
    p_stars: float = 0.2
    """Probability of prefixing ``<gh_stars>BUCKET``."""
    languages: frozenset[str] = field(default_factory=frozenset)
    """Keep only these languages (``lang`` field, case-insensitive); empty keeps all."""


@dataclass(kw_only=True)
class CommitConfig:
    """CommitPack records: filters and output format."""

    filters: CommitFilterConfig = field(default_factory=CommitFilterConfig)
    """The CommitPackFT rules."""
    format: str = "starcoder"
    """``starcoder`` (<commit_before>OLD<commit_msg>SUBJECT<commit_after>NEW), ``octocoder``
    (Question/Answer) or ``plain`` (the new file's content, as code)."""
    filename: bool = False
    """starcoder format: prefix ``<filename>NEW_FILE``."""


@dataclass(kw_only=True)
class InstructConfig:
    """Instruction records (Evol-Instruct / CodeAlpaca: instruction, optional input, output)."""

    template: str = "wizardcoder"
    """``wizardcoder`` (Alpaca text, exact), ``octocoder`` or ``plain``."""


@dataclass(kw_only=True)
class SentenceConfig:
    """Sentence splitting (text mode, pretrain layout; ``preprocess/sentences.py``)."""

    split: bool = False
    """Split every document into sentences, one sequence each (Megatron-LM ``--split-sentences``)."""
    keep_newlines: bool = False
    """Keep the whitespace (newlines included) between sentences at the end of the sentence before
    it (Megatron-LM ``--keep-newlines``); otherwise it is dropped."""
    lang: str = "english"
    """Punkt model language looked up on nltk's data path (``tokenizers/punkt_tab/LANG``)."""
    punkt_model: str | None = None
    """A ``punkt_tab`` language directory (abbrev_types.txt, collocations.tab, ortho_context.tab,
    sent_starters.txt) to use instead of the data-path lookup, or ``default`` for Punkt's default
    parameters; after the lookup the summary records the model used."""


@dataclass(kw_only=True)
class QualityConfig:
    """Dedup and decontamination."""

    dedup: str = "exact"
    """``none``, ``exact`` (identical documents) or ``near`` (exact, then MinHash-LSH)."""
    near: NearDedupConfig = field(default_factory=NearDedupConfig)
    """Near-dedup parameters (used when ``dedup == "near"``)."""
    decontaminate: bool = True
    """Drop documents sharing an n-gram with HumanEval prompts or canonical solutions."""
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    """Decontamination parameters."""


@dataclass(kw_only=True)
class JobConfig:
    """What a worker needs to turn raw items into token sequences (picklable)."""

    mode: str
    """One of ``MODES``."""
    layout: str | None = None
    """``pretrain``: one sequence per document ending in EOD. ``sft``: [prompt, response+EOD]. None:
    the mode's (``DEFAULT_LAYOUT``: sft for instruct, pretrain for the others)."""
    tokenizer: str
    """Path of the tokenizer file."""
    encoder: str = "auto"
    """Encode backend: ``auto`` (tiktoken when a start-up self-check proves ids identical to the
    tokenizer's own library, else that library), ``tiktoken`` (required: a ConfigError says why it
    cannot be used) or ``tokenizers``. ``pipeline.run`` replaces ``auto`` with the checked result,
    so workers given ``tiktoken`` build it without repeating the check."""
    fields: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(FIELD_ALIASES))
    """Field aliases after ``--field`` overrides."""
    code: CodeConfig = field(default_factory=CodeConfig)
    """Code-mode settings."""
    commit: CommitConfig = field(default_factory=CommitConfig)
    """CommitPack-mode settings."""
    instruct: InstructConfig = field(default_factory=InstructConfig)
    """Instruction-mode settings."""
    sentences: SentenceConfig = field(default_factory=SentenceConfig)
    """Sentence splitting (text mode)."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    """Dedup/decontamination settings."""
    max_doc_chars: int = MAX_DOC_CHARS
    """Documents whose text (all sequences together) is longer than this many characters are
    dropped (``doc_too_long`` in the summary); jsonl lines over 12 bytes per allowed character
    (the longest JSON escape of one character) are read no further than that and skipped, so memory
    stays bounded by the cap.
    0: no cap (a document then costs memory in proportion to its size)."""
    seed: int = 1234
    """Seed for every random choice (metadata fields, bump commits); hashed with the record's
    file name and line, so results do not depend on worker count or sharding."""

    def __post_init__(self):
        if self.layout is None:
            self.layout = DEFAULT_LAYOUT.get(self.mode, "pretrain")


@dataclass(kw_only=True)
class PipelineConfig:
    """A whole ``codetron preprocess`` run."""

    inputs: list[str]
    """Files, directories or globs of jsonl(.gz/.zst), JSON arrays or parquet; ``datasets``
    save_to_disk directories; hub datasets as ``hf://OWNER/NAME[@REV][/DATA_DIR][:CONFIG][:SPLIT]``."""
    output_prefix: str
    """Writes PREFIX.bin, PREFIX.idx and PREFIX.summary.json."""
    job: JobConfig
    """Per-record processing."""
    workers: int = 2
    """Worker processes for parsing and tokenization (0 or 1: in the main process)."""
    chunk_docs: int = 512
    """Records per work unit."""
    chunk_bytes: int = 1 << 20
    """Approximate bytes per work unit: bounds memory (the tokenizer's per-batch state is ~100x the
    text) and keeps both workers busy on inputs of few large files."""
    on_error: str = "skip"
    """``skip``: count bad records and go on; ``fail``: stop at the first, leaving no output."""
    shard: tuple[int, int] = (0, 1)
    """(index, count): process only this shard of the input (for Slurm arrays)."""
    source_suffixes: tuple[str, ...] = ()
    """If set, inputs are source trees: every file ending in one of these is one document
    (``content`` = the file, ``path`` relative to the input directory, ``repo`` = its name)."""
    exclude: tuple[str, ...] = ()
    """Source trees: fnmatch globs of relative paths to leave out (e.g. ``test/*``)."""
    max_file_bytes: int = 1 << 20
    """Source trees: larger files are dropped (reason ``file_too_large``)."""
    progress: bool = True
    """Show a tqdm progress bar on stderr."""
    max_error_examples: int = 20
    """How many bad records to list (file:line: reason) in the summary."""
