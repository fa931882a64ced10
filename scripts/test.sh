#!/bin/sh
# The test command: install into ./.venv (scripts/install.sh), then run the whole suite. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install.sh
exec .venv/bin/python -m pytest "$@"
