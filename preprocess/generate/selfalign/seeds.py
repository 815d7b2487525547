"""Seed gathering: documented Python functions from raw code, filtered as StarCoder2-Instruct filtered its seeds.

Sources are ``.py`` files and directories (``@stdlib`` = this interpreter's standard library, a real
corpus on every machine) or jsonl/parquet records with a ``content`` (or ``code``) field, e.g. The Stack.
Candidates are the top-level functions with a docstring, found with ``ast``; each seed carries the
module-level imports it uses, so it reads (and type-checks) on its own. Drop rules, in order:

``parse_error``      the file does not parse (counted per file: none of its functions is a candidate)
``no_arguments``     ``def f():`` -- nothing to vary, little to teach (published rule)
``placeholder``      TODO/FIXME, or a body that is only ``pass`` / ``...`` / ``raise NotImplementedError``
``no_return``        no ``return <value>`` in the function's own body (published rule)
``too_long``         more than ``max_lines`` lines (published: 150)
``contaminated``     shares a 13-word run with HumanEval (prompts, solutions) or a ``--benchmark`` file (MBPP)
``exact_duplicate``  the same code up to whitespace as an earlier seed
``near_duplicate``   MinHash-LSH near-duplicate of an earlier seed
``typecheck``        pyright reports an error (only when pyright is installed, or demanded)
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from codetron.errors import CodetronError, ConfigError

SEED_RULES = ("parse_error", "no_arguments", "placeholder", "no_return", "too_long", "contaminated",
              "exact_duplicate", "near_duplicate", "typecheck")
"""Every seed drop reason, in checking order."""

CODE_FIELDS = ("content", "code")
"""Where a record's source file is looked for."""

TYPECHECK_MODES = ("auto", "pyright", "off")

_UNFINISHED = re.compile(r"\b(?:TODO|FIXME)\b|#\s*(?i:todo|fixme)\b")
"""Upper-case TODO/FIXME anywhere, or a comment starting with todo/fixme in any case (a variable called
``todo`` is not a placeholder)."""


@dataclass(kw_only=True)
class SeedConfig:
    """Which documented functions become seeds."""

    max_lines: int = 150
    """Longest seed in lines (StarCoder2-Instruct's seed filter: 150)."""
    min_lines: int = 3
    """Shortest seed in lines (signature + docstring + one statement)."""
    near_threshold: float = 0.7
    """Jaccard similarity above which a seed is a near-duplicate of an earlier one."""
    decontaminate: bool = True
    """Drop seeds overlapping HumanEval and the ``benchmarks`` files."""
    benchmarks: tuple[str, ...] = ()
    """More benchmark files to decontaminate against (MBPP jsonl, or problems in the HumanEval schema)."""
    typecheck: str = "auto"
    """auto: run pyright when it is on PATH; pyright: require it; off: never."""
    typecheck_batch: int = 200
    """Seeds per pyright invocation."""
    exclude: tuple[str, ...] = ()
    """Globs (relative to each directory given) of ``.py`` files to leave out."""

    def validate(self) -> None:
        if self.min_lines < 1 or self.max_lines < self.min_lines:
            raise ConfigError(f"--max-lines must be >= --min-lines >= 1, got {self.max_lines} and {self.min_lines}")
        if not 0 < self.near_threshold <= 1:
            raise ConfigError(f"--near-threshold must be in (0, 1], got {self.near_threshold}")
        if self.typecheck not in TYPECHECK_MODES:
            raise ConfigError(f"--typecheck {self.typecheck!r}: choose from {', '.join(TYPECHECK_MODES)}")
        for path in self.benchmarks:
            if not Path(path).is_file():
                raise ConfigError(f"--benchmark {path}: no such file")


@dataclass(slots=True)
class Candidate:
    id: str
    seed: str
    source: str
    name: str


@dataclass
class SeedReport:
    seeds: list[dict]
    counts: Counter = field(default_factory=Counter)
    typecheck: str = "off"
    """What the type-check filter did: "pyright <version>", "skipped: ...", "off"."""

    def stats(self) -> dict:
        return {"files": self.counts["files"], "functions": self.counts["functions"], "seeds": len(self.seeds),
                "dropped": {r: self.counts.get(r, 0) for r in SEED_RULES}, "typecheck": self.typecheck}


