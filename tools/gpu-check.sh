#!/usr/bin/env bash
# Run the real-GPU tests and the CPU-versus-GPU benchmark of backend="cupy".
#
# Use on a machine with an NVIDIA GPU. It installs fastode with the gpu and
# test extras into the current Python, runs tests/gpu (closed forms, CPU
# versus GPU agreement) and the NVRTC compile test, then tools/gpu_bench.py.
#
# Environment:
#   FASTODE_GPU_EXTRA=gpu-cuda12  CuPy for CUDA 12 drivers (default: gpu, CUDA 13)
#   FASTODE_INSTALL=offline       build without network: no build isolation and
#                                 no dependencies (CuPy, pytest, scipy and the
#                                 build tools must already be installed)
#   FASTODE_INSTALL=skip          use the fastode already installed
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
extra="${FASTODE_GPU_EXTRA:-gpu}"

case "${FASTODE_INSTALL:-online}" in
  online) "$python" -m pip install --quiet ".[$extra,test]" ;;
  offline) "$python" -m pip install --quiet --no-build-isolation --no-deps . ;;
  skip) ;;
  *) echo "FASTODE_INSTALL must be online, offline or skip, got '$FASTODE_INSTALL'" >&2
     exit 2 ;;
esac

# Run from outside the checkout so that the installed package, with its
# compiled core and shipped headers, is the one imported.
cd /tmp
"$python" -c 'import json, fastode._cupy as g; print(json.dumps(g.gpu_info(), indent=1))'
"$python" -c 'import sys, fastode._cupy as g; sys.exit(0 if g.device_available() else 1)' || {
  echo "no usable GPU: backend='cupy' cannot run here (see the report above)" >&2
  exit 1
}

status=0
timeout 360 "$python" -m pytest "$root/tests/gpu" "$root/tests/test_gpu_compile.py" \
  -p no:cacheprovider --rootdir "$root" -q -ra || status=$?
timeout 120 "$python" "$root/tools/gpu_bench.py" || status=$?
exit "$status"
