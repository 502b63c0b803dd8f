#!/usr/bin/env bash
# Regenerate the study: set-up if needed, then every step in order.
#   ./run_all.sh                                   the quick profile on the embedded phantom
#   ./run_all.sh --profile smoke                   a minutes-long check of every step
#   ./run_all.sh --profile paper --data /path/to/BRATS2015
#   ./run_all.sh --only preprocess --force         one step, recomputed
#   ./run_all.sh --jobs 2 [--gpus 0,1]             independent models side by side
#   ./run_all.sh --real /path/to/real [--real-pattern ...]   also hold the phantom against real scans
# Steps whose outputs are complete for the same parameters are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile=quick
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2;;
        --profile=*) profile="${1#*=}"; shift;;
        --data) args+=("$(cd "$2" 2>/dev/null && pwd || echo "$2")"); shift 2;;
        --data=*) d="${1#*=}"; args+=("$(cd "$d" 2>/dev/null && pwd || echo "$d")"); shift;;
        # the real data set of step 08_phantom_vs_real, made absolute before the cd below
        --real) args+=(--real "$(cd "$2" 2>/dev/null && pwd || echo "$2")"); shift 2;;
        --real=*) d="${1#*=}"; args+=(--real "$(cd "$d" 2>/dev/null && pwd || echo "$d")"); shift;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
        *) args+=("$1"); shift;;
    esac
done
"$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
echo "run_all: profile $profile"
exec "$ROOT/.venv/bin/segan" study --profile "$profile" ${args[@]+"${args[@]}"}
