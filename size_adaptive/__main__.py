"""``python -m size_adaptive``: the same as the ``yolo-sa`` command."""

import sys

from .cli import main

sys.exit(main())
