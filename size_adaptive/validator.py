"""``SizeAdaptiveValidator``: the stock detection validator, reporting COCO mAP for small, medium and large objects.

Ultralytics 8.4.190 already evaluates any detection data set with faster-coco-eval when ``save_json=True``: it builds
the COCO ground truth from the validation labels in original-image pixels and adds ``metrics/mAP_small(B)``,
``metrics/mAP_medium(B)`` and ``metrics/mAP_large(B)`` (COCO areas: < 32², 32²..96², >= 96² original px) to the stats.
This validator says so in one log line, writes them next to a standalone validation run, and keeps faster-coco-eval's
summary block (about 15 lines) out of the log during training: it is printed at the final validation only.
"""

from __future__ import annotations

import contextlib
import json
import logging

from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER, colorstr

from .weighting import BUCKET_NAMES

PER_SIZE_FILE = "per_size_metrics.json"


class SizeAdaptiveValidator(DetectionValidator):
    """``DetectionValidator`` that logs (and outside training saves) the per-size COCO mAP."""

    def eval_json(self, stats: dict) -> dict:
        """Run ``DetectionValidator.eval_json`` (8.4.190), quietly during training, then report its per-size mAP."""
        with _quiet(LOGGER) if self.training else contextlib.nullcontext():
            stats = super().eval_json(stats)
        per_size = {k: stats[f"metrics/mAP_{k}(B)"] for k in BUCKET_NAMES if f"metrics/mAP_{k}(B)" in stats}
        if per_size:
            LOGGER.info(f"{colorstr('size_adaptive:')} {describe_per_size(per_size)}")
            if not self.training:
                path = self.save_dir / PER_SIZE_FILE
                path.write_text(json.dumps({f"mAP_{k}": v for k, v in per_size.items()}, indent=2) + "\n")
                LOGGER.info(f"{colorstr('size_adaptive:')} per-size metrics saved to {path}")
        return stats


def describe_per_size(per_size: dict[str, float]) -> str:
    """The per-size log line; COCO's -1 (no objects of that size in the validation set) reads 'n/a (no objects)'."""
    values = "  ".join(f"{k} {'n/a (no objects)' if v < 0 else format(v, '.4f')}" for k, v in per_size.items())
    return f"mAP50-95 by object size (COCO areas, original px): {values}"


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """Drop the logger's INFO records (faster-coco-eval's summary goes through it); warnings still pass."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
