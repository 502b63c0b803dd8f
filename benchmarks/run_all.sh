#!/usr/bin/env bash
# Run every benchmarks/bench_*.py with short settings, one after the other.
#   benchmarks/run_all.sh [RESULTS_FOLDER]        default benchmarks/results/ (ignored by git)
# Each benchmark's output goes to RESULTS_FOLDER/<name>.log, its JSON (where it writes one) to
# <name>.json, and the seconds each took to timings.tsv. Exits non-zero if any benchmark failed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${1:-$HERE/results}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
PYTHON="$ROOT/.venv/bin/python"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" PYTHONUNBUFFERED=1  # progress shows as it comes
cd "$ROOT"

short_args() {  # sets args: few steps / cases, so the whole set runs in minutes on a laptop CPU
    local name="$1"
    args=()
    case "$name" in
        bench_phantom) args=(--n 1);;
        bench_predict) args=(--cases 1);;
        bench_inference_options) args=(--n 30 --epochs 3);;
        bench_train_step) args=(--shapes quick-b16-c4,paper-b16-c4 --steps 3);;
        bench_pipeline) args=(--steps 3 --batches 50);;
        bench_options) args=(--steps 5 --batches 50);;
        bench_jax_step) args=(--shape tiny --batches 8 --steps 5 --train-steps 60);;  # the script's check; gpu_check.sh runs it at paper shape
        bench_torch_peer) args=(--shapes quick --steps 3 --repeats 1);;
    esac
    if grep -q -- '"--json"' "$HERE/$name.py"; then
        args+=(--json "$OUT/$name.json")
    fi
}

printf 'benchmark\tseconds\texit_code\n' > "$OUT/timings.tsv"
failed=()
for script in "$HERE"/bench_*.py; do
    name="$(basename "$script" .py)"
    if [ "$name" = bench_preprocess ] && [ ! -d "$ROOT/data/phantom" ]; then
        echo "$name: skipped, data/phantom is missing (make it with: .venv/bin/segan phantom)"
        continue
    fi
    if [ "$name" = bench_torch_peer ] && ! "$PYTHON" -c "import torch" 2>/dev/null; then
        echo "$name: skipped, PyTorch is not installed (pip install -r requirements-bench.lock)"
        continue
    fi
    short_args "$name"
    echo "== $name ${args[*]}"
    start=$SECONDS
    "$PYTHON" "$script" "${args[@]}" 2>&1 | tee "$OUT/$name.log"
    code=${PIPESTATUS[0]}
    printf '%s\t%d\t%d\n' "$name" $((SECONDS - start)) "$code" >> "$OUT/timings.tsv"
    [ "$code" -eq 0 ] || failed+=("$name")
done
echo "== seconds per benchmark ($OUT/timings.tsv)"
column -t "$OUT/timings.tsv" 2>/dev/null || cat "$OUT/timings.tsv"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
