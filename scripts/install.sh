#!/bin/sh
# Create ./.venv (if missing) and install this package into it with its test extra, from PyPI.
# torch comes from PyPI too (the CUDA build; it runs on CPU-only machines as well).
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# setuptools warns about every editable install (BuildBackendWarning); it is not for our users
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --editable ".[dev]"
sh scripts/check_install.sh
