"""Process groups and device placement: the only module that knows about ranks and devices.

Three launch styles are understood, in this order: torchrun (RANK/WORLD_SIZE/LOCAL_RANK), one Slurm
task per device (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID with MASTER_ADDR/MASTER_PORT exported by
the sbatch script), or a plain single process. NCCL+CUDA when GPUs exist; otherwise gloo plus the
explicit CPU compatibility layer for megatron-core.
"""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch

from codetron.megatron_ext.config import ParallelConfig


@dataclass(frozen=True)
class LaunchEnv:
    rank: int
    """Global rank."""
    world_size: int
    """Number of processes."""
    local_rank: int
    """Rank on this node (selects the GPU)."""
    launcher: str
    """"torchrun", "slurm" or "single"."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def detect_launch() -> LaunchEnv:
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        return LaunchEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), "slurm")
    return LaunchEnv(0, 1, 0, "single")


def init_distributed(parallel: ParallelConfig, seed: int, launch: LaunchEnv | None = None,
                     timeout_minutes: float = 10.0) -> LaunchEnv:
    """Start the process group and megatron's model-parallel groups; seed every RNG as Megatron-LM does
    (``seed + 100 * pp_rank``, see ``codetron.megatron_ext.initialization``)."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    launch = launch or detect_launch()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
    else:
        from codetron.megatron_ext import cpu_compat

        cpu_compat.apply()
        if launch.world_size > 1:
            # Ranks share the machine's cores: more than one intra-op thread each just thrashes.
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // launch.world_size))
    if launch.launcher == "single":
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", rank=launch.rank, world_size=launch.world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes))
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=parallel.tensor_model_parallel_size,
            pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        )
    from codetron.megatron_ext.initialization import seed_everything

    seed_everything(seed)
    return launch


def destroy_distributed() -> None:
    import torch.distributed as dist
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def data_parallel_size(parallel: ParallelConfig, world_size: int) -> int:
    return world_size // (parallel.tensor_model_parallel_size * parallel.pipeline_model_parallel_size)


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def drop_unsupported_sequence_parallel(parallel: ParallelConfig, model) -> str | None:
    """Sequence parallel needs CUDA and a LayerNorm that supports it (TransformerEngine's or apex's;
    megatron's torch LayerNorm asserts it off). Recipes set it for their GPU clusters, so elsewhere
    it is switched off and the returned line says so, instead of failing inside megatron."""
    if not parallel.sequence_parallel:
        return None
    if torch.cuda.is_available():
        from megatron.core.models.gpt import gpt_layer_specs

        from codetron.megatron_ext.model import resolve_impl

        if resolve_impl(model) == "transformer_engine" or gpt_layer_specs.HAVE_APEX:
            return None
        why = "this GPU has neither TransformerEngine nor apex LayerNorm"
    else:
        why = "no CUDA"
    parallel.sequence_parallel = False
    return (f"parallel.sequence_parallel=true dropped: a GPU-only setting (needs CUDA with TransformerEngine "
            f"or apex LayerNorm; {why}); running without it")
