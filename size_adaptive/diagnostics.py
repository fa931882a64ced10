"""Assignment diagnostics per size bucket: which ground-truth objects get positive anchors, how many, how strongly.

No weight can help an object that the assigner gives no positive anchor: it receives no gradient at all. These counts
say, per size bucket, how many objects got none, how many positives the others got, and the mean target score (the
assigner's soft label, which also weighs the box and DFL terms) and the mean overlap of the predicted with the assigned
box (CIoU; ProbIoU for OBB: localisation quality) of those positives.

Pure tensor functions; this module does not import Ultralytics. Counting runs on the device at every loss call
without a host sync; the (4, 3) counts are read once per epoch.

Shapes and units (Ultralytics names):
    bs, n_max_boxes, num_anchors, num_classes
    gt_bucket      (bs, n_max_boxes) size bucket of each ground-truth box (padding rows: any)
    mask_gt        (bs, n_max_boxes, 1) 1 for real ground-truth boxes, 0 for padding
    fg_mask        (bs, num_anchors) bool
    target_gt_idx  (bs, num_anchors) index of each anchor's assigned box in its image (any value on background)
    score          (bs, num_anchors) each anchor's target score (``weighting.anchor_scores``), 0 on background
    iou            (bs, num_anchors) overlap of each anchor's predicted box with its assigned box (any on background)
    counts         (5, 3): rows ``OBJECTS``, ``UNASSIGNED``, ``POSITIVES``, ``SCORE``, ``IOU``; columns small, medium,
                   large
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .weighting import BUCKET_NAMES

OBJECTS, UNASSIGNED, POSITIVES, SCORE, IOU = range(5)  # rows of the counts

FG_COLUMNS = tuple(f"size/fg_{b}" for b in BUCKET_NAMES)
ASSIGNMENT_COLUMNS = tuple(
    f"size/{what}_{b}" for what in ("unassigned", "pos_per_gt", "score", "iou") for b in BUCKET_NAMES
)
DIAGNOSTIC_COLUMNS = (*FG_COLUMNS, "size/mean_fg_weight", *ASSIGNMENT_COLUMNS)
DIAGNOSTICS_FILE = "size_diagnostics.csv"  # a stock run's assignment diagnostics (``trainer.observe_assignment``)


def new_counts(device=None) -> torch.Tensor:
    """Zero (5, 3) float32 counts."""
    return torch.zeros(5, 3, device=device)


def assignment_counts(
    gt_bucket: torch.Tensor,
    mask_gt: torch.Tensor,
    fg_mask: torch.Tensor,
    target_gt_idx: torch.Tensor,
    score: torch.Tensor,
    iou: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Add one assignment's counts per size bucket to ``out`` (in place, no host sync) and return it.

    Rows: ``OBJECTS`` ground-truth objects; ``UNASSIGNED`` those with no positive anchor; ``POSITIVES`` positive
    anchors, ``SCORE`` the sum of their target scores and ``IOU`` the sum of their overlaps, counted in their object's
    bucket.
    """
    counts = new_counts(fg_mask.device) if out is None else out
    bs, n_max_boxes = gt_bucket.shape
    if n_max_boxes == 0:  # a static shape, not a value: no sync
        return counts
    fg = fg_mask.to(counts.dtype)  # (bs, num_anchors)
    iou = torch.where(fg_mask, iou.to(counts.dtype), 0.0)  # background overlaps may be anything
    per_anchor = torch.stack((fg, score.to(counts.dtype) * fg, iou), -1)  # (bs, num_anchors, 3)
    index = target_gt_idx.long().unsqueeze(-1).expand_as(per_anchor)  # (bs, num_anchors, 3)
    per_gt = per_anchor.new_zeros(bs, n_max_boxes, 3).scatter_add_(1, index, per_anchor)  # positives, score, iou
    real = mask_gt.reshape(bs, n_max_boxes, 1).to(counts.dtype)  # (bs, n_max_boxes, 1)
    per_gt = torch.cat((real, real * (per_gt[..., :1] == 0), per_gt * real), -1)  # (bs, n_max_boxes, 5) = rows
    index = gt_bucket.reshape(1, -1).expand(5, -1)  # (5, bs * n_max_boxes)
    return counts.scatter_add_(1, index, per_gt.reshape(-1, 5).T)


def diagnostics(counts: torch.Tensor, weights: Sequence[float] | None = None) -> dict[str, float]:
    """The ``size/*`` columns from an epoch's counts; a ratio over an empty bucket is NaN.

    ``size/fg_*`` are the shares of the positive anchors per bucket, ``size/mean_fg_weight`` their mean bucket weight
    (omitted without ``weights``), ``size/unassigned_*`` the share of objects without a positive, ``size/pos_per_gt_*``
    the mean positives per object, ``size/score_*`` the mean target score and ``size/iou_*`` the mean overlap of the
    predicted with the assigned box (CIoU; ProbIoU for OBB) of the positives.
    """
    objects, unassigned, positives, score, iou = counts.detach().double().cpu().tolist()
    n = max(sum(positives), 1.0)
    out = {c: p / n for c, p in zip(FG_COLUMNS, positives)}
    if weights is not None:
        out["size/mean_fg_weight"] = sum(p * w for p, w in zip(positives, weights)) / n
    ratio = lambda a, b: a / b if b > 0 else math.nan  # noqa: E731
    for what, num, den in (("unassigned", unassigned, objects), ("pos_per_gt", positives, objects),
                           ("score", score, positives), ("iou", iou, positives)):
        out.update({f"size/{what}_{b}": ratio(a, c) for b, a, c in zip(BUCKET_NAMES, num, den)})
    return out


def describe(values: dict[str, float]) -> str:
    """One log line: positives, unassigned objects, positives per object, target score and overlap (IoU),
    small/medium/large."""

    def row(what: str, fmt: str, scale: float = 1.0) -> str:
        xs = [values.get(f"size/{what}_{b}", math.nan) for b in BUCKET_NAMES]
        return "/".join("n/a" if math.isnan(x) else format(x * scale, fmt) for x in xs)

    weight = values.get("size/mean_fg_weight")
    line = f"small/medium/large: positives {row('fg', '.1f', 100)}%"
    line += f" (mean weight {weight:.3f})" if weight is not None else ""
    return (
        f"{line}; objects without a positive {row('unassigned', '.1f', 100)}%; positives per object "
        f"{row('pos_per_gt', '.1f')}; mean target score {row('score', '.2f')}; mean IoU {row('iou', '.2f')}"
    )
