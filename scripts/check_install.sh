#!/bin/sh
# Print one line saying what is installed (the last step of scripts/install.sh); fail if the package does not import.
# Argument: the Python to ask (default ./.venv/bin/python).
set -eu
cd "$(dirname "$0")/.."
# YOLO_VERBOSE=False: on its first import Ultralytics logs its "Creating new Ultralytics Settings" banner, which is
# no news at install time (errors still print).
line=$(YOLO_VERBOSE=False "${1:-.venv/bin/python}" -c 'import size_adaptive, ultralytics, torch; print("size_adaptive", size_adaptive.__version__, "ultralytics", ultralytics.__version__, "torch", torch.__version__)')
echo "installed: $line"
