#!/bin/sh
# The GPU check (docs/gpu.md): sh scripts/gpu_check.sh [--dry-run] [--quick] [--steps a,b] [--device cuda:N]
# Results in $OUT (relative to where you run it), else gpu_check/ in the repository; a summary table on stdout;
# exit 1 when a step fails, 2 for a bad argument. Interpreter: $PYTHON, else the repository's .venv, else python3.
set -eu
here=$(dirname "$0")
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x "$here/../.venv/bin/python" ]; then py=$here/../.venv/bin/python
else py=python3
fi
exec "$py" "$here/gpu_check.py" "$@"
