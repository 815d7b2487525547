"""Cluster profiles: the few site facts a launcher needs, in a small YAML file.

A profile says where jobs run (partition, account, QOS), what a node has (GPUs, CPUs), how the
software is found (modules, a container image for pyxis/enroot, setup lines, environment) and how
jobs behave at their time limit (signal lead time, requeue). Everything else comes from the
model preset and training recipe. Example (``slurm/profiles/a100-64node.yaml``)::

    name: a100-64node
    partition: gpu
    account: bigcode
    nodes: 64
    gpus_per_node: 8
    gpu: a100-80gb
    time: "2-00:00:00"
    modules: [cuda/12.4, nccl/2.21]
    setup: ["source /opt/codetron/.venv/bin/activate"]
    env: {NCCL_IB_HCA: "mlx5"}
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codetron.errors import ConfigError

LAUNCHERS = ("srun", "torchrun")
REQUEUE_MODES = ("requeue", "resubmit", "none")


@dataclass(kw_only=True)
class ClusterProfile:
    """Site settings for generated sbatch scripts."""

    name: str = "default"
    """Profile name (shown in generated scripts)."""
    partition: str | None = None
    """``--partition``; None leaves the site default."""
    account: str | None = None
    """``--account`` to charge; None leaves the user default."""
    qos: str | None = None
    """``--qos``; None leaves the default."""
    constraint: str | None = None
    """``--constraint`` (node features), e.g. "a100-80gb"."""
    nodes: int = 1
    """Nodes for training jobs (``--nodes``); the world size is nodes x tasks per node."""
    gpus_per_node: int = 8
    """GPUs per node; 0 for CPU-only clusters (then ``tasks_per_node`` ranks per node)."""
    tasks_per_node: int | None = None
    """Training ranks per node; None means one per GPU. Needed when ``gpus_per_node`` is 0."""
    cpus_per_task: int = 8
    """``--cpus-per-task`` for each training rank (data loading threads)."""
    mem: str | None = "0"
    """``--mem`` per node ("0" = all of it); None omits the directive."""
    exclusive: bool = True
    """``--exclusive`` for multi-node training jobs."""
    gpu: str = "a100-80gb"
    """GPU model for the capacity check (see ``codetron slurm plan --help``)."""
    time: str = "2-00:00:00"
    """``--time`` for training jobs; long runs continue by requeueing themselves."""
    aux_time: str = "04:00:00"
    """``--time`` for preprocessing, conversion and evaluation jobs."""
    aux_cpus: int = 16
    """``--cpus-per-task`` for preprocessing/conversion/evaluation tasks."""
    aux_partition: str | None = None
    """Partition for CPU jobs (preprocessing, merge, conversion); None means ``partition``."""
    launcher: str = "srun"
    """"srun": one task per GPU, ranks from SLURM_PROCID (default, see slurm/README.md);
    "torchrun": one task per node running torchrun with a c10d rendezvous on the first node."""
    python: str = "python"
    """Python interpreter that has codetron installed (inside the container, if any)."""
    modules: list[str] = field(default_factory=list)
    """Environment modules to ``module load`` before anything runs."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the job (e.g. activating a virtual environment)."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables exported in every job (on top of the NCCL defaults)."""
    nccl_defaults: bool = True
    """Export Codetron's NCCL/CUDA defaults for GPU jobs (see ``NCCL_DEFAULTS``)."""
    container_image: str | None = None
    """pyxis/enroot image: adds ``--container-image`` to every srun."""
    container_mounts: list[str] = field(default_factory=list)
    """pyxis ``--container-mounts`` (src:dst), e.g. the data and checkpoint file systems."""
    signal_seconds: int = 600
    """Send USR1 this long before the time limit (``--signal=B:USR1@N``); must cover a step plus a save."""
    requeue: str = "requeue"
    """After a preempted/time-limited run: "requeue" (scontrol requeue, same job id), "resubmit"
    (sbatch a dependent copy), or "none"."""
    max_restarts: int = 50
    """Stop requeueing after this many restarts (a run that never progresses must not loop forever)."""
    max_killed_restarts: int = 3
    """A rank killed by a signal (exit 128+n: OOM killer, node trouble) requeues the job, but at most
    this many times in a row without a newer checkpoint (a kill that repeats is not bad luck)."""
    log_dir: str = "logs"
    """Directory for ``%x-%j.out`` logs (relative to the submit directory)."""
    master_port_base: int = 20000
    """Lowest rendezvous port: the job takes base + job id mod (L - base), L the first port of the
    kernel's ephemeral range on the first node (/proc/sys/net/ipv4/ip_local_port_range, often 32768),
    so two jobs sharing a node differ and no outgoing connection can hold the port."""
    sbatch_extra: list[str] = field(default_factory=list)
    """Extra ``#SBATCH`` lines, verbatim without the prefix (e.g. "--reservation=bigcode")."""

    @property
    def ranks_per_node(self) -> int:
        return self.tasks_per_node or self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node


