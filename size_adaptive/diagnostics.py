"""Assignment diagnostics per size bucket: which ground-truth objects get positive anchors, how many, how strongly.

No weight can help an object that the assigner gives no positive anchor: it receives no gradient at all. These counts
say, per size bucket, how many objects got none, how many positives the others got, and the mean target score (the
assigner's soft label, which also weighs the box and DFL terms) and the mean overlap of the predicted with the assigned
box (CIoU; ProbIoU for OBB: localisation quality) of those positives.

Pure tensor functions; this module does not import Ultralytics. Counting runs on the device at every loss call
without a host sync; the (5, 3) counts are read once per epoch.

With ``size_bins=aitod`` every object is also counted in its AI-TOD bin: very tiny (side sqrt(w·h) < 8 px original)
or tiny (8 to 16 px), both inside small; the counts are then (5, 6), columns ``COUNT_COLUMNS["aitod"]``, and the
columns ``size/*_very_tiny`` and ``size/*_tiny`` join the COCO ones (``size/fg_*`` stay shares of all positives).

Shapes and units (Ultralytics names):
    bs, n_max_boxes, num_anchors, num_classes
    gt_bucket      (bs, n_max_boxes) size bucket of each ground-truth box (padding rows: any); or
                   (bs, n_max_boxes, k): k columns of the counts per box (aitod: its COCO bucket and its AI-TOD bin)
    mask_gt        (bs, n_max_boxes, 1) 1 for real ground-truth boxes, 0 for padding
    fg_mask        (bs, num_anchors) bool
    target_gt_idx  (bs, num_anchors) index of each anchor's assigned box in its image (any value on background)
    score          (bs, num_anchors) each anchor's target score (``weighting.anchor_scores``), 0 on background
    iou            (bs, num_anchors) overlap of each anchor's predicted box with its assigned box (any on background)
    counts         (5, 3): rows ``OBJECTS``, ``UNASSIGNED``, ``POSITIVES``, ``SCORE``, ``IOU``; columns small, medium,
                   large; (5, 6) for aitod (``COUNT_COLUMNS``)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .weighting import AITOD_NAMES, BUCKET_NAMES, bin_names

OBJECTS, UNASSIGNED, POSITIVES, SCORE, IOU = range(5)  # rows of the counts
# size_bins -> the counts' columns: COCO's buckets, then (aitod) AI-TOD's bins and one for 16 px and above (not shown)
COUNT_COLUMNS = {"coco": BUCKET_NAMES, "aitod": (*BUCKET_NAMES, *AITOD_NAMES, "")}
AITOD_COLUMN = len(BUCKET_NAMES)  # the counts' column of very tiny: an object's AI-TOD bin (0, 1, 2) + this


def diagnostic_columns(bins: str = "coco") -> tuple[str, ...]:
    """The ``size/*`` columns of ``size_bins``, in the order ``diagnostics`` gives them."""
    names = bin_names(bins)
    fg = tuple(f"size/fg_{b}" for b in names)
    return (*fg, "size/mean_fg_weight",
            *(f"size/{what}_{b}" for what in ("unassigned", "pos_per_gt", "score", "iou") for b in names))


DIAGNOSTIC_COLUMNS = diagnostic_columns("coco")
FG_COLUMNS = DIAGNOSTIC_COLUMNS[: len(BUCKET_NAMES)]
ASSIGNMENT_COLUMNS = DIAGNOSTIC_COLUMNS[len(BUCKET_NAMES) + 1:]
ALL_DIAGNOSTIC_COLUMNS = diagnostic_columns("aitod")  # every column a run may log (either bins), in report order
DIAGNOSTICS_FILE = "size_diagnostics.csv"  # a stock run's assignment diagnostics (``trainer.observe_assignment``)


def new_counts(device=None, bins: str = "coco") -> torch.Tensor:
    """Zero (5, 3) float32 counts; (5, 6) for ``bins="aitod"``."""
    return torch.zeros(5, len(COUNT_COLUMNS[bins]), device=device)


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
    bucket (in each of its k columns when ``gt_bucket`` is (bs, n_max_boxes, k); give ``out`` wide enough).
    """
    counts = new_counts(fg_mask.device) if out is None else out
    bs, n_max_boxes = gt_bucket.shape[:2]
    if n_max_boxes == 0:  # a static shape, not a value: no sync
        return counts
    fg = fg_mask.to(counts.dtype)  # (bs, num_anchors)
    iou = torch.where(fg_mask, iou.to(counts.dtype), 0.0)  # background overlaps may be anything
    per_anchor = torch.stack((fg, score.to(counts.dtype) * fg, iou), -1)  # (bs, num_anchors, 3)
    index = target_gt_idx.long().unsqueeze(-1).expand_as(per_anchor)  # (bs, num_anchors, 3)
    per_gt = per_anchor.new_zeros(bs, n_max_boxes, 3).scatter_add_(1, index, per_anchor)  # positives, score, iou
    real = mask_gt.reshape(bs, n_max_boxes, 1).to(counts.dtype)  # (bs, n_max_boxes, 1)
    per_gt = torch.cat((real, real * (per_gt[..., :1] == 0), per_gt * real), -1)  # (bs, n_max_boxes, 5) = rows
    if gt_bucket.dim() == 3:  # k columns per object: its rows repeated for each
        per_gt = per_gt.unsqueeze(2).expand(-1, -1, gt_bucket.shape[2], -1)  # (bs, n_max_boxes, k, 5)
    index = gt_bucket.reshape(1, -1).expand(5, -1)  # (5, bs * n_max_boxes [* k])
    return counts.scatter_add_(1, index, per_gt.reshape(-1, 5).T)


def diagnostics(counts: torch.Tensor, weights: Sequence[float] | None = None) -> dict[str, float]:
    """The ``size/*`` columns from an epoch's counts ((5, 3), or (5, 6) for aitod); a ratio over an empty bucket is
    NaN. Columns in the order of ``diagnostic_columns``.

    ``size/fg_*`` are the shares of the positive anchors per bucket, ``size/mean_fg_weight`` their mean bucket weight
    (omitted without ``weights``), ``size/unassigned_*`` the share of objects without a positive, ``size/pos_per_gt_*``
    the mean positives per object, ``size/score_*`` the mean target score and ``size/iou_*`` the mean overlap of the
    predicted with the assigned box (CIoU; ProbIoU for OBB) of the positives.
    """
    rows = counts.detach().double().cpu().tolist()
    bins = "aitod" if len(rows[0]) == len(COUNT_COLUMNS["aitod"]) else "coco"
    columns = {b: i for i, b in enumerate(COUNT_COLUMNS[bins])}
    names = bin_names(bins)
    objects, unassigned, positives, score, iou = ([row[columns[b]] for b in names] for row in rows)
    coco = [rows[POSITIVES][columns[b]] for b in BUCKET_NAMES]  # every positive once
    n = max(sum(coco), 1.0)
    out = {f"size/fg_{b}": p / n for b, p in zip(names, positives)}
    if weights is not None:
        out["size/mean_fg_weight"] = sum(p * w for p, w in zip(coco, weights)) / n
    ratio = lambda a, b: a / b if b > 0 else math.nan  # noqa: E731
    for what, num, den in (("unassigned", unassigned, objects), ("pos_per_gt", positives, objects),
                           ("score", score, positives), ("iou", iou, positives)):
        out.update({f"size/{what}_{b}": ratio(a, c) for b, a, c in zip(names, num, den)})
    return out


def describe(values: dict[str, float]) -> str:
    """One log line: positives, unassigned objects, positives per object, target score and overlap (IoU),
    small/medium/large (very tiny/tiny/small/medium/large where ``values`` hold the AI-TOD bins)."""
    names = bin_names("aitod" if "size/fg_very_tiny" in values else "coco")

    def row(what: str, fmt: str, scale: float = 1.0) -> str:
        xs = [values.get(f"size/{what}_{b}", math.nan) for b in names]
        return "/".join("n/a" if math.isnan(x) else format(x * scale, fmt) for x in xs)

    weight = values.get("size/mean_fg_weight")
    line = f"{'/'.join(b.replace('_', ' ') for b in names)}: positives {row('fg', '.1f', 100)}%"
    line += f" (mean weight {weight:.3f})" if weight is not None else ""
    return (
        f"{line}; objects without a positive {row('unassigned', '.1f', 100)}%; positives per object "
        f"{row('pos_per_gt', '.1f')}; mean target score {row('score', '.2f')}; mean IoU {row('iou', '.2f')}"
    )
