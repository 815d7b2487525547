"""Extensions on megatron-core (never a fork): GPTBigCode model spec, presets, CPU compatibility,
training loop, checkpoints, FIM, instruction tuning, RRTF."""
import warnings

# megatron-core warns once per module when TE/apex are absent; `codetron train` reports the
# TransformerEngine version itself at start-up, so these repeat nothing useful on CPU machines.
warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
warnings.filterwarnings("ignore", message=".*Apex is not installed.*")
# Deprecation notices from inside megatron-core 0.16.1 / torch's checkpoint planner that users can do
# nothing about; they would repeat on every rank at every checkpoint save and load.
warnings.filterwarnings("ignore", message=".*full scope is deprecated.*")
warnings.filterwarnings("ignore", message=".*Please use DTensor instead and we are deprecating ShardedTensor.*")
warnings.filterwarnings("ignore", message=".*`load_state_dict` is deprecated.*")
warnings.filterwarnings("ignore", message=".*torch.jit.script_method.*is deprecated.*")

from codetron.megatron_ext import jit_off as _jit_off  # noqa: E402  (before any megatron-core import)

_jit_off.install()