# --- finding candidates ----------------------------------------------------------------------------


def _sources(inputs: list[str], exclude: tuple[str, ...]):
    """(name, text) of every source file: .py trees directly, records through the shared readers."""
    from codetron.preprocess.readers import expand_inputs, expand_sources, iter_records, resolve_stdlib

    inputs, excl = resolve_stdlib(list(inputs), list(exclude))
    trees = [i for i in inputs if Path(i).is_dir() or i.endswith(".py")]
    data = [i for i in inputs if i not in trees]
    if trees:
        for root, f in expand_sources(trees, (".py",), tuple(excl)):
            rel = str(Path(f).relative_to(root))
            try:
                yield rel, Path(f).read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                yield rel, None
    for path in expand_inputs(data) if data else []:
        for rec in iter_records(path, on_error="fail"):
            key = next((k for k in CODE_FIELDS if isinstance(rec.data.get(k), str)), None)
            if key is None:
                raise CodetronError(f"{path}:{rec.line}: no code field (looked for {', '.join(CODE_FIELDS)})")
            name = rec.data.get("path") or rec.data.get("max_stars_repo_path") or f"{Path(path).name}:{rec.line}"
            yield str(name), rec.data[key]


def _own_nodes(fn: ast.AST):
    """Nodes of ``fn``'s body that belong to it, not to nested functions, lambdas or classes."""
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))


def returns_value(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, ast.Return) and n.value is not None
               and not (isinstance(n.value, ast.Constant) and n.value.value is None) for n in _own_nodes(fn))


def is_placeholder(fn: ast.FunctionDef | ast.AsyncFunctionDef, text: str) -> bool:
    if _UNFINISHED.search(text):
        return True
    body = fn.body[1:] if ast.get_docstring(fn) else fn.body
    for stmt in body:
        if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            continue
        if isinstance(stmt, ast.Raise) and stmt.exc is not None and "NotImplementedError" in ast.unparse(stmt.exc):
            continue
        return False
    return True