# Why each default: CUDA_DEVICE_MAX_CONNECTIONS=1 keeps megatron's TP/SP communication kernels
# ordered ahead of the compute that needs them; async error handling turns a dead peer into an
# error instead of a hang; AVOID_RECORD_STREAMS frees NCCL buffers promptly (less fragmentation).
NCCL_DEFAULTS: dict[str, str] = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    "NCCL_DEBUG": "WARN",
    "OMP_NUM_THREADS": "1",
}

BUILTIN: dict[str, dict[str, Any]] = {
    # The StarCoder layout: 64 nodes x 8 A100-80GB (bigcode trained on 512 A100s).
    "a100-64node": dict(name="a100-64node", partition="gpu", nodes=64, gpus_per_node=8, gpu="a100-80gb",
                        cpus_per_task=10),
    # Fine-tuning scale: 8 nodes x 8 H100.
    "h100-8node": dict(name="h100-8node", partition="gpu", nodes=8, gpus_per_node=8, gpu="h100-80gb",
                       cpus_per_task=12),
    # The single-node CPU cluster the tests start (2 gloo ranks).
    "local-cpu": dict(name="local-cpu", partition=None, nodes=1, gpus_per_node=0, tasks_per_node=2,
                      cpus_per_task=1, mem=None, exclusive=False, gpu="cpu", time="00:30:00",
                      aux_time="00:10:00", aux_cpus=1, signal_seconds=60, nccl_defaults=False,
                      env={"OMP_NUM_THREADS": "1"}),
}

_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")


def _check(p: ClusterProfile, where: str) -> ClusterProfile:
    def bad(fld: str, msg: str):
        raise ConfigError(f"{where}: {fld}: {msg}")
    if p.nodes < 1:
        bad("nodes", f"must be >= 1, got {p.nodes}")
    if p.gpus_per_node < 0:
        bad("gpus_per_node", f"must be >= 0, got {p.gpus_per_node}")
    if p.gpus_per_node == 0 and not p.tasks_per_node:
        bad("tasks_per_node", "is required when gpus_per_node is 0 (CPU ranks per node)")
    if p.tasks_per_node is not None and p.tasks_per_node < 1:
        bad("tasks_per_node", f"must be >= 1, got {p.tasks_per_node}")
    if p.launcher not in LAUNCHERS:
        bad("launcher", f"must be one of {', '.join(LAUNCHERS)}, got {p.launcher!r}")
    if p.requeue not in REQUEUE_MODES:
        bad("requeue", f"must be one of {', '.join(REQUEUE_MODES)}, got {p.requeue!r}")
    for fld in ("time", "aux_time"):
        if not _TIME_RE.match(str(getattr(p, fld))):
            bad(fld, f"{getattr(p, fld)!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)")
    if p.signal_seconds < 1:
        bad("signal_seconds", f"must be >= 1, got {p.signal_seconds}")
    if not 1024 <= p.master_port_base < 32768:
        bad("master_port_base", f"must lie in [1024, 32768), below the usual ephemeral ports, got {p.master_port_base}")
    if p.max_killed_restarts < 0:
        bad("max_killed_restarts", f"must be >= 0, got {p.max_killed_restarts}")
    from codetron.slurm.plan import GPUS
    if p.gpu not in GPUS:
        bad("gpu", f"unknown GPU {p.gpu!r}; known: {', '.join(GPUS)}")
    return p


def profile_from_dict(doc: dict[str, Any], where: str) -> ClusterProfile:
    hints = typing.get_type_hints(ClusterProfile)
    known = {f.name for f in dataclasses.fields(ClusterProfile)}
    kwargs = {}
    for key, value in doc.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown profile field {key!r} (fields: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], f"{where}: {key}")
    return _check(ClusterProfile(**kwargs), where)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            return None
        return _coerce(value, [a for a in args if a is not type(None)][0], where)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [str(v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    return str(value) if value is not None else None


def load_profile(spec: str | None, overrides: dict[str, Any] | None = None) -> ClusterProfile:
    """A built-in profile name or a YAML path, then ``overrides`` (e.g. ``--nodes`` from the CLI)."""
    spec = spec or "a100-64node"
    if spec in BUILTIN:
        doc, where = dict(BUILTIN[spec]), f"profile {spec}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"profile {spec!r}: no such file and not a built-in profile ({', '.join(BUILTIN)})")
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a mapping of profile fields")
        doc.setdefault("name", path.stem)
        where = str(path)
    doc.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return profile_from_dict(doc, where)


def profile_yaml(p: ClusterProfile) -> str:
    return yaml.safe_dump(dataclasses.asdict(p), sort_keys=False)
