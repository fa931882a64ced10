"""The size-adaptive losses: Ultralytics' task losses with a per-anchor weight from the object's size.

Follows ultralytics 8.4.190 ``v8DetectionLoss.get_assigned_targets_and_loss`` (and ``v8OBBLoss.loss``) without
overriding them. They assign targets with ``self.assigner``, compute the classification BCE with ``self.bce`` and the
box terms with ``self.bbox_loss``, then normalise by the stock ``target_scores_sum`` and apply the ``box/cls/dfl``
gains. ``SizeAdaptiveLoss`` wraps exactly those three units:

1. after the assignment, weigh every anchor by the size of its assigned box (``weighting``; ``size_norm`` rescales the
   foreground weights) and count the assignment per size bucket (``diagnostics``);
2. ``cls`` in ``size_terms``: multiply the per-element BCE (bs, num_anchors, num_classes) by its anchor's weight;
3. ``box``/``dfl``: hand ``bbox_loss`` the target scores times the anchor weight. ``BboxLoss`` weighs each foreground
   anchor's CIoU and DFL term by the sum of its target scores, so this scales exactly that anchor's terms; when only
   one of the two is weighted, the other comes from a second call with the stock target scores.

With ``size_assign``/``size_min_pos`` the assigner is patched (``assign``), and with ``size_box_nwd=r`` the box term
becomes (1 - r)(1 - CIoU) + r(1 - NWD) per anchor (``_NWDBlendBboxLoss``), keeping upstream's per-anchor weights,
normaliser and ``box`` gain. Everything else (assignment, normalisation, gains, class weights, the end-to-end branch
schedule, the mask and keypoint terms of segment and pose) stays upstream's, so with all weights 1 the loss is the
stock one, value for value. The weighting adds no host-device sync: no ``.item()``, no branch on a tensor value and no
data-dependent shape.

Shapes (Ultralytics names): ``target_bboxes`` (bs, num_anchors, 4) xyxy px (OBB: 5, xywhr), ``target_scores``
(bs, num_anchors, num_classes), ``fg_mask`` (bs, num_anchors), ``anchor_weights`` (bs, num_anchors), ``gt_bboxes``
(bs, n_max_boxes, 4 or 5) px, ``mask_gt`` (bs, n_max_boxes, 1).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn
from ultralytics.utils.metrics import bbox_iou, probiou
from ultralytics.utils.loss import (
    E2ELoss,
    PoseLoss26,
    SegmentLoss26,
    v8DetectionLoss,
    v8OBBLoss,
    v8PoseLoss,
    v8SegmentationLoss,
)

from .assign import max_positives as assigner_max_positives
from .assign import patch_assigner
from .diagnostics import AITOD_COLUMN, assignment_counts, new_counts
from .nwd import nwd, relative_c
from .settings import SizeSettings
from .weighting import (
    aitod_thresholds,
    anchor_scores,
    balance_weights,
    box_areas,
    bucket_weights,
    rotated_box_areas,
    size_buckets,
)


def ciou(pd_bboxes: torch.Tensor, target_bboxes: torch.Tensor) -> torch.Tensor:
    """CIoU of matching xyxy boxes (bs, num_anchors, 4) -> (bs, num_anchors), as upstream's ``BboxLoss``."""
    return bbox_iou(pd_bboxes, target_bboxes, xywh=False, CIoU=True).squeeze(-1)


def rotated_overlap(pd_bboxes: torch.Tensor, target_bboxes: torch.Tensor) -> torch.Tensor:
    """ProbIoU of matching xywhr boxes (bs, num_anchors, 5) -> (bs, num_anchors), as upstream's ``RotatedBboxLoss``."""
    shape = pd_bboxes.shape[:-1]
    return probiou(pd_bboxes.reshape(-1, 5), target_bboxes.reshape(-1, 5)).reshape(shape)


