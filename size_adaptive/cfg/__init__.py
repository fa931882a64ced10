"""Model yamls that Ultralytics 8.4 does not ship: stride-4 (P2) heads for YOLO11 and YOLO12, and their lookup by name.

``yolo11-p2.yaml`` and ``yolo12-p2.yaml`` hold the n/s/m/l/x scales. As with Ultralytics' own yamls, the scale letter
goes in the name: ``yolo11s-p2.yaml`` is ``yolo11-p2.yaml`` at scale ``s``. ``yolo-sa``, ``size_adaptive.YOLO`` and
``yolo-sa compare`` find them by that name (``model_yaml``); plain ``yolo`` takes them by path
(``yolo train model=<CFG_DIR>/yolo11s-p2.yaml``), since Ultralytics only searches its own package for bare names.
A trained checkpoint holds the model dict itself, so it loads without this package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CFG_DIR = Path(__file__).resolve().parent
P2_NAME = re.compile(r"yolo1[12][nslmx]?-p2\.yaml")  # yolo11-p2.yaml, yolo11n-p2.yaml, ..., yolo12x-p2.yaml


def model_yaml(model: Any) -> Any:
    """The path of this package's yaml for a bare model name such as ``yolo11n-p2.yaml``; anything else unchanged.

    A file of that name in the working directory wins, as it does in Ultralytics. The path keeps the scale letter
    (``<CFG_DIR>/yolo11n-p2.yaml``, which does not exist as a file): Ultralytics' ``yaml_model_load`` (8.4.190) reads
    the scale from the name and loads the file named without it (``yolo11-p2.yaml``), as for its own yamls.
    """
    if not isinstance(model, (str, Path)) or not P2_NAME.fullmatch(str(model)) or Path(model).exists():
        return model
    return str(CFG_DIR / str(model))


def model_task(model: Any) -> str:
    """The Ultralytics task of a model given by name or path: read from a yaml's head where there is one (no guess
    from the file name, so ``yolo11n-p2.yaml`` is ``detect`` without a warning), else Ultralytics'
    ``guess_model_task``."""
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    model = model_yaml(model)
    if isinstance(model, (str, Path)) and str(model).endswith((".yaml", ".yml")):
        try:
            return guess_model_task(yaml_model_load(model))
        except (OSError, KeyError, IndexError, TypeError, AttributeError):  # not found or not a model yaml: guess
            pass
    return guess_model_task(model)