def has_arguments(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = fn.args
    return bool(a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg)


def used_imports(tree: ast.Module, fn: ast.AST, source: str) -> list[str]:
    """Module-level import statements that bind a name ``fn`` uses (in file order)."""
    used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (isinstance(node, ast.ImportFrom) and node.level):
            bound = {(a.asname or a.name).split(".")[0] for a in node.names}
            if bound & used:
                out.append(ast.get_source_segment(source, node) or ast.unparse(node))
    return out


def candidates(name: str, source: str | None, cfg: SeedConfig, counts: Counter) -> list[Candidate]:
    """The documented top-level functions of one file that pass the per-function rules."""
    counts["files"] += 1
    try:
        if source is None:
            raise ValueError("not UTF-8")
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        counts["parse_error"] += 1
        return []
    out = []
    for fn in tree.body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not ast.get_docstring(fn):
            continue
        counts["functions"] += 1
        text = ast.get_source_segment(source, fn)
        if fn.decorator_list:  # the segment starts at `def`; keep the decorators with it
            start = min(d.lineno for d in fn.decorator_list)
            text = "\n".join(source.splitlines()[start - 1:fn.end_lineno])
        lines = text.count("\n") + 1
        rule = ("no_arguments" if not has_arguments(fn) else "placeholder" if is_placeholder(fn, text)
                else "no_return" if not returns_value(fn) else "too_long" if lines > cfg.max_lines else None)
        if rule is None and lines < cfg.min_lines:
            continue  # a one-liner is not a seed at all, not a drop worth reporting
        if rule:
            counts[rule] += 1
            continue
        imports = used_imports(tree, fn, source)
        seed = ("\n".join(imports) + "\n\n\n" if imports else "") + text + "\n"
        out.append(Candidate(f"{name}:{fn.name}", seed, name, fn.name))
    return out


# --- whole-corpus filters --------------------------------------------------------------------------


def benchmark_texts(paths: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(name, text) pairs of benchmark problems: MBPP records (``text``/``prompt`` + ``code``) or HumanEval-
    schema problems (``prompt`` + ``canonical_solution``), one JSON object per line."""
    from codetron.records import read_jsonl

    pairs = []
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"--benchmark {path}: no such file")
        n = 0
        for lineno, rec in read_jsonl(path, what="benchmark"):
            tid = rec.get("task_id", f"{Path(path).name}:{lineno}")
            for key in ("text", "prompt", "code", "canonical_solution"):
                if isinstance(rec.get(key), str) and rec[key].strip():
                    pairs.append((f"{tid} {key}", rec[key]))
                    n += 1
        if not n:
            raise CodetronError(f"--benchmark {path}: no benchmark text (looked for text, prompt, code, "
                                f"canonical_solution)")
    return pairs


def decontaminator(benchmarks: tuple[str, ...] | list[str], ngram: int = 13):
    """HumanEval (prompts and canonical solutions) plus ``benchmarks``, on the shared n-gram matcher."""
    from codetron.preprocess.quality import DecontamConfig, Decontaminator, load_humaneval

    pairs = []
    for p in load_humaneval():
        pairs += [(f"{p['task_id']} prompt", p["prompt"]), (f"{p['task_id']} solution", p["canonical_solution"])]
    return Decontaminator(pairs + benchmark_texts(benchmarks), DecontamConfig(ngram=ngram))


def pyright_version() -> str | None:
    exe = shutil.which("pyright")
    if exe is None:
        return None
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip() or "pyright"


def typecheck_errors(codes: list[str], timeout: float = 600.0) -> list[int]:
    """pyright's error count for each code string, each checked as its own file."""
    with tempfile.TemporaryDirectory(prefix="codetron-pyright-") as tmp:
        names = []
        for i, code in enumerate(codes):
            name = Path(tmp, f"seed_{i:06d}.py")
            name.write_text(code, encoding="utf-8")
            names.append(name.resolve())
        proc = subprocess.run(["pyright", "--outputjson", *map(str, names)], capture_output=True, text=True,
                              cwd=tmp, timeout=timeout)
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise CodetronError(f"pyright gave no JSON report (exit {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()[:200]}") from None
        errors: Counter = Counter()
        for diag in report.get("generalDiagnostics", []):
            if diag.get("severity") == "error":
                errors[str(Path(diag.get("file", "")).resolve())] += 1
        return [errors[str(n)] for n in names]


def gather_seeds(inputs: list[str], cfg: SeedConfig, progress: bool = True) -> SeedReport:
    """Every seed of ``inputs`` in input order, with the drop counts."""
    from tqdm import tqdm

    from codetron.preprocess.quality import ExactDeduper, NearDedupConfig, NearDeduper, filter_texts

    cfg.validate()
    report = SeedReport([])
    found: list[Candidate] = []
    for name, source in tqdm(_sources(inputs, cfg.exclude), desc="seed files", unit="file", disable=not progress,
                             file=sys.stderr):
        found += candidates(name, source, cfg, report.counts)
    decon = decontaminator(cfg.benchmarks) if cfg.decontaminate else None
    found = list(filter_texts(found, lambda c: c.seed, decontaminator=decon, exact=ExactDeduper(True),
                              near=NearDeduper(NearDedupConfig(threshold=cfg.near_threshold)),
                              counts=report.counts))
    if cfg.typecheck != "off":
        version = pyright_version()
        if version is None and cfg.typecheck == "pyright":
            raise CodetronError("--typecheck pyright: pyright is not on PATH (npm install -g pyright)")
        if version is None:
            report.typecheck = "skipped: pyright not installed"
            print("codetron selfalign: pyright not installed (npm install -g pyright); type-check filter skipped",
                  file=sys.stderr)
        else:
            report.typecheck = version
            kept = []
            for start in range(0, len(found), cfg.typecheck_batch):
                part = found[start:start + cfg.typecheck_batch]
                for cand, n_err in zip(part, typecheck_errors([c.seed for c in part])):
                    if n_err:
                        report.counts["typecheck"] += 1
                    else:
                        kept.append(cand)
            found = kept
    seen: set[str] = set()
    for c in found:
        sid, k = c.id, 1
        while sid in seen:  # the same function name twice in one file (a redefinition)
            k += 1
            sid = f"{c.id}#{k}"
        seen.add(sid)
        report.seeds.append({"id": sid, "seed": c.seed, "source": c.source, "name": c.name})
    return report
