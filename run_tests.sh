#!/usr/bin/env bash
# The test command: sets up the environment if needed, then runs pytest.
#   ./run_tests.sh            default tier: unit and fast integration tests (under 10 minutes on 2 CPU cores)
#   ./run_tests.sh --slow     also the slow tier (tests marked slow: the smoke study, nbval, distribution,
#                             JAX, browser, kill/resume, README commands, the wheel); both tiers took
#                             25 min 36 s on 2 cores from a fresh clone
#   ./run_tests.sh -k split   any pytest argument passes through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
