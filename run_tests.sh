#!/usr/bin/env bash
# The test command: sets up the environment if needed, then runs pytest.
#   ./run_tests.sh            default tier (well under 15 minutes on 2 CPU cores)
#   ./run_tests.sh --slow     also the slow tier
#   ./run_tests.sh -k split   any pytest argument passes through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
