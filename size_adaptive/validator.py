"""``SizeAdaptiveValidator``: the stock detection validator, reporting COCO mAP for small, medium and large objects.

Ultralytics 8.4.190 already evaluates any detection data set with faster-coco-eval when ``save_json=True``: it builds
the COCO ground truth from the validation labels in original-image pixels and adds ``metrics/mAP_small(B)``,
``metrics/mAP_medium(B)`` and ``metrics/mAP_large(B)`` (COCO areas: < 32², 32²..96², >= 96² original px) to the stats.
This validator only says so in the log, and writes them next to a standalone validation run.
"""

from __future__ import annotations

import json

from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER, colorstr

from .weighting import BUCKET_NAMES

PER_SIZE_FILE = "per_size_metrics.json"


class SizeAdaptiveValidator(DetectionValidator):
    """``DetectionValidator`` that logs (and outside training saves) the per-size COCO mAP."""

    def eval_json(self, stats: dict) -> dict:
        """Run ``DetectionValidator.eval_json`` (8.4.190), then report its per-size mAP."""
        stats = super().eval_json(stats)
        per_size = {k: stats[f"metrics/mAP_{k}(B)"] for k in BUCKET_NAMES if f"metrics/mAP_{k}(B)" in stats}
        if per_size:
            LOGGER.info(
                f"{colorstr('size_adaptive:')} mAP50-95 by object size (COCO areas, original px): "
                + "  ".join(f"{k} {v:.4f}" for k, v in per_size.items())
            )
            if not self.training:
                path = self.save_dir / PER_SIZE_FILE
                path.write_text(json.dumps({f"mAP_{k}": v for k, v in per_size.items()}, indent=2) + "\n")
                LOGGER.info(f"{colorstr('size_adaptive:')} per-size metrics saved to {path}")
        return stats
