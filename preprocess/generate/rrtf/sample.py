"""``codetron rrtf sample``: student responses at several temperatures, plus teacher responses.

Students come from a Hugging Face model folder (a converted checkpoint) through eval's public ``Generator``:
every (problem, temperature, sample) has its own seed, so a sample does not depend on batch size,
shard or restarts. Teachers come from jsonl files and/or an OpenAI-compatible endpoint.

Output: one JSON line per finished problem ``{"task_id", "prompt", "teacher": [{"response",
"source"}], "students": [{"response", "temperature", "index"}]}``. The run is resumable: problems
already in ``--out`` are skipped (a torn last line from a crash is cut off), and ``--out.config.json``
records the settings so a resume with different ones is refused. ``--shard K/N`` samples every N-th
problem for parallel jobs; ``rrtf rank`` reads all shard files.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codetron.errors import CodetronError
from codetron.fileio import atomic_open
from codetron.records import read_jsonl
from codetron.sampling import SamplingParams, cli_flag
from codetron.preprocess.generate.rrtf.problems import normalize_response, pangu_prompt, read_problems, stop_sequences
from codetron.preprocess.generate.store import AppendLog


@dataclass(kw_only=True)
class SampleConfig:
    """Settings of one sampling run."""

    problems: str
    """Problems jsonl (HumanEval or instruction schema, with tests)."""
    out: str
    """Output jsonl (appended to; resumable)."""
    model: str | None = None
    """Student: Hugging Face model folder; None samples no students."""
    temperatures: list[float] = field(default_factory=lambda: [0.2, 0.8])
    """Sampling temperatures; n_samples responses at each."""
    n_samples: int = 4
    """Student responses per problem and temperature."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: int = 512
    """Tokens per student response at most."""
    batch_size: int = 8
    """Sequences decoded together."""
    seed: int = 0
    """Base seed; each (problem, temperature, sample) derives its own."""
    device: str = "auto"
    """"cpu", "cuda", "auto"."""
    dtype: str = "auto"
    """"float32", "bfloat16", "float16", "auto"."""
    backend: str = "transformers"
    """"transformers" or "vllm" (when installed)."""
    teacher_files: list[str] = field(default_factory=list)
    """jsonl files of teacher responses (task_id + response)."""
    teacher_endpoint: str | None = None
    """OpenAI-compatible server URL for teacher responses (greedy)."""
    teacher_model: str = "teacher"
    """Model name sent to the endpoint."""
    teacher_max_new_tokens: int = 512
    """Tokens at most per (greedy) teacher response."""
    teacher_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (optional)."""
    shard: str = "0/1"
    """K/N: sample problems K, K+N, K+2N, ..."""
    chunk: int = 16
    """Problems per written block (progress granularity of the resumable output)."""
    limit: int | None = None
    """Only the first N problems (before sharding)."""

    def sampling(self, temperature: float) -> SamplingParams:
        """The student sampling at one of ``temperatures``, checked by SamplingParams' one validator
        (errors name this command's flags: ``--temperatures``, ``--n-samples``)."""
        flags = {"temperature": "--temperatures", "n": "--n-samples"}
        params = SamplingParams(temperature=temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                                n=self.n_samples, seed=self.seed)
        return params.validate(name=lambda field: flags.get(field) or cli_flag(field))

    def identity(self) -> dict:
        """Settings that must match on resume."""
        keep = ("problems", "model", "temperatures", "n_samples", "top_p", "max_new_tokens", "seed", "backend",
                "teacher_files", "teacher_endpoint", "teacher_model", "shard", "limit")
        return {k: v for k, v in asdict(self).items() if k in keep}


def parse_shard(spec: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise CodetronError(f"--shard {spec!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise CodetronError(f"--shard {spec!r}: need 0 <= K < N")
    return k, n


def finished_tasks(out: Path) -> set[str]:
    """Task ids already written to ``out``."""
    done = set()
    if out.exists():
        for lineno, rec in read_jsonl(out, what="samples", hint="; remove the line or use a new --out"):
            if not isinstance(rec.get("task_id"), str):
                raise CodetronError(f"{out}:{lineno}: field 'task_id' missing or not a string")
            done.add(rec["task_id"])
    return done


def _check_resume(cfg: SampleConfig) -> None:
    path = Path(cfg.out + ".config.json")
    ident = cfg.identity()
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in ident if old.get(k) != ident[k])
        if diff:
            raise CodetronError(f"{cfg.out}: resuming with different settings ({', '.join(diff)}); "
                                f"use the same settings or a new --out")
    else:
        with atomic_open(path) as fh:
            json.dump(ident, fh, indent=1)


class StudentSampler:
    """The student model, loaded once; one seeded generator per (problem, temperature, sample)."""

    def __init__(self, cfg: SampleConfig):
        from codetron.eval.generate import Generator

        self.cfg = cfg
        self.generator = Generator(cfg.model, backend=cfg.backend, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)

    def sample(self, problems: list[dict], prompts: list[str], temperature: float, t_index: int) -> list[list[str]]:
        """n_samples raw outputs per problem at one temperature."""
        from codetron.eval.generate import GenerationConfig

        c = self.cfg
        gen = GenerationConfig(model=c.model, n_samples=c.n_samples, temperature=temperature, top_p=c.top_p,
                               max_new_tokens=c.max_new_tokens, batch_size=c.batch_size,
                               seed=c.seed + 1_000_003 * t_index, device=c.device, dtype=c.dtype, backend=c.backend)
        out: list[list[str]] = [[] for _ in problems]
        # stop sequences differ between problem schemas: decode each schema's problems together
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(problems):
            groups.setdefault(stop_sequences(p), []).append(i)
        for stop, idx in groups.items():
            raw = self.generator.generate_texts([prompts[i] for i in idx], [problems[i]["task_id"] for i in idx],
                                                gen, stop)
            for i, r in zip(idx, raw):
                out[i] = r
        return out


def run(cfg: SampleConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    from codetron.preprocess.generate.rrtf.teacher import TeacherEndpoint, read_teacher_files

    if not cfg.temperatures:
        raise CodetronError("--temperatures: give one or more temperatures")
    for temperature in cfg.temperatures:
        cfg.sampling(temperature)
    if cfg.chunk < 1:
        raise CodetronError(f"--chunk must be >= 1, got {cfg.chunk}")
    if cfg.model is None and not (cfg.teacher_files or cfg.teacher_endpoint):
        raise CodetronError("nothing to sample: give --model (students) and --teacher FILE or --teacher-endpoint URL")
    if cfg.backend not in ("transformers", "vllm"):
        raise CodetronError(f"--backend {cfg.backend!r}: choose transformers or vllm")
    k, n = parse_shard(cfg.shard)
    all_problems = read_problems(cfg.problems)
    problems = all_problems[:cfg.limit][k::n]
    teachers = read_teacher_files(cfg.teacher_files)
    unknown = sorted(set(teachers) - {p["task_id"] for p in all_problems})
    if unknown:
        raise CodetronError(f"teacher files name task_id {unknown[0]!r} that is not in {cfg.problems}")
    client = (TeacherEndpoint(cfg.teacher_endpoint, cfg.teacher_model, cfg.teacher_max_new_tokens, cfg.teacher_api_key_env)
              if cfg.teacher_endpoint else None)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_resume(cfg)
    with AppendLog(out) as log:
        if log.torn_bytes:
            print(f"rrtf sample: cut an incomplete record off the end of {out}")
        done = finished_tasks(out)
        # without any teacher response a problem can make no pair: skip it instead of sampling students
        pending = [p for p in problems if p["task_id"] not in done]
        todo = [p for p in pending if client or p["task_id"] in teachers]
        skipped = len(pending) - len(todo)
        sampler = StudentSampler(cfg) if cfg.model and todo else None
        bar = tqdm(total=len(todo), desc="sampling", unit="problem", disable=not progress)
        written = 0
        for start in range(0, len(todo), cfg.chunk):
            chunk = todo[start:start + cfg.chunk]
            prompts = [pangu_prompt(p) for p in chunk]
            students: list[list[dict]] = [[] for _ in chunk]
            if sampler:
                for ti, temp in enumerate(cfg.temperatures):
                    for i, outs in enumerate(sampler.sample(chunk, prompts, temp, ti)):
                        students[i] += [{"response": normalize_response(chunk[i], o), "temperature": temp, "index": j}
                                        for j, o in enumerate(outs)]
            for i, (p, prompt) in enumerate(zip(chunk, prompts)):
                teacher = [{"response": normalize_response(p, r), "source": "file"} for r in teachers.get(p["task_id"], [])]
                if client:
                    teacher.append({"response": normalize_response(p, client.complete(prompt, stop_sequences(p))),
                                    "source": cfg.teacher_endpoint})
                # one whole line per problem: a crash loses at most the problem in flight
                log.write({"task_id": p["task_id"], "prompt": prompt, "teacher": teacher, "students": students[i]})
                written += 1
            bar.update(len(chunk))
        bar.close()
    summary = {"written": written, "already_done": len(done & {p["task_id"] for p in problems}),
               "skipped_no_teacher": skipped, "shard": cfg.shard}
    print(f"rrtf sample: {written} problems written to {out} ({summary['already_done']} already there, "
          f"{skipped} skipped without a teacher response)")
    return summary
