#!/usr/bin/env bash
# The GPU check of the training step, on a machine with JAX (and CUDA) but no TensorFlow or Keras:
#   here:   scripts/fetch_gpu_wheels.sh          (once: Keras and two dependencies into .whl/)
#   there:  bash benchmarks/gpu_check.sh OUT_DIR (with .whl/ carried along)
# Installs the carried wheels into a private folder, then runs bench_jax_step.py at paper shape
# (160x160, width 64, four contrasts; batch 16 and 64; float32 and mixed_bfloat16) and 300
# training steps, writing the log and the JSON into OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/benchmarks/results}"
mkdir -p "$OUT_DIR"
if ! python3 -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT_DIR/gpu.txt" || true
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
python3 "$ROOT/benchmarks/bench_jax_step.py" --shape paper --batches 16,64 --precisions float32,mixed_bfloat16 \
    --steps 30 --train-steps 300 --json "$OUT_DIR/bench_jax_step.json" 2>&1 | tee "$OUT_DIR/bench_jax_step.log"
