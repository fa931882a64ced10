"""Size-adaptive loss weighting for Ultralytics YOLO: small objects weigh more in the detection loss.

The rule lives in :mod:`size_adaptive.weighting`; :class:`SizeAdaptiveDetectionLoss` applies it inside Ultralytics'
``v8DetectionLoss`` (and its siblings in :mod:`size_adaptive.loss` inside the segment, pose and OBB losses), and
:class:`SizeAdaptiveTrainer` installs it on the stock ``DetectionTrainer`` (its siblings on the task trainers).
"""

from ._compat import check_ultralytics_version

check_ultralytics_version()

from .loss import SizeAdaptiveDetectionLoss, build_criterion  # noqa: E402
from .model import YOLO  # noqa: E402
from .settings import SizeSettings  # noqa: E402
from .trainer import (  # noqa: E402
    SizeAdaptiveOBBTrainer,
    SizeAdaptivePoseTrainer,
    SizeAdaptiveSegmentationTrainer,
    SizeAdaptiveTrainer,
)
from .validator import SizeAdaptiveValidator  # noqa: E402
from .weighting import anchor_weights  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "YOLO",
    "SizeAdaptiveDetectionLoss",
    "SizeAdaptiveOBBTrainer",
    "SizeAdaptivePoseTrainer",
    "SizeAdaptiveSegmentationTrainer",
    "SizeAdaptiveTrainer",
    "SizeAdaptiveValidator",
    "SizeSettings",
    "anchor_weights",
    "build_criterion",
    "train",
]


def train(model: str = "yolo12n.yaml", **kwargs):
    """Train ``model`` with the size-adaptive loss; keyword arguments are those of ``yolo train`` plus ``size_*``.

    Returns the trainer, whose ``save_dir`` holds ``results.csv`` and ``weights/``.

    Example:
        >>> from size_adaptive import train
        >>> trainer = train("yolo12n.yaml", data="demo", epochs=10, size_weights=[2, 1.5, 1])
    """
    yolo = YOLO(model)
    yolo.train(**kwargs)
    return yolo.trainer