class SizeAdaptiveLoss:
    """Mixin for a ``v8DetectionLoss`` subclass: its cls, box and DFL terms weighted per anchor by object size.

    Args:
        model: the de-paralleled model; its ``args`` carry the stock gains and the ``size_*`` keys.
        tal_topk, tal_topk2: as in ``v8DetectionLoss``.
        settings: the size settings; read from ``model.args`` when omitted. Thresholds must be in network-input px
            (``size_space=input``, or resolved by ``SizeAdaptiveTrainer``).

    Attributes:
        anchor_weights: (bs, num_anchors) weights of the latest call (``size_norm`` factor included).
        size_counts: (5, 3) assignment counts per size bucket since the last ``reset_size_counts()``
            (``diagnostics``; (5, 6) with ``size_bins=aitod``), accumulated on the device.
    """

    box_areas: Callable[[torch.Tensor], torch.Tensor] = staticmethod(box_areas)  # of target_bboxes and gt_bboxes
    box_overlap: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = staticmethod(ciou)  # iou_*

    def __init__(self, model: nn.Module, tal_topk: int = 10, tal_topk2: int | None = None, settings=None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.settings = settings or SizeSettings.from_args(self.hyp)
        if self.settings.input_thresholds is None:
            raise ValueError(
                "size_thresholds: expected thresholds in network-input px (size_space='input', or resolved from "
                "size_space='original' by SizeAdaptiveTrainer); got unresolved original-image thresholds "
                f"{list(self.settings.thresholds)}"
            )
        self.size_thresholds = torch.tensor(self.settings.input_thresholds, device=self.device)  # (2,) px
        self.size_weights = torch.tensor(self.settings.weights, device=self.device)  # (3,)
        self.anchor_weights, self.max_fg = None, None
        self.size_counts = new_counts(self.device, self.settings.bins)
        self.size_tiny_thresholds = size_tiny_thresholds(self.settings, self.device)  # (2,) px, or None (coco)
        terms, s = self.settings.terms, self.settings
        if s.uses_nwd and s.nwd_input_c is None and not s.nwd_relative:
            raise ValueError(
                "size_nwd_c: expected C in network-input px (a number, or 'auto' resolved by SizeAdaptiveTrainer); got "
                "an unresolved 'auto'"
            )
        if s.assign == "simd" and s.simd_mn is None:
            raise ValueError("size_simd_mn: expected SimD's constants m, n (fitted on the training labels by "
                             "SizeAdaptiveTrainer); got None")
        nwd_k = s.nwd_k if s.nwd_relative else None
        if s.patches_assigner:
            patch_assigner(self.assigner, s.assign, s.min_pos, s.nwd_input_c, nwd_k=nwd_k,
                           small_side=s.input_thresholds[0], simd_mn=s.simd_mn)
        self.assigner = AfterAssign(self.assigner, self.weigh)
        if s.box_nwd > 0:
            self.bbox_loss = _NWDBlendBboxLoss(self.bbox_loss, s.box_nwd, s.nwd_input_c, self, nwd_k=nwd_k)
        if "cls" in terms:
            self.bce = _AnchorWeightedBCE(self.bce, self)
        if "box" in terms or "dfl" in terms:
            self.bbox_loss = _AnchorWeightedBboxLoss(self.bbox_loss, self, box="box" in terms, dfl="dfl" in terms)

    def weigh(self, pd_bboxes, gt_bboxes, mask_gt, target_labels, target_bboxes, target_scores, fg_mask,
              target_gt_idx):
        """Compute and record this call's (bs, num_anchors) anchor weights from the assigner's input and output,
        and count the assignment per size bucket.

        The weights are ``weighting.anchor_weights`` step by step (plus ``size_norm``).
        """
        bucket = size_buckets(self.box_areas(target_bboxes), self.size_thresholds)  # (bs, num_anchors)
        w = bucket_weights(bucket, fg_mask, self.size_weights)  # (bs, num_anchors)
        self.max_fg = max_positives(self, gt_bboxes)  # also for the NWD box term, which runs after this call
        score = count_call(self.size_counts, type(self), self.size_thresholds, self.max_fg, pd_bboxes, gt_bboxes,
                           mask_gt, target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx,
                           self.size_tiny_thresholds)
        if self.settings.norm:
            w = balance_weights(w, fg_mask, score)
        self.anchor_weights = w
        return w

    def reset_size_counts(self) -> torch.Tensor:
        """Return the assignment counts since the last reset, and start new ones."""
        counts, self.size_counts = self.size_counts, torch.zeros_like(self.size_counts)
        return counts


class AfterAssign(nn.Module):
    """The stock assigner, then ``hook`` on its ground truth and its assignment; the assignment passes unchanged.

    Follows the positional call in ``v8DetectionLoss.get_assigned_targets_and_loss`` and ``v8OBBLoss.loss`` (8.4.190):
    ``(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)`` in, five tensors out.
    """

    def __init__(self, assigner: nn.Module, hook: Callable[..., object]):
        super().__init__()
        self.inner, self.hook = assigner, hook

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        # pd_bboxes, gt_bboxes, mask_gt; target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx
        self.hook(args[1], args[4], args[5], *out)
        return out


class _AnchorWeightedBCE(nn.Module):
    """The stock per-element BCE, times the weight of each element's anchor."""

    def __init__(self, bce: nn.Module, owner: SizeAdaptiveLoss):
        super().__init__()
        self.inner, self.owner = bce, owner

    def forward(self, pred_scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
        loss = self.inner(pred_scores, target_scores)  # (bs, num_anchors, num_classes)
        # In place: a fresh tensor that BCE's backward does not need (it keeps its inputs, not its output).
        return loss.mul_(self.owner.anchor_weights.unsqueeze(-1).to(loss.dtype))  # (bs, num_anchors, 1)


class _AnchorWeightedBboxLoss(nn.Module):
    """The stock ``BboxLoss`` (or ``RotatedBboxLoss``), given target scores scaled by their anchor's weight.

    Returns (box, dfl) as upstream; a term that is not weighted comes from the stock target scores.
    """

    def __init__(self, bbox_loss: nn.Module, owner: SizeAdaptiveLoss, box: bool, dfl: bool):
        super().__init__()
        self.inner, self.owner, self.box, self.dfl = bbox_loss, owner, box, dfl

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, *args, **kwargs):
        w = self.owner.anchor_weights.unsqueeze(-1).to(target_scores.dtype)  # (bs, num_anchors, 1)
        common = (pred_dist, pred_bboxes, anchor_points, target_bboxes)
        weighted = self.inner(*common, target_scores * w, *args, **kwargs)
        if self.box and self.dfl:
            return weighted
        stock = self.inner(*common, target_scores, *args, **kwargs)
        return (weighted[0], stock[1]) if self.box else (stock[0], weighted[1])


class _NWDBlendBboxLoss(nn.Module):
    """``size_box_nwd=r``: the stock ``BboxLoss`` (``RotatedBboxLoss``) with its box term (1 - r)(1 - CIoU) +
    r(1 - NWD), NWD in network-input px; the DFL term stays the stock one.

    Follows ``BboxLoss.forward`` (8.4.190): each foreground anchor's term is weighted by the sum of its target scores
    and normalised by ``target_scores_sum``. The NWD part runs on the owner's ``max_fg`` foreground slots (a static
    bound, as for the diagnostics; slots left over weigh 0), so its shape does not depend on the data (no host sync).
    """

    def __init__(self, bbox_loss: nn.Module, r: float, nwd_input_c: float | None, owner: SizeAdaptiveLoss,
                 nwd_k: float | None = None):
        super().__init__()
        self.inner, self.r, self.nwd_input_c, self.owner, self.nwd_k = bbox_loss, r, nwd_input_c, owner, nwd_k

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum,
                fg_mask, imgsz, stride):
        box, dfl = self.inner(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum,
                              fg_mask, imgsz, stride)
        weight = target_scores.sum(-1) * fg_mask  # (bs, num_anchors), 0 on background
        # W2 scales with the boxes' lengths (the angle does not), so NWD of the px boxes is NWD of the grid-unit boxes
        # with C / stride: no conversion of the boxes. A relative C (k·sqrt(w·h) of the target) scales with them.
        c = None if self.nwd_k else self.nwd_input_c / stride.squeeze(-1)  # (num_anchors,) C in grid units
        bound = self.owner.max_fg
        if bound is None or bound >= fg_mask.numel():
            pred, target = pred_bboxes, target_bboxes  # (bs, num_anchors, 4|5)
        else:
            at, valid = _foreground_slots(fg_mask, bound)
            weight = _pick(weight, at) * valid  # the slots left weigh 0
            pred, target = _pick(pred_bboxes, at), _pick(target_bboxes, at)
            c = None if c is None else c.index_select(0, at % c.shape[0])
        similarity = nwd(pred, target, relative_c(target, self.nwd_k) if c is None else c)
        box_nwd = ((1.0 - similarity) * weight).sum() / target_scores_sum
        return (1.0 - self.r) * box + self.r * box_nwd, dfl


