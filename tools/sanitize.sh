#!/usr/bin/env bash
# Build fastode._core with AddressSanitizer and UndefinedBehaviorSanitizer in
# build/sanitize and run a selection of the tests against it, plus a short
# run of tools/fuzz_core.py. Not part of the default test suite: the build
# takes minutes and the instrumented core runs several times slower.
#
# Usage: tools/sanitize.sh [pytest arguments...]
#   FUZZ_SECONDS=60 tools/sanitize.sh      # fuzz for longer (default 30 s)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/sanitize"
mkdir -p "$build"
cd "$build"
if [[ ! -f build.ninja ]]; then
  cmake "$root" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTODE_SANITIZE=ON \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
fi
ninja

# A copy of the package with the instrumented module, so src/fastode keeps
# the normal build that other runs use.
package="$build/package"
rm -rf "$package"
mkdir -p "$package"
cp -r "$root/src/fastode" "$package/"
rm -f "$package"/fastode/_core*.so
find "$package" -name __pycache__ -prune -exec rm -rf {} +
cp "$build"/_core*.so "$package/fastode/"

# Python itself is not instrumented, so the ASan runtime must be loaded first.
# Python's allocator keeps memory alive until exit, so leak reports are off.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$package"
cd "$root"
tests=(tests/test_edge_cases.py tests/test_isolation.py tests/test_validation.py
       tests/test_systems.py tests/test_methods.py tests/test_neural.py
       tests/test_chunks.py tests/test_properties.py)
# NVRTC cannot find its builtins library with the ASan runtime preloaded, and
# those tests exercise no code of _core.
python -m pytest -q -p no:cacheprovider -k "not nvrtc" "${tests[@]}" "$@"
python "$root/tools/fuzz_core.py" --seconds "${FUZZ_SECONDS:-30}"
