#!/bin/sh
# The test command: install into ./.venv (scripts/install.sh), lint with ruff ([tool.ruff] in pyproject.toml), then
# run the whole suite. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest "$@"
