#!/usr/bin/env bash
# Run the real-GPU tests and the CPU-versus-GPU benchmark of backend="cupy".
#
# For a machine with an NVIDIA GPU; budget about 8 minutes in all: install
# (a parallel build, about 1-2 min on 16 cores), tests/gpu (closed forms,
# CPU-versus-GPU agreement, chunked runs; at most 4 min, most of it NVRTC
# compiling about 100 kernels on first use), then tools/gpu_bench.py (at
# most 2 min). Each step has a timeout, so a hang cannot eat the budget.
#
#   tools/gpu-check.sh            the full check
#   tools/gpu-check.sh --dry-run  no install and no GPU: checks this script,
#                                 prints fastode info, runs the benchmark's
#                                 CPU rows from the source tree
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
  timeout 120 "$python" tools/gpu_bench.py --dry-run
  echo "dry run done in $((SECONDS - start)) s; tests/gpu and the GPU rows were skipped"
  exit 0
elif [[ $# -gt 0 ]]; then
  echo "usage: tools/gpu-check.sh [--dry-run]" >&2
  exit 2
fi

cd "$root"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
case "${FASTODE_INSTALL:-online}" in
  online) timeout 240 "$python" -m pip install --quiet ".[$extra,test]" ;;
  offline) timeout 240 "$python" -m pip install --quiet --no-build-isolation --no-deps . ;;
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

status=0
timeout 240 "$python" -m pytest "$root/tests/gpu" -p no:cacheprovider \
  --rootdir "$root" -q -ra || status=$?
echo "tests done at $((SECONDS - start)) s"
timeout 150 "$python" "$root/tools/gpu_bench.py" --json /tmp/fastode-gpu-bench.json \
  || status=$?
echo "benchmark done at $((SECONDS - start)) s (rows in /tmp/fastode-gpu-bench.json)"
exit "$status"
