#!/usr/bin/env bash
# Download, into .whl/ (ignored by git), the wheels a GPU machine with JAX but without Keras
# needs to run benchmarks/gpu_check.sh: Keras at this project's pin and the two of its
# dependencies that such an image usually lacks, built for CPython 3.12 on x86-64 Linux.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
keras_pin=$(grep -E '^keras==' requirements.lock)
optree_pin=$(grep -E '^optree==' requirements.lock)
namex_pin=$(grep -E '^namex==' requirements.lock)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
mkdir -p .whl
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$keras_pin" "$optree_pin" "$namex_pin"
ls -l .whl
