#!/usr/bin/env bash
# Run the real-GPU tests and the CPU-versus-GPU benchmark of backend="cupy".
#
# For a machine with an NVIDIA GPU. The step timeouts add up to 8 minutes,
# so a hang cannot run past that: the install, a parallel build (estimated
# 1-2 min on 16 cores, at most 2.5), NVRTC compiling all 472 kernel variants
# in parallel processes into CuPy's disk cache (at most 1.5 min), tests/gpu
# with closed forms, CPU-versus-GPU agreement and chunked runs (at most 2
# min), and tools/gpu_bench.py (at most 2 min).
#
#   tools/gpu-check.sh            the full check
#   tools/gpu-check.sh --dry-run  no install and no GPU, from the source tree:
#                                 prints fastode info, runs tests/gpu against
#                                 the NumPy stand-in for CuPy and the
#                                 benchmark's CPU rows
#
# Environment:
#   FASTODE_GPU_EXTRA=gpu-cuda12  CuPy for CUDA 12 drivers (default: gpu, CUDA 13)
#   FASTODE_INSTALL=offline       build without network: no build isolation and
#                                 no dependencies (CuPy, pytest, scipy and the
#                                 build tools must already be installed)
#   FASTODE_INSTALL=skip          use the fastode already installed
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
extra="${FASTODE_GPU_EXTRA:-gpu}"
start=$SECONDS

if [[ "${1:-}" == "--dry-run" ]]; then
  cd "$root"
  export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
  "$python" -m fastode info
  FASTODE_CUPY_STANDIN=1 timeout 240 "$python" -m pytest tests/gpu -p no:cacheprovider -q
  timeout 120 "$python" tools/gpu_bench.py --dry-run
  echo "dry run done in $((SECONDS - start)) s: tests/gpu ran on the NumPy stand-in" \
    "for CuPy, the benchmark's GPU rows were skipped"
  exit 0
elif [[ $# -gt 0 ]]; then
  echo "usage: tools/gpu-check.sh [--dry-run]" >&2
  exit 2
fi

cd "$root"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
case "${FASTODE_INSTALL:-online}" in
  online) timeout 150 "$python" -m pip install --quiet ".[$extra,test]" ;;
  offline) timeout 150 "$python" -m pip install --quiet --no-build-isolation --no-deps . ;;
  skip) ;;
  *) echo "FASTODE_INSTALL must be online, offline or skip, got '$FASTODE_INSTALL'" >&2
     exit 2 ;;
esac
echo "install done at $((SECONDS - start)) s"

# Run from outside the checkout so that the installed package, with its
# compiled core and shipped headers, is the one imported.
cd /tmp
"$python" -m fastode info
"$python" -c 'import sys, fastode._cupy as g; sys.exit(0 if g.device_available() else 1)' || {
  echo "no usable GPU: backend='cupy' cannot run here (see GPU: above)" >&2
  exit 1
}

# Compile every kernel variant in parallel processes into CuPy's on-disk
# kernel cache, so the tests load them instead of compiling one at a time.
timeout 90 "$python" - <<'PY' || echo "precompile did not finish; tests compile the rest" >&2
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from fastode._cupy import _launch, _source

# spawn: no child inherits a CUDA context from this process.
context = multiprocessing.get_context("spawn")
with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=context) as pool:
    specs = _source.all_kernel_specs() + _source.mlp_kernel_specs()
    list(pool.map(_launch.compile_kernel, specs))
PY
echo "kernels compiled at $((SECONDS - start)) s"

status=0
timeout 120 "$python" -m pytest "$root/tests/gpu" -p no:cacheprovider \
  --rootdir "$root" -q -ra || status=$?
echo "tests done at $((SECONDS - start)) s"
timeout 120 "$python" "$root/tools/gpu_bench.py" --json /tmp/fastode-gpu-bench.json \
  || status=$?
echo "benchmark done at $((SECONDS - start)) s (rows in /tmp/fastode-gpu-bench.json)"
exit "$status"
