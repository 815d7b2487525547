"""sbatch scripts generated from presets, recipes and a cluster profile.

Every script is plain bash that also works with a bare ``sbatch``: paths and knobs are variables
with defaults (``DATA_PATH=... SAVE_DIR=... sbatch slurm/starcoder-pretrain.sbatch``), and Slurm
flags on the ``sbatch`` command line override the ``#SBATCH`` lines as usual.

Launch choice (training): ``srun`` starts one task per GPU and the trainer takes its rank from
SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID. Why not ``srun`` + ``torchrun`` per node:
  * signals: Slurm delivers to every rank directly; torchrun's agent does not forward SIGUSR1 and
    answers SIGTERM by tearing its workers down, so the time-limit warning never reaches training;
  * failures: ``--kill-on-bad-exit=1`` ends the whole step when one rank dies, instead of a c10d
    agent waiting on a rendezvous that will never complete; requeue, not elastic restarts, is how a
    Slurm job recovers;
  * placement: Slurm's block distribution puts ranks 0-7 on node 0, so TP groups (consecutive ranks)
    stay inside a node; no extra rendezvous port, and pyxis containers work unchanged.
``launcher: torchrun`` in the profile renders the c10d variant for sites that need it.

Signals tell the two ways a job ends apart (docs/operations.md). USR1 is the time-limit warning
(``--signal=B:USR1@N``, batch shell only) or an operator's ``scancel -b -s USR1``: the trap touches
the trainer's ``--checkpoint.exit_file`` -- launcher-agnostic (works through torchrun) and safe at
any moment (a signal arriving while Python is still importing would kill the rank; a file is read at
the end of the next step). The trainer saves, exits 0 and writes ``run_state.json``; the script then
requeues itself (``scontrol requeue``, same job id, ``--open-mode=append`` keeps one log) or submits
a dependent copy, and the next run resumes from ``checkpoint.save`` with no flag changed. TERM is
what ``scancel`` (and Slurm at the time limit or on preemption) sends to the shell and every task:
the trainer, whose exit signal is USR1 alone, dies at once, and the script records "cancelled" and
never requeues -- before, the trainer checkpointed on TERM and the job requeued itself, so scancel
could not stop a run. A rank killed by a signal (exit 128+n) requeues, a bounded number of times
without progress; an error exit does not (it would only repeat).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from codetron.errors import ConfigError
from codetron.megatron_ext.config import NO_VALUE, TrainConfig
from codetron.slurm.profile import NCCL_DEFAULTS, ClusterProfile

# Keys the launcher sets from variables, so they are not baked into the argument list.
_PATH_KEYS = {"data.data_path", "checkpoint.save", "checkpoint.load", "checkpoint.exit_file", "data.tokenizer",
              "checkpoint.exit_signals"}


@dataclass
class Script:
    """One rendered sbatch file."""

    name: str
    """File stem, also the ``--job-name``."""
    text: str
    """The script."""
    kind: str
    """train / preprocess / merge / convert / eval."""
    after: str | None = None
    """Name of another script of the same bundle this one must follow (``afterok``)."""


def q(value: Any) -> str:
    return shlex.quote(str(value))


def format_value(value: Any) -> str:
    """A config value as the trainer's ``--key value`` parser reads it."""
    if value is NO_VALUE:  # a bare true/false flag (any other field was refused when the config resolved)
        return "true"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(q(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return q(value)


def trainer_args(preset: str | None, recipe: str | None, overrides: dict[str, Any]) -> list[str]:
    """``--preset/--recipe`` then every recipe and user override spelled out, so a reader of the
    script sees the published layout and hyper-parameters without looking up the recipe."""
    lines = []
    head = []
    if preset:
        head += ["--preset", q(preset)]
    if recipe:
        head += ["--recipe", q(recipe)]
    if head:
        lines.append(" ".join(head))
    for key, value in overrides.items():
        if key in _PATH_KEYS or key in ("preset", "recipe"):
            continue
        lines.append(f"--{key} {format_value(value)}")
    return lines


def _directives(p: ClusterProfile, *, name: str, kind: str, nodes: int, ntasks_per_node: int, cpus: int,
                gpus_per_node: int, time: str, partition: str | None, array: str | None = None,
                requeue: bool = False, log_pattern: str = "%x-%j.out") -> list[str]:
    d = [f"--job-name={name}"]
    if partition:
        d.append(f"--partition={partition}")
    if p.account:
        d.append(f"--account={p.account}")
    if p.qos:
        d.append(f"--qos={p.qos}")
    if p.constraint and gpus_per_node:
        d.append(f"--constraint={p.constraint}")
    d += [f"--nodes={nodes}", f"--ntasks-per-node={ntasks_per_node}", f"--cpus-per-task={cpus}"]
    if gpus_per_node:
        d.append(f"--gpus-per-node={gpus_per_node}")
    if p.mem is not None:
        d.append(f"--mem={p.mem}")
    if p.exclusive and kind == "train" and nodes > 1:
        d.append("--exclusive")
    d.append(f"--time={time}")
    if array:
        d.append(f"--array={array}")
    d += [f"--output={p.log_dir}/{log_pattern}", "--open-mode=append"]
    if requeue:
        d += ["--requeue", f"--signal=B:USR1@{p.signal_seconds}"]
    d += list(p.sbatch_extra)
    return ["#SBATCH " + x for x in d]


def _environment(p: ClusterProfile, gpu_job: bool) -> list[str]:
    out = []
    if p.modules:
        out.append("module purge 2>/dev/null || true")
        out += [f"module load {q(m)}" for m in p.modules]
    out += list(p.setup)
    env = dict(NCCL_DEFAULTS) if (gpu_job and p.nccl_defaults) else {}
    env.update(p.env)
    out += [f"export {k}=${{{k}:-{q(v)}}}" for k, v in env.items()]
    return out


def _srun(p: ClusterProfile, *extra: str) -> str:
    parts = ["srun", "--kill-on-bad-exit=1", *extra]
    if p.container_image:
        parts.append(f"--container-image={q(p.container_image)}")
        if p.container_mounts:
            parts.append(f"--container-mounts={q(','.join(p.container_mounts))}")
    return " ".join(parts)


def _header(title: str, command: str, usage: list[str]) -> list[str]:
    lines = ["#!/bin/bash", f"# {title}", f"# Generated by: {command}",
             "# Regenerate rather than edit: `codetron slurm render --help`. Plain sbatch works too:"]
    lines += [f"#   {u}" for u in usage]
    return lines


_COMMON_VARS = [
    'PYTHON=${PYTHON:-%(python)s}  # interpreter with codetron installed',
    'EXTRA_ARGS=${EXTRA_ARGS:-}  # appended to the command line (word-split)',
]


def _var(name: str, default: str | None, help_: str) -> str:
    if default is None:
        return f'{name}=${{{name}:?set {name}: {help_}}}'
    return f'{name}=${{{name}:-{q(default)}}}  # {help_}'


# --------------------------------------------------------------------------------------- training


def render_train(p: ClusterProfile, cfg: TrainConfig, overrides: dict[str, Any], *, name: str, command: str,
                 data: list[str] | None = None, save: str | None = None, load: str | None = None,
                 tokenizer: str | None = None) -> Script:
    """A training / fine-tuning job (``codetron train``) with preemption and self-requeue."""
    torchrun = p.launcher == "torchrun"
    ranks = p.ranks_per_node
    gpus = p.gpus_per_node
    ntasks = 1 if torchrun else ranks
    cpus = p.cpus_per_task * (ranks if torchrun else 1)
    directives = _directives(p, name=name, kind="train", nodes=p.nodes, ntasks_per_node=ntasks, cpus=cpus,
                             gpus_per_node=gpus, time=p.time, partition=p.partition, requeue=p.requeue != "none")
    finetune = cfg.checkpoint.finetune
    usage = [f"mkdir -p {p.log_dir} && DATA_PATH=/data/code_content_document SAVE_DIR=/ckpt/{name} "
             f"{'LOAD_DIR=/ckpt/starcoder-base ' if finetune else ''}sbatch slurm/{name}.sbatch",
             "Other variables: PYTHON, TOKENIZER, LOAD_DIR, EXTRA_ARGS (extra trainer flags), MAX_RESTARTS, "
             "MAX_KILLED_RESTARTS, CODETRON_MASTER_PORT.",
             "Cancel: scancel <jobid> (stops, no requeue). Checkpoint and requeue now: scancel -b -s USR1 <jobid>.",
             "Signals, requeue and recovery: slurm/README.md and docs/operations.md."]
    lines = _header(f"{name}: codetron train ({cfg.recipe or cfg.preset}) on {p.nodes} node(s) x {ranks} ranks "
                    f"= {p.world_size} ({p.name} profile)", command, usage)
    lines += directives
    lines += ["", "set -uo pipefail  # no -e: the wait loop below handles non-zero statuses itself", ""]
    lines += [v % {"python": q(p.python)} for v in _COMMON_VARS]
    lines.append(_var("DATA_PATH", " ".join(data) if data else None,
                      ".bin/.idx prefix (or 'w1 p1 w2 p2' blend) from codetron preprocess"))
    lines.append(_var("SAVE_DIR", save or f"checkpoints/{name}", "checkpoints; the run resumes from here"))
    if finetune:
        lines.append(_var("LOAD_DIR", load, "base checkpoint to fine-tune (e.g. from codetron convert from-hf)"))
    else:
        lines.append(_var("LOAD_DIR", load or "", "checkpoint to continue from while SAVE_DIR has none; empty = scratch"))
    lines.append(_var("TOKENIZER", tokenizer or "", "tokenizer.json; empty = the bundled default"))
    lines.append(_var("MAX_RESTARTS", str(p.max_restarts), "stop requeueing after this many restarts"))
    lines.append(_var("MAX_KILLED_RESTARTS", str(p.max_killed_restarts),
                      "requeues after a killed rank without a newer checkpoint"))
    lines.append("")
    lines += _environment(p, gpu_job=gpus > 0)
    lines += [
        "",
        "# Rendezvous on the first node, always from Slurm's values: sbatch exports the submitting shell's",
        "# environment, where a stale MASTER_ADDR or RANK/WORLD_SIZE would send every rank to a wrong peer.",
        "unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE GROUP_RANK NODE_RANK MASTER_PORT",
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "# The port follows the job id (jobs sharing a node differ) and stays below the kernel's ephemeral",
        "# range, where an outgoing connection may already hold any port.",
        "{ read -r EPHEMERAL_LOW _ < /proc/sys/net/ipv4/ip_local_port_range; } 2>/dev/null || EPHEMERAL_LOW=32768",
        f"PORT_BASE={p.master_port_base}",
        'if [ "$EPHEMERAL_LOW" -le "$PORT_BASE" ]; then',
        '  echo "[codetron] master_port_base $PORT_BASE is not below the ephemeral ports ($EPHEMERAL_LOW+);'
        ' set CODETRON_MASTER_PORT" >&2',
        '  [ -n "${CODETRON_MASTER_PORT:-}" ] || exit 1',
        "fi",
        'MASTER_PORT=${CODETRON_MASTER_PORT:-$(( PORT_BASE + SLURM_JOB_ID % (EPHEMERAL_LOW - PORT_BASE) ))}',
        "export MASTER_ADDR MASTER_PORT",
        'RESTARTS=$(( ${SLURM_RESTART_COUNT:-0} + ${CODETRON_RESTARTS:-0} ))',
        'mkdir -p "$SAVE_DIR"',
        'RUN_STATE="$SAVE_DIR/run_state.json"',
        '# The trainer checkpoints and exits 0 when this file appears (checked after every step).',
        'EXIT_FILE="$SAVE_DIR/.exit-request-$SLURM_JOB_ID"',
        'rm -f "$EXIT_FILE"',
        "# USR1 (--signal=B:USR1@N before the time limit, or scancel -b -s USR1 by hand): checkpoint, requeue.",
        "# TERM (scancel; Slurm at the time limit or on preemption): stop. Slurm signals the tasks itself and",
        "# kills what is left after KillWait; this job then never requeues itself. The trainer's exit signal",
        "# is therefore USR1 alone (it also comes from scancel -s USR1 <jobid>, which reaches the tasks).",
        'CANCELLED=""',
        "on_usr1() {",
        '  echo "[codetron] $(date +%FT%T) SIGUSR1: asking the trainer to checkpoint and exit"',
        '  touch "$EXIT_FILE"',
        "}",
        "on_term() {",
        '  CANCELLED=1',
        '  echo "[codetron] $(date +%FT%T) SIGTERM: the job is ending; stopping without checkpoint or requeue"',
        "}",
        "trap on_usr1 USR1",
        "trap on_term TERM",
        "",
        "TRAIN_ARGS=(",
    ]
    lines += ["  " + a for a in trainer_args(cfg.preset, cfg.recipe, overrides)]
    lines += [
        '  --data.data_path $DATA_PATH',
        '  --checkpoint.save "$SAVE_DIR"',
        '  --checkpoint.exit_file "$EXIT_FILE"',
        "  --checkpoint.exit_signals SIGUSR1",
        ')',
        '[ -n "$LOAD_DIR" ] && TRAIN_ARGS+=(--checkpoint.load "$LOAD_DIR")',
        '[ -n "$TOKENIZER" ] && TRAIN_ARGS+=(--data.tokenizer "$TOKENIZER")',
        "",
    ]
    lines.append('echo "[codetron] job $SLURM_JOB_ID restart $RESTARTS on $SLURM_JOB_NUM_NODES node(s) '
                 '($SLURM_JOB_NODELIST), master $MASTER_ADDR:$MASTER_PORT"')
    if torchrun:
        lines += [
            "# One task per node runs torchrun; preemption reaches the ranks through EXIT_FILE.",
            _srun(p, "--ntasks-per-node=1", '--cpus-per-task="$SLURM_CPUS_PER_TASK"') + ' "$PYTHON" -m torch.distributed.run \\',
            f'  --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node {ranks} --max-restarts 0 \\',
            '  --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$SLURM_JOB_ID" \\',
            '  -m codetron train "${TRAIN_ARGS[@]}" $EXTRA_ARGS &',
        ]
    else:
        lines += [
            "# One task per GPU: the trainer reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID.",
            _srun(p, '--cpus-per-task="$SLURM_CPUS_PER_TASK"') + ' "$PYTHON" -m codetron train "${TRAIN_ARGS[@]}" $EXTRA_ARGS &',
        ]
    lines += [
        "LAUNCH_PID=$!",
        "# A trapped signal interrupts `wait` while training goes on; bash keeps the exit status for the last one.",
        'while kill -0 "$LAUNCH_PID" 2>/dev/null; do wait "$LAUNCH_PID"; done',
        'wait "$LAUNCH_PID"; rc=$?',
        "",
        'STATE=$(sed -n \'s/.*"state": *"\\([a-z]*\\)".*/\\1/p\' "$RUN_STATE" 2>/dev/null)',
        'echo "[codetron] trainer exit code $rc, run state ${STATE:-unknown}"',
        "# A killed trainer cannot record how it ended; the run state must not keep saying running.",
        'set_state() { [ -f "$RUN_STATE" ] && sed -i "s/\\"state\\": *\\"[a-z]*\\"/\\"state\\": \\"$1\\"/" "$RUN_STATE"; }',
        'if [ -n "$CANCELLED" ]; then',
        '  [ "$STATE" = finished ] || set_state cancelled',
        '  echo "[codetron] cancelled: not requeueing (to checkpoint and requeue instead: scancel -b -s USR1 <jobid>)"',
        "  exit 143",
        "fi",
        'if [ "$rc" -ne 0 ]; then',
        '  [ "$STATE" = finished ] || set_state failed',
        "  # 128+n: a rank was killed (OOM killer, a node going down) and a fresh start may well pass;",
        "  # an error exit (a bad setting, a bug) would only repeat.",
        '  if [ "$rc" -le 128 ]; then echo "[codetron] the trainer failed (exit $rc); not requeueing"; exit "$rc"; fi',
        '  LATEST=$(cat "$SAVE_DIR/latest_checkpointed_iteration.txt" 2>/dev/null || echo none)',
        '  { read -r KILLED_AT KILLED < "$SAVE_DIR/.killed-restarts"; } 2>/dev/null || KILLED_AT=""',
        '  if [ "$KILLED_AT" = "$LATEST" ]; then KILLED=$(( ${KILLED:-0} + 1 )); else KILLED=1; fi',
        '  echo "$LATEST $KILLED" > "$SAVE_DIR/.killed-restarts"',
        '  if [ "$KILLED" -gt "$MAX_KILLED_RESTARTS" ]; then',
        '    echo "[codetron] killed $KILLED times at checkpoint $LATEST (MAX_KILLED_RESTARTS=$MAX_KILLED_RESTARTS);'
        ' not requeueing"; exit "$rc"',
        "  fi",
        '  echo "[codetron] a rank was killed (exit $rc), kill $KILLED at checkpoint $LATEST"',
        "else",
        '  case "$STATE" in',
        "    finished) exit 0 ;;",
        "    preempted) ;;",
        '    *) echo "[codetron] no run state after a clean exit; not requeueing"; exit 1 ;;',
        "  esac",
        "fi",
        'if [ "$RESTARTS" -ge "$MAX_RESTARTS" ]; then',
        '  echo "[codetron] stopped after $RESTARTS restarts (MAX_RESTARTS=$MAX_RESTARTS); not requeueing"; exit 1',
        'fi',
    ]
    if p.requeue == "requeue":
        lines += [
            'echo "[codetron] requeueing job $SLURM_JOB_ID; the next run resumes from $SAVE_DIR"',
            'scontrol requeue "$SLURM_JOB_ID"',
        ]
    elif p.requeue == "resubmit":
        lines += [
            '# Sites that forbid requeue: submit this script again, to start after this job ends.',
            'SCRIPT=$(scontrol show job "$SLURM_JOB_ID" | sed -n "s/^ *Command=//p")',
            'sbatch --dependency=afterany:"$SLURM_JOB_ID" --export=ALL,CODETRON_RESTARTS=$((RESTARTS + 1)) "$SCRIPT"',
        ]
    else:
        lines += ['echo "[codetron] requeue is off in this profile: submit again to resume"']
    lines.append("exit 0")
    return Script(name=name, text="\n".join(lines) + "\n", kind="train")


# ----------------------------------------------------------------------------------- preprocessing


def render_preprocess(p: ClusterProfile, *, name: str, command: str, mode: str, inputs: list[str], output: str,
                      shards: int, extra: list[str], max_parallel: int | None = None) -> list[Script]:
    """A job array over ``shards`` (``codetron preprocess MODE ... --shard i/n``) and a merge job that
    must run ``afterok`` the whole array."""
    if shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {shards}")
    if not inputs:
        raise ConfigError("preprocess: give the input files/globs (--inputs)")
    throttle = f"%{max_parallel}" if max_parallel else ""
    part = p.aux_partition or p.partition
    merge_name = f"{name}-merge"
    shard_dir = output + ".shards"
    usage = [f"mkdir -p {p.log_dir} && J=$(sbatch --parsable slurm/{name}.sbatch) && "
             f"sbatch --dependency=afterok:$J slurm/{merge_name}.sbatch",
             "Variables: INPUTS, OUTPUT, SHARD_DIR, NUM_SHARDS (for another count, also pass --array=0-<n-1>), "
             "EXTRA_ARGS, PYTHON."]
    arr = _header(f"{name}: codetron preprocess {mode} as a {shards}-task job array ({p.name} profile)", command, usage)
    arr += _directives(p, name=name, kind="preprocess", nodes=1, ntasks_per_node=1, cpus=p.aux_cpus, gpus_per_node=0,
                       time=p.aux_time, partition=part, array=f"0-{shards - 1}{throttle}", log_pattern="%x-%A_%a.out")
    arr += ["", "set -euo pipefail", ""]
    arr += [v % {"python": q(p.python)} for v in _COMMON_VARS]
    arr += [
        _var("INPUTS", " ".join(inputs), "input files, directories or globs (word-split)"),
        _var("OUTPUT", output, "final dataset prefix (written by the merge job)"),
        'SHARD_DIR=${SHARD_DIR:-"$OUTPUT.shards"}',
        'NUM_SHARDS=${NUM_SHARDS:-$(( SLURM_ARRAY_TASK_MAX + 1 ))}',
        "",
    ]
    arr += _environment(p, gpu_job=False)
    arr += [
        "PREPROCESS_ARGS=(",
        *["  " + q(a) for a in extra],
        ")",
        'SHARD=$(printf "%05d" "$SLURM_ARRAY_TASK_ID")',
        'mkdir -p "$SHARD_DIR"',
        'echo "[codetron] shard $SLURM_ARRAY_TASK_ID/$NUM_SHARDS -> $SHARD_DIR/shard-$SHARD"',
        f'# Inputs are deliberately word-split (globs and lists); the shard keeps every n-th file or chunk.',
        _srun(p, "--ntasks=1") + f' "$PYTHON" -m codetron preprocess {q(mode)} $INPUTS -o "$SHARD_DIR/shard-$SHARD" \\',
        '  --shard "$SLURM_ARRAY_TASK_ID/$NUM_SHARDS" --workers "${SLURM_CPUS_PER_TASK:-1}" --quiet \\',
        '  ${PREPROCESS_ARGS[@]+"${PREPROCESS_ARGS[@]}"} $EXTRA_ARGS',
    ]
    merge = _header(f"{merge_name}: merge the {shards} shards of {name} in shard order ({p.name} profile)", command,
                    [f"sbatch --dependency=afterok:<array job id> slurm/{merge_name}.sbatch  (see {name}.sbatch)"])
    merge += _directives(p, name=merge_name, kind="merge", nodes=1, ntasks_per_node=1, cpus=1, gpus_per_node=0,
                         time=p.aux_time, partition=part)
    merge += ["", "set -euo pipefail", ""]
    merge += [v % {"python": q(p.python)} for v in _COMMON_VARS]
    merge += [
        _var("OUTPUT", output, "final dataset prefix"),
        'SHARD_DIR=${SHARD_DIR:-"$OUTPUT.shards"}',
        _var("NUM_SHARDS", str(shards), "shards written by the array"),
        "",
    ]
    merge += _environment(p, gpu_job=False)
    merge += [
        "SHARDS=()",
        'for ((i = 0; i < NUM_SHARDS; i++)); do',
        '  s=$(printf "%s/shard-%05d" "$SHARD_DIR" "$i")',
        '  [ -f "$s.idx" ] || { echo "[codetron] missing shard $s.idx (did an array task fail?)" >&2; exit 1; }',
        '  SHARDS+=("$s")',
        "done",
        _srun(p, "--ntasks=1") + ' "$PYTHON" -m codetron preprocess merge "${SHARDS[@]}" -o "$OUTPUT" $EXTRA_ARGS',
    ]
    return [Script(name=name, text="\n".join(arr) + "\n", kind="preprocess"),
            Script(name=merge_name, text="\n".join(merge) + "\n", kind="merge", after=name)]


# ------------------------------------------------------------------------------ conversion, eval


def render_convert(p: ClusterProfile, *, name: str, command: str, checkpoint: str | None, output: str | None,
                   extra: list[str]) -> Script:
    """Megatron-core checkpoint -> Hugging Face GPTBigCode folder (``codetron convert to-hf``)."""
    usage = [f"CKPT=/ckpt/run/iter_0250000 OUT=/models/run-hf sbatch slurm/{name}.sbatch"]
    lines = _header(f"{name}: codetron convert to-hf ({p.name} profile)", command, usage)
    lines += _directives(p, name=name, kind="convert", nodes=1, ntasks_per_node=1, cpus=p.aux_cpus, gpus_per_node=0,
                         time=p.aux_time, partition=p.aux_partition or p.partition)
    lines += ["", "set -euo pipefail", ""]
    lines += [v % {"python": q(p.python)} for v in _COMMON_VARS]
    lines += [_var("CKPT", checkpoint, "run directory (latest checkpoint) or an iter_* directory"),
              _var("OUT", output, "Hugging Face folder to write"), ""]
    lines += _environment(p, gpu_job=False)
    # --overwrite: a requeued or re-submitted job finds its own earlier output (complete, since
    # to-hf renames it into place whole) and must replace it instead of failing on it; safety.py still
    # refuses any OUT holding what its export manifest does not list, so a mistyped OUT is never clobbered.
    lines += ["CONVERT_ARGS=(", *["  " + q(a) for a in extra], ")",
              _srun(p, "--ntasks=1") + ' "$PYTHON" -m codetron convert to-hf --overwrite "$CKPT" "$OUT" '
              '${CONVERT_ARGS[@]+"${CONVERT_ARGS[@]}"} $EXTRA_ARGS']
    return Script(name=name, text="\n".join(lines) + "\n", kind="convert")


def render_eval(p: ClusterProfile, *, name: str, command: str, run_dir: str | None, iterations: list[int],
                output: str | None, prompt: str, extra: list[str]) -> Script:
    """An array over checkpoints: task i converts ``iter_<ITERS[i]>`` to HF (if not done yet) and
    runs ``codetron eval run`` on it; one pass@k report per checkpoint."""
    if not iterations:
        raise ConfigError("eval: no checkpoints to evaluate (give --iterations or a --run with iter_* directories)")
    usage = [f'RUN_DIR=/ckpt/run ITERS="{" ".join(map(str, iterations))}" sbatch --array=0-{len(iterations) - 1} '
             f"slurm/{name}.sbatch"]
    gpus = 1 if p.gpus_per_node else 0
    lines = _header(f"{name}: pass@k of {len(iterations)} checkpoints as a job array ({p.name} profile)", command, usage)
    lines += _directives(p, name=name, kind="eval", nodes=1, ntasks_per_node=1, cpus=p.aux_cpus, gpus_per_node=gpus,
                         time=p.aux_time, partition=p.partition, array=f"0-{len(iterations) - 1}",
                         log_pattern="%x-%A_%a.out")
    lines += ["", "set -euo pipefail", ""]
    lines += [v % {"python": q(p.python)} for v in _COMMON_VARS]
    lines += [
        _var("RUN_DIR", run_dir, "training run directory with iter_* checkpoints"),
        'OUT_DIR=${OUT_DIR:-"%s"}  # converted models and eval results' % (output or "$RUN_DIR/eval"),
        f'ITERS=(${{ITERS:-{" ".join(map(str, iterations))}}})  # array index -> checkpoint iteration',
        _var("PROMPT", prompt, "prompt format (codetron eval formats)"),
        "",
    ]
    lines += _environment(p, gpu_job=gpus > 0)
    lines += [
        'IT=${ITERS[$SLURM_ARRAY_TASK_ID]}',
        'TAG=$(printf "iter_%07d" "$IT")',
        'HF="$OUT_DIR/hf/$TAG"',
        'if [ ! -f "$HF/config.json" ]; then',
        '  ' + _srun(p, "--ntasks=1") + ' "$PYTHON" -m codetron convert to-hf "$RUN_DIR/$TAG" "$HF"',
        'fi',
        "EVAL_ARGS=(", *["  " + q(a) for a in extra], ")",
        _srun(p, "--ntasks=1") + ' "$PYTHON" -m codetron eval run --model "$HF" --out "$OUT_DIR/$TAG" --prompt "$PROMPT" \\',
        '  ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"} $EXTRA_ARGS',
    ]
    return Script(name=name, text="\n".join(lines) + "\n", kind="eval")
