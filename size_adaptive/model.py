"""A drop-in ``YOLO``: Ultralytics' own class, except that its box tasks train with the size-adaptive trainers."""

from __future__ import annotations

from typing import Any

from ultralytics import YOLO as _UltralyticsYOLO

from .demo import resolve_data
from .trainer import TRAINERS
from .validator import SizeAdaptiveValidator


class YOLO(_UltralyticsYOLO):
    """Ultralytics ``YOLO`` whose detect, segment, pose and OBB tasks train with the size-adaptive loss.

    ``train()`` accepts the ``size_*`` keys and the demo data keywords; it refuses the tasks without boxes (classify,
    semantic, depth). ``val()`` turns on ``save_json`` (COCO evaluation with mAP small/medium/large for detect) unless
    told otherwise. Everything else is stock.

    Example:
        >>> from size_adaptive import YOLO
        >>> YOLO("yolo12n.yaml").train(data="demo", epochs=10, imgsz=640, size_weights=[2, 1.5, 1])
    """

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        """``YOLO.task_map`` (8.4.190) with our trainers for the box tasks and our validator for ``detect``."""
        task_map = super().task_map
        for task, trainer in TRAINERS.items():
            task_map[task] = {**task_map[task], "trainer": trainer}
        task_map["detect"]["validator"] = SizeAdaptiveValidator
        return task_map

    def train(self, trainer=None, **kwargs: Any):
        """``Model.train``, refusing a model whose task the size-adaptive loss does not cover (before any file is
        written); a ``trainer`` given explicitly is used as is."""
        if trainer is None and self.task not in TRAINERS:
            raise ValueError(
                f"task: the size-adaptive loss trains {', '.join(TRAINERS)} models (their losses have boxes); "
                f"got a {self.task} model ({self.model_name})"
            )
        return super().train(trainer=trainer, **kwargs)

    def val(self, validator=None, **kwargs: Any):
        """``Model.val`` with ``save_json=True`` by default for detect and the demo keywords resolved."""
        if self.task == "detect":
            kwargs.setdefault("save_json", True)
        if "data" in kwargs:
            kwargs["data"] = resolve_data(kwargs["data"])
        return super().val(validator=validator, **kwargs)
