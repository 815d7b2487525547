#!/usr/bin/env bash
# GPU check, one script, under 8 minutes on one H100/H200 (installs included):
#   (a) debug-tiny, 20 steps in bf16 on the GPU, against the stored CPU fp32 loss curve (max |diff|, PASS/FAIL);
#   (b) a starcoderbase-1b-shaped model (24 layers, hidden 2048, 16 heads, MQA, vocab 49152) with
#       SDPA attention in bf16 at seq 2048 and 8192, micro-batch 1, 10 timed steps after warm-up:
#       tokens/s, TFLOP/s, MFU against the device's dense bf16 peak, peak memory.
# The report (report.txt, results.json, the loss logs, chart PNGs) goes to
# benchmarks/results/gpu_check_<date>_<device>/, rewritten after every stage: a failure keeps what was measured.
#
# The GPU machine needs only Python 3.12 with a CUDA build of torch: no network, no megatron-core,
# no TransformerEngine, no install of codetron. What else training imports comes from the wheels in
# .whl/ (git-ignored, ~20 MB), fetched beforehand on a machine with network, from the repository root:
#
#   pip download --python-version 3.12 --only-binary=:all: --implementation cp \
#       --platform manylinux_2_28_x86_64 --no-deps -d .whl -r benchmarks/gpu_wheels.txt
#
# benchmarks/gpu_site.py installs the missing ones into .gpu-site/py3.12/ (git-ignored; the machine's
# own site-packages stay untouched) and links codetron there from the checkout. Every mode below runs
# that step first, --cpu-dry-run included, so the CPU test goes through the GPU run's install path.
#
# Usage:
#   benchmarks/gpu_check.sh [--peak-tflops N] [--out-dir DIR]   on the GPU machine
#   benchmarks/gpu_check.sh --cpu-dry-run [--out-dir DIR]       the same steps at toy sizes on CPU (a test runs it)
#   benchmarks/gpu_check.sh --write-reference [FILE]            regenerate benchmarks/results/debug_tiny_cpu_fp32.jsonl
#                                                               (CPU, fp32, local spec), after an intended numerics change
# PYTHON picks the interpreter (default python3); CODETRON_WHEELS and CODETRON_GPU_SITE move .whl/ and .gpu-site/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
export CODETRON_GPU_CHECK_START=${CODETRON_GPU_CHECK_START:-$(date +%s)}  # the 8-minute budget counts installs

SITE=$("$PY" "$ROOT/benchmarks/gpu_site.py" --wheels "${CODETRON_WHEELS:-$ROOT/.whl}" \
       --site "${CODETRON_GPU_SITE:-$ROOT/.gpu-site}") || exit 2
# SITE first: the checkout's own codetron/ folder (no stages in it) must never come before it on the path.
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
