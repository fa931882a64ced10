"""A drop-in ``YOLO``: Ultralytics' own class, except that its box tasks train with the size-adaptive trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ultralytics import YOLO as _UltralyticsYOLO

from .cfg import model_yaml
from .demo import resolve_data
from .trainer import TRAINERS
from .validator import VALIDATORS


class YOLO(_UltralyticsYOLO):
    """Ultralytics ``YOLO`` whose detect, segment, pose and OBB tasks train with the size-adaptive loss.

    ``train()`` accepts the ``size_*`` keys and the demo data keywords; it refuses the tasks without boxes (classify,
    semantic, depth). ``val()`` turns on ``save_json`` (COCO evaluation with mAP small/medium/large; mask mAP per size
    too for segment) for those tasks unless told otherwise. The package's own model yamls are found by name
    (``yolo11n-p2.yaml``, ``yolo12s-p2.yaml``: see ``size_adaptive.cfg``). Everything else is stock.

    Example:
        >>> from size_adaptive import YOLO
        >>> YOLO("yolo12n.yaml").train(data="demo", epochs=10, imgsz=640, size_weights=[2, 1.5, 1])
    """

    def __init__(self, model: Any = "yolo26n.pt", task: str | None = None, verbose: bool = False):
        """``YOLO.__init__`` (8.4.190), with this package's model yamls found by their bare names."""
        super().__init__(model_yaml(model), task=task, verbose=verbose)

    @property
    def task_map(self) -> dict[str, dict[str, Any]]:
        """``YOLO.task_map`` (8.4.190) with our trainers and validators (mAP per size) for the box tasks."""
        task_map = super().task_map
        for task, trainer in TRAINERS.items():
            task_map[task] = {**task_map[task], "trainer": trainer}
        for task, validator in VALIDATORS.items():
            task_map[task]["validator"] = validator
        return task_map

    def train(self, trainer=None, **kwargs: Any):
        """``Model.train``, refusing a model whose task the size-adaptive loss does not cover (before any file is
        written); a ``trainer`` given explicitly is used as is."""
        resume = kwargs.get("resume")
        if resume:  # a finished run: refused, not started anew from its weights (Ultralytics 8.4.190 does)
            from .checks import check_resume

            check_resume(resume if isinstance(resume, (str, Path)) else self.ckpt_path)
        if trainer is None:
            check_box_task(self.task, self.model_name)
            _check_assign(self.model, kwargs)
        if "model" in kwargs:  # the CLI passes model= on as given; the trainer builds the model from it
            kwargs["model"] = model_yaml(kwargs["model"])
        return super().train(trainer=trainer, **kwargs)

    def val(self, validator=None, **kwargs: Any):
        """``Model.val`` with ``save_json=True`` by default for the box tasks (mAP per size) and the demo keywords
        resolved; ``size_bins=aitod`` reports AI-TOD's very tiny and tiny bins too (our validator of the task, with
        that ``size_bins``)."""
        bins = _val_bins(kwargs.pop("size_bins", "coco"), self.task)
        if self.task in VALIDATORS:
            kwargs.setdefault("save_json", True)
        if "data" in kwargs:
            kwargs["data"] = resolve_data(kwargs["data"])
        if bins != "coco":
            base = validator or VALIDATORS[self.task]
            validator = type(base.__name__, (base,), {"size_bins": bins})
        return super().val(validator=validator, **kwargs)


def _val_bins(value: Any, task: str) -> str:
    """``size_bins`` of a validation: parsed (a ``ValueError`` naming the key), and only for the box tasks."""
    from .settings import SizeSettings

    bins = SizeSettings.from_dict({"size_bins": value}).bins
    if bins != "coco" and task not in VALIDATORS:
        raise ValueError(f"size_bins: expected 'coco' for a {task} model (per-size mAP is for {', '.join(VALIDATORS)} "
                         f"models); got {value!r}")
    return bins


def _check_assign(model: Any, kwargs: dict) -> None:
    """Refuse ``size_assign=nwd`` for YOLO26 segment and pose models before anything is written."""
    from .assign import check_model_assign
    from .settings import SizeSettings, split_size_keys

    try:
        mode = SizeSettings.from_dict(split_size_keys(kwargs)[0]).assign
    except ValueError:
        return  # the trainer refuses bad settings by name, before its run folder exists
    check_model_assign(model, mode)


def check_box_task(task: str, model_name: Any) -> None:
    """Refuse a model whose task has no boxes in its loss (classify, semantic, depth): a ``ValueError`` naming
    ``task``, the tasks that train and the model given."""
    if task not in TRAINERS:
        raise ValueError(f"task: the size-adaptive loss trains {', '.join(TRAINERS)} models (their losses have boxes); "
                         f"got a {task} model ({model_name})")
