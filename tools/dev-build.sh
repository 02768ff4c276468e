#!/usr/bin/env bash
# Rebuild fastode._core in build/dev and copy it into src/fastode, for working
# from the source tree (PYTHONPATH=src). Serialized with a lock so parallel
# callers do not run two builds in one folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec 9>/tmp/fastode-dev-build.lock
flock 9
mkdir -p "$root/build/dev"
cd "$root/build/dev"
if [[ ! -f build.ninja ]]; then
  cmake "$root" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
fi
ninja
# Copy, then rename over the old module: overwriting it in place would crash
# (SIGBUS) every running Python process that has it loaded.
for module in _core*.so; do
  cp "$module" "$root/src/fastode/$module.tmp"
  mv -f "$root/src/fastode/$module.tmp" "$root/src/fastode/$module"
done
