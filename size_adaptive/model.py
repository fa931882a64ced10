"""A drop-in ``YOLO``: Ultralytics' own class, except that its detect task trains with ``SizeAdaptiveTrainer``."""

from __future__ import annotations

from typing import Any

from ultralytics import YOLO as _UltralyticsYOLO

from .demo import resolve_data
from .trainer import SizeAdaptiveTrainer
from .validator import SizeAdaptiveValidator


class YOLO(_UltralyticsYOLO):
    """Ultralytics ``YOLO`` whose detect task trains with the size-adaptive loss and reports mAP per object size.

    ``train()`` accepts the ``size_*`` keys and ``data="demo"``; ``val()`` turns on ``save_json`` (COCO evaluation
    with mAP small/medium/large) unless told otherwise. Everything else is stock.

    Example:
        >>> from size_adaptive import YOLO
        >>> YOLO("yolo12n.yaml").train(data="demo", epochs=10, imgsz=640, size_weights=[2, 1.5, 1])
    """

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        """``YOLO.task_map`` (8.4.190) with our trainer and validator for ``detect``."""
        task_map = super().task_map
        task_map["detect"] = {**task_map["detect"], "trainer": SizeAdaptiveTrainer, "validator": SizeAdaptiveValidator}
        return task_map

    def val(self, validator=None, **kwargs: Any):
        """``Model.val`` with ``save_json=True`` by default and ``data="demo"`` resolved."""
        kwargs.setdefault("save_json", True)
        if "data" in kwargs:
            kwargs["data"] = resolve_data(kwargs["data"])
        return super().val(validator=validator, **kwargs)