def _foreground_index(fg_mask: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices (n,) of the foreground anchors in row-major order, then ``fg_mask.numel()`` (past the end) in the
    slots left, without a host sync; ``n`` is at least the foreground count (later ones would be dropped)."""
    fg = fg_mask.flatten()
    slot = torch.where(fg, fg.cumsum(0) - 1, n)  # (bs * num_anchors,) position among the foreground, or a spare slot
    index = torch.full((n + 1,), fg.numel(), dtype=torch.long, device=fg.device)
    return index.scatter_(0, slot, torch.arange(fg.numel(), device=fg.device))[:n]


def _foreground_slots(fg_mask: torch.Tensor, bound: int) -> tuple:
    """The foreground gathered into ``bound`` slots (``max_positives``): flat anchor indices (bound,), the slots left
    pointing at the last anchor, and (bound,) bool, the slots that hold a foreground anchor."""
    index = _foreground_index(fg_mask, bound)  # (bound,), numel in the slots left
    return index.clamp(max=fg_mask.numel() - 1), index < fg_mask.numel()


def _pick(values: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """``values`` (bs, num_anchors, ...) at the flat anchor indices ``at`` (n,): (n, ...)."""
    return values.reshape(-1, *values.shape[2:]).index_select(0, at)


def _at_foreground(values: torch.Tensor, fg_mask: torch.Tensor, n: int) -> torch.Tensor:
    """``values[fg_mask]`` (n,) without a host sync, given the foreground count ``n`` that the caller already knows."""
    return values.flatten()[_foreground_index(fg_mask, n)]


def max_positives(loss, gt_bboxes: torch.Tensor) -> int:
    """A bound on the foreground anchors of one assignment of ``loss``, from static shapes: its assigner's
    (``assign.max_positives``) for the bs * n_max_boxes object rows of ``gt_bboxes``."""
    bs, n_max_boxes = gt_bboxes.shape[:2]
    return assigner_max_positives(getattr(loss.assigner, "inner", loss.assigner), bs * n_max_boxes)


def size_tiny_thresholds(settings: SizeSettings, device=None) -> torch.Tensor | None:
    """AI-TOD's very tiny/tiny and tiny/small edges (8 and 16 px original) in network-input px for
    ``size_bins=aitod`` (the factor of the resolved thresholds); None for ``coco``."""
    if settings.bins == "coco":
        return None
    return torch.tensor(aitod_thresholds(settings.thresholds, settings.input_thresholds), device=device)  # (2,) px


def count_call(counts: torch.Tensor, loss_class: type, thresholds: torch.Tensor, bound: int, pd_bboxes, gt_bboxes,
               mask_gt, target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx,
               tiny_thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """Count one assigner call per size bucket into ``counts`` from its inputs and outputs (``AfterAssign``'s hook
    arguments), with the box area and overlap of ``loss_class`` (a ``SizeAdaptiveLoss``); return the (bs,
    num_anchors) target scores. The size-adaptive loss (``weigh``) and the stock observer count the same way.
    With ``tiny_thresholds`` (``size_tiny_thresholds``; ``counts`` (5, 6)) each object also counts in its AI-TOD bin."""
    areas = loss_class.box_areas(gt_bboxes)  # (bs, n_max_boxes) px²
    gt_bucket = size_buckets(areas, thresholds)  # (bs, n_max_boxes)
    if tiny_thresholds is not None:  # its AI-TOD column too: very tiny, tiny, or the unshown 16 px and above
        gt_bucket = torch.stack((gt_bucket, size_buckets(areas, tiny_thresholds) + AITOD_COLUMN), -1)  # (.., 2)
    score = anchor_scores(target_scores, target_labels)  # (bs, num_anchors)
    count_assignment(counts, loss_class.box_overlap, gt_bucket, mask_gt, pd_bboxes, target_bboxes, fg_mask,
                     target_gt_idx, score, bound)
    return score


def count_assignment(counts: torch.Tensor, overlap: Callable, gt_bucket: torch.Tensor, mask_gt: torch.Tensor,
                     pd_bboxes: torch.Tensor, target_bboxes: torch.Tensor, fg_mask: torch.Tensor,
                     target_gt_idx: torch.Tensor, score: torch.Tensor, bound: int) -> torch.Tensor:
    """``diagnostics.assignment_counts`` of one assignment into ``counts``, with ``overlap`` (``ciou``,
    ``rotated_overlap``) of the predicted and assigned boxes as the IoU; no host sync.

    Only the foreground is read: it is gathered into ``bound`` slots (``max_positives``, a few per object), usually far
    fewer than bs * num_anchors, and counted as one image whose objects are those of the whole batch (slots left over
    count as background). When the bound is not smaller, every anchor is read as it is.
    """
    if bound >= fg_mask.numel():
        iou = overlap(pd_bboxes, target_bboxes)  # (bs, num_anchors)
        return assignment_counts(gt_bucket, mask_gt, fg_mask, target_gt_idx, score, iou, out=counts)
    at, valid = _foreground_slots(fg_mask, bound)
    pick = [_pick(t, at).unsqueeze(0) for t in (target_gt_idx, score, pd_bboxes, target_bboxes)]  # (1, bound, ...)
    obj = at // fg_mask.shape[-1] * gt_bucket.shape[1] + pick[0]  # (1, bound) the object, over the batch
    gt_bucket = gt_bucket.reshape(1, -1, *gt_bucket.shape[2:])  # (1, bs * n_max_boxes[, k])
    return assignment_counts(gt_bucket, mask_gt.reshape(1, -1, 1), valid.unsqueeze(0), obj, pick[1],
                             overlap(pick[2], pick[3]), out=counts)


class SizeAdaptiveDetectionLoss(SizeAdaptiveLoss, v8DetectionLoss):
    """``v8DetectionLoss`` (detect) with the size-adaptive weighting."""


class SizeAdaptiveSegmentationLoss(SizeAdaptiveLoss, v8SegmentationLoss):
    """``v8SegmentationLoss`` (segment, YOLOv8/11/12): box part weighted, mask terms stock."""


class SizeAdaptiveSegmentLoss26(SizeAdaptiveLoss, SegmentLoss26):
    """``SegmentLoss26`` (YOLO26 segment, mask-aware assigner): box part weighted, mask terms stock."""


class SizeAdaptivePoseLoss(SizeAdaptiveLoss, v8PoseLoss):
    """``v8PoseLoss`` (pose, YOLOv8/11/12): box part weighted, keypoint terms stock."""


class SizeAdaptivePoseLoss26(SizeAdaptiveLoss, PoseLoss26):
    """``PoseLoss26`` (YOLO26 pose, OKS assigner, RLE): box part weighted, keypoint terms stock."""


class SizeAdaptiveOBBLoss(SizeAdaptiveLoss, v8OBBLoss):
    """``v8OBBLoss`` (oriented boxes): the area is the rotated box's w·h; the angle term follows ``box``."""

    box_areas = staticmethod(rotated_box_areas)
    box_overlap = staticmethod(rotated_overlap)

    def calculate_angle_loss(self, pred_bboxes, target_bboxes, fg_mask, weight, target_scores_sum, lambda_val=3):
        """``v8OBBLoss.calculate_angle_loss`` (8.4.190) with each foreground anchor's ``weight`` times its own weight.

        ``weight`` (num_fg,) is upstream's stock per-anchor target-score sum, in foreground order.
        """
        if "box" in self.settings.terms:
            weight = weight * _at_foreground(self.anchor_weights, fg_mask, weight.shape[0]).to(weight.dtype)
        return super().calculate_angle_loss(pred_bboxes, target_bboxes, fg_mask, weight, target_scores_sum, lambda_val)


SIZE_ADAPTIVE_LOSSES: dict[type, type] = {  # upstream loss class -> ours; exact types, checked in test_contract.py
    v8DetectionLoss: SizeAdaptiveDetectionLoss,
    v8SegmentationLoss: SizeAdaptiveSegmentationLoss,
    SegmentLoss26: SizeAdaptiveSegmentLoss26,
    v8PoseLoss: SizeAdaptivePoseLoss,
    PoseLoss26: SizeAdaptivePoseLoss26,
    v8OBBLoss: SizeAdaptiveOBBLoss,
}


def build_criterion(model: nn.Module, settings: SizeSettings | None = None):
    """Our counterpart of the model's ``init_criterion`` (ultralytics 8.4.190): the same loss class, size-adaptive.

    The model's own ``init_criterion`` picks the upstream class (per task and head, e.g. ``SegmentLoss26`` for YOLO26
    segment); end-to-end heads (YOLO26) get ``E2ELoss`` with the size-adaptive loss in both branches.

    Raises:
        TypeError: the model's loss has no size-adaptive counterpart (classify, semantic, depth, RT-DETR, ...).
    """
    stock = model.init_criterion()
    end2end = isinstance(stock, E2ELoss)
    upstream = type(stock.one2many if end2end else stock)
    if upstream not in SIZE_ADAPTIVE_LOSSES:
        raise TypeError(
            f"the size-adaptive loss has no counterpart of {upstream.__name__} ({type(model).__name__}); it supports "
            f"{', '.join(c.__name__ for c in SIZE_ADAPTIVE_LOSSES)}"
        )
    loss_fn = functools.partial(SIZE_ADAPTIVE_LOSSES[upstream], settings=settings)
    return E2ELoss(model, loss_fn=loss_fn) if end2end else loss_fn(model)


def counted_loss(criterion) -> SizeAdaptiveLoss | None:
    """The loss whose assignment the diagnostics report: the criterion itself, or an ``E2ELoss``'s one-to-many branch.

    The one-to-many branch (top-10 assignment, as in YOLOv8/11/12) is the one comparable across families; the
    one-to-one branch gives each object at most one positive by design.
    """
    loss = getattr(criterion, "one2many", criterion)
    return loss if isinstance(loss, SizeAdaptiveLoss) else None


def size_losses(criterion) -> list[SizeAdaptiveLoss]:
    """The size-adaptive losses inside a criterion: itself, or both branches of an ``E2ELoss``."""
    parts = [criterion, getattr(criterion, "one2many", None), getattr(criterion, "one2one", None)]
    return [p for p in parts if isinstance(p, SizeAdaptiveLoss)]
