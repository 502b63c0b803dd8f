#!/usr/bin/env bash
# Create the project's virtual environment (.venv) if missing and install the
# pinned dependencies and segan_lib (editable). Skips what is already done:
# a stamp records the hash of the pin files last installed.
set -euo pipefail
# SEGAN_SKIP_SETUP=1: use the environment as it is (tests that run the project's scripts from a copy
# of the checkout whose .venv links to theirs)
if [ "${SEGAN_SKIP_SETUP:-}" = 1 ]; then exit 0; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEGAN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x "$VENV/bin/python" ]; then
    version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    case "$version" in
        3.11|3.12) ;;
        *) echo "setup: Python 3.11 is required (found $PYTHON = $version); set PYTHON=/path/to/python3.11" >&2; exit 1;;
    esac
    echo "setup: creating virtual environment $VENV (Python $version)"
    "$PYTHON" -m venv "$VENV"
fi

# TensorFlow's build: cpu (tensorflow-cpu, the lock's) or gpu (tensorflow[and-cuda], the same version)
tf_build="${SEGAN_TENSORFLOW:-cpu}"
case "$tf_build" in
    cpu|gpu) ;;
    *) echo "setup: SEGAN_TENSORFLOW must be cpu or gpu, got '$tf_build'" >&2; exit 1;;
esac
stamp="$VENV/.segan-installed"
want="$( (cat "$ROOT/requirements.lock" "$ROOT/requirements-gpu.lock" "$ROOT/pyproject.toml"; echo "$tf_build") \
    | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import segan_lib" 2>/dev/null; then
    exit 0
fi
echo "setup: installing pinned dependencies into $VENV (TensorFlow build: $tf_build; a few minutes the first time)"
pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
# the two builds install the same module: the other one goes first, or its files would be mixed in
if [ "$tf_build" = cpu ]; then
    "$VENV/bin/python" -m pip uninstall --quiet -y tensorflow 2>/dev/null || true
    pip_install -r "$ROOT/requirements.lock"
else
    "$VENV/bin/python" -m pip uninstall --quiet -y tensorflow-cpu 2>/dev/null || true
    pip_install -r <(grep -v '^tensorflow-cpu==' "$ROOT/requirements.lock")
    pip_install -r "$ROOT/requirements-gpu.lock"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (segan)" >/dev/null
echo "$want" > "$stamp"
echo "setup: done"
