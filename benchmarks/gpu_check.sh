#!/usr/bin/env bash
# GPU check, one script, under 8 minutes on one H100/H200:
#   (a) debug-tiny, 20 steps in bf16 on the GPU, against the stored CPU fp32 loss curve (PASS/FAIL);
#   (b) a starcoderbase-1b-shaped model (24 layers, hidden 2048, 16 heads, MQA, vocab 49152) with
#       SDPA attention in bf16 at seq 8192 and 2048, micro-batch 1, 10 timed steps after warm-up:
#       tokens/s, TFLOP/s and MFU against the device's peak.
# The report goes to benchmarks/results/gpu_check_<date>.txt (commit it).
#
# The GPU machine needs only Python 3.12 with a CUDA build of torch: no network, no megatron-core,
# no TransformerEngine. What else training imports comes from wheels in .whl/ (git-ignored, ~20 MB),
# fetched beforehand on a machine with network, from the repository root:
#
#   pip download --python-version 3.12 --only-binary=:all: --implementation cp \
#       --platform manylinux_2_28_x86_64 --no-deps -d .whl \
#       megatron-core==0.16.1 numpy pyyaml psutil packaging setuptools
#
# Missing modules are installed into .gpu-site/ (git-ignored) with `pip --target`, so the machine's
# own site-packages stay untouched; codetron itself is linked there from the checkout (no build).
#
# Usage:
#   benchmarks/gpu_check.sh [--peak-tflops N] [--out FILE]   on the GPU machine
#   benchmarks/gpu_check.sh --cpu-dry-run [--out FILE]       the same steps at toy sizes on CPU (a test runs it)
#   benchmarks/gpu_check.sh --write-reference [FILE]         regenerate benchmarks/results/debug_tiny_cpu_fp32.jsonl
#                                                            (CPU, fp32, local spec), after an intended numerics change
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WHEELS=${CODETRON_WHEELS:-$ROOT/.whl}
SITE=${CODETRON_GPU_SITE:-$ROOT/.gpu-site}

# import name -> wheel name, for what a bare CUDA-torch Python lacks.
# setuptools: megatron-core imports torch.utils.cpp_extension, which imports it (torch only
# declares it from Python 3.12 on).
NEEDED="megatron.core:megatron-core==0.16.1 numpy:numpy yaml:pyyaml psutil:psutil packaging:packaging"
NEEDED="$NEEDED setuptools:setuptools"

install_missing() {
    local missing=() pair
    for pair in $NEEDED; do
        PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import ${pair%%:*}" 2>/dev/null \
            || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -gt 0 ] || return 0  # nothing missing
    if [ ! -d "$WHEELS" ]; then
        echo "gpu_check: missing ${missing[*]} and no wheel folder $WHEELS" \
             "(see the pip download command at the top of $0)" >&2
        exit 2
    fi
    echo "gpu_check: installing ${missing[*]} from $WHEELS into $SITE (offline)"
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        # No pip at all: a wheel is a zip archive laid out for site-packages; unpack the ones needed.
        echo "gpu_check: no pip; unpacking the wheels instead"
        local name whl
        for name in "${missing[@]}"; do
            name=${name%%=*}
            whl=$(ls "$WHEELS"/"${name//-/_}"-*.whl 2>/dev/null | head -n1)
            [ -n "$whl" ] || { echo "gpu_check: no wheel for $name in $WHEELS" >&2; exit 2; }
            "$PY" -m zipfile -e "$whl" "$SITE"
        done
        return 0
    fi
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps --upgrade --target "$SITE" "${missing[@]}"
}

# codetron.<stage> laid out as setup.py's package_dir installs it, with links into this checkout:
# the checks run the checkout itself, and nothing has to be built on the GPU machine.
link_codetron() {
    local ns="$SITE/codetron" entry
    rm -rf "$ns" && mkdir -p "$ns"
    for entry in "$ROOT"/codetron/*; do ln -s "$entry" "$ns/"; done
    for entry in preprocess megatron_ext slurm convert eval data; do ln -s "$ROOT/$entry" "$ns/$entry"; done
}

install=1
for arg in "$@"; do
    case "$arg" in
        --cpu-dry-run|--write-reference|-h|--help) install=0 ;;  # run with what this Python already has
    esac
done
if [ "$install" = 1 ]; then
    install_missing
    link_codetron
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
