"""The size-adaptive weighting rule: ground-truth box areas -> per-anchor loss weights.

Pure tensor functions; this module does not import Ultralytics.

Shapes and units (Ultralytics names):
    bs             batch size
    num_anchors    anchor points over all strides: 84 at imgsz 64, 2100 at 320, 8400 at 640
    target_bboxes  (bs, num_anchors, 4) xyxy, px: the box the assigner matched to each anchor (OBB: (..., 5) xywhr)
    target_scores  (bs, num_anchors, num_classes): the assigner's soft labels, zero on background anchors
    target_labels  (bs, num_anchors): the class of each anchor's assigned box (any class on background anchors)
    score          (bs, num_anchors): each anchor's target score, its soft label for its own class, 0 on background
    fg_mask        (bs, num_anchors) bool: anchors matched to a ground-truth box
    weights        (bs, num_anchors)
    px             network-input pixels (after letterbox/resize); areas are px².

Buckets follow the COCO convention with half-open intervals, for thresholds ``(t_small, t_medium)`` as
side lengths: small ``area < t_small²``, medium ``t_small² <= area < t_medium²``, large ``area >= t_medium²``.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

SMALL, MEDIUM, LARGE = 0, 1, 2
BUCKET_NAMES = ("small", "medium", "large")
AITOD_NAMES = ("very_tiny", "tiny")  # size_bins=aitod: AI-TOD's bins inside COCO's small
AITOD_THRESHOLDS = (8.0, 16.0)  # their upper side lengths, original px: very tiny area < 8², tiny 8² <= area < 16²

Numbers = Union[torch.Tensor, Sequence[float]]


def bin_names(bins: str = "coco") -> tuple[str, ...]:
    """The per-size names of ``size_bins``, in column order: ``coco`` small, medium, large; ``aitod`` very_tiny,
    tiny, small, medium, large (very tiny and tiny lie inside small, which keeps COCO's meaning).

    Raises:
        ValueError: ``bins`` is neither.
    """
    if bins == "coco":
        return BUCKET_NAMES
    if bins == "aitod":
        return (*AITOD_NAMES, *BUCKET_NAMES)
    raise ValueError(f"size_bins: expected one of ['coco', 'aitod']; got {bins!r}")


def aitod_thresholds(thresholds: Sequence[float], input_thresholds: Sequence[float]) -> tuple[float, float]:
    """AI-TOD's 8 and 16 px (original) in the unit of ``input_thresholds``, with the factor that turned
    ``thresholds`` into them (the train set's median resize factor for ``size_space=original``; 1 for ``input``).

    Args:
        thresholds: (2,) the ``size_thresholds`` as given (px).
        input_thresholds: (2,) the same in network-input px.

    Returns:
        (2,) the very tiny/tiny and tiny/small edges as side lengths, network-input px.
    """
    factor = float(input_thresholds[0]) / float(thresholds[0])
    return tuple(t * factor for t in AITOD_THRESHOLDS)


def box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """Return the areas of xyxy boxes; degenerate (zero or negative extent) boxes have area 0.

    Args:
        boxes: (..., 4) xyxy.

    Returns:
        (...) areas in the square of the boxes' unit.
    """
    wh = (boxes[..., 2:4] - boxes[..., 0:2]).clamp(min=0)  # (..., 2)
    return wh[..., 0] * wh[..., 1]


def rotated_box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """Return the areas w·h of rotated xywhr boxes (OBB); degenerate boxes have area 0.

    Args:
        boxes: (..., 5) xywhr, the angle last.

    Returns:
        (...) areas in the square of the boxes' unit.
    """
    wh = boxes[..., 2:4].clamp(min=0)  # (..., 2)
    return wh[..., 0] * wh[..., 1]


def size_buckets(areas: torch.Tensor, thresholds: Numbers) -> torch.Tensor:
    """Return the size bucket (0 small, 1 medium, 2 large) of each area.

    Args:
        areas: (...) areas in px².
        thresholds: (2,) side lengths in px, strictly increasing.

    Returns:
        (...) int64 bucket indices.
    """
    edges = torch.as_tensor(thresholds, dtype=areas.dtype, device=areas.device).square()  # (2,) px²
    return torch.bucketize(areas, edges, right=True)  # edges[i-1] <= area < edges[i]


def bucket_weights(bucket: torch.Tensor, fg_mask: torch.Tensor, weights: Numbers) -> torch.Tensor:
    """Give each foreground anchor the weight of its size bucket and each background anchor 1.

    Args:
        bucket: (bs, num_anchors) bucket indices from ``size_buckets``.
        fg_mask: (bs, num_anchors) bool.
        weights: (3,) weights of the small, medium and large buckets; their dtype is the result's.

    Returns:
        (bs, num_anchors) weights.
    """
    table = torch.as_tensor(weights, device=bucket.device)  # (3,)
    return torch.where(fg_mask, table.index_select(0, bucket.reshape(-1)).view(bucket.shape), 1.0)


def anchor_weights(
    target_bboxes: torch.Tensor, fg_mask: torch.Tensor, thresholds: Numbers, weights: Numbers
) -> torch.Tensor:
    """The rule: weigh every foreground anchor by the size bucket of its assigned box; background anchors get 1.

    Args:
        target_bboxes: (bs, num_anchors, 4) xyxy px, as returned by the TaskAlignedAssigner. They are already in
            pixels: no stride factor is applied.
        fg_mask: (bs, num_anchors) bool.
        thresholds: (2,) side lengths in px of the small/medium and medium/large edges.
        weights: (3,) weights of the small, medium and large buckets.

    Returns:
        (bs, num_anchors) weights.

    Example:
        >>> boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 200.0, 100.0]]])
        >>> anchor_weights(boxes, torch.tensor([[True, True, False]]), (32, 96), (2.0, 1.5, 1.0))
        tensor([[2.0000, 1.5000, 1.0000]])
    """
    return bucket_weights(size_buckets(box_areas(target_bboxes), thresholds), fg_mask, weights)


def anchor_scores(target_scores: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
    """Each anchor's target score: ``target_scores.sum(-1)``, read from its own class (the others are 0).

    Args:
        target_scores: (bs, num_anchors, num_classes).
        target_labels: (bs, num_anchors) class indices; out-of-range ones (the assigner's ``num_classes`` on a batch
            without ground truth, where every score is 0) are clamped.

    Returns:
        (bs, num_anchors) float32.
    """
    nc = target_scores.shape[-1]
    labels = target_labels.long().clamp(0, nc - 1)  # (bs, num_anchors)
    flat = torch.arange(0, labels.numel() * nc, nc, device=labels.device).view(labels.shape) + labels
    return target_scores.reshape(-1).index_select(0, flat.reshape(-1)).view(labels.shape).float()


def balance_weights(weights: torch.Tensor, fg_mask: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """``size_norm``: rescale the foreground weights so that their target-score-weighted sum is the stock one.

    Only the balance between objects changes: sum(score · weight) over the foreground anchors equals sum(score), the
    sum that upstream normalises by, and background anchors keep weight 1. Equal weights become all ones. A batch
    without foreground (or with zero target scores) is left as it is. No host sync.

    Args:
        weights: (bs, num_anchors) from ``bucket_weights``.
        fg_mask: (bs, num_anchors) bool.
        score: (bs, num_anchors) target scores (``anchor_scores``), 0 on background.

    Returns:
        (bs, num_anchors) weights.
    """
    stock, weighted = score.sum(), (score * weights).sum()
    scale = torch.where(weighted > 0, stock / weighted, 1.0)  # () on the device
    return torch.where(fg_mask, weights * scale.to(weights.dtype), weights)
