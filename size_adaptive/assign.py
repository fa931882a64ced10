"""``size_assign`` and ``size_min_pos``: Ultralytics' task-aligned assigners, patched where small objects lose.

Follows ultralytics 8.4.190 ``TaskAlignedAssigner._forward``: candidates in each object's (enlarged) region
(``select_candidates_in_gts``), the alignment metric s^alpha · overlap^beta (``get_box_metrics``), the top-k candidates
per object (``get_pos_mask``), one object per anchor (``select_highest_overlaps``), then the targets and the target
scores, normalised per object by its best overlap. ``SizeAssigner`` overrides three of those units:

- ``fixed`` (``get_pos_mask``): upstream ranks every anchor by the metric, and CIoU is clamped at 0, so an object whose
  candidates' predictions do not overlap it has an all-zero metric; top-k then picks arbitrary anchors among the ties
  and the region mask removes them: the object gets no positive. Here candidates are ranked by the metric and, where
  it is zero, by the distance of the anchor to the object's centre, so an object with any anchor centre in its region
  gets positives. Where the metric is positive the order is upstream's.
- ``fixed`` (``select_highest_overlaps``): upstream gives an anchor claimed by several objects to the argmax of the
  overlaps over *all* objects, which can be one that never claimed it when the claimants' overlaps are zero. Here it
  goes to the claimant with the highest overlap (then the nearest centre).
- ``nwd`` (``iou_calculation``): ``fixed``, with NWD (C in network-input px) instead of CIoU (ProbIoU for OBB) as the
  overlap, in the metric and in the target-score normalisation; NWD is never zero.
- ``size_min_pos=k`` (end of ``select_highest_overlaps``): an object with fewer than k positives gets free anchors
  (positive for no object) from its region, best ranked first, up to k; the one-to-one branch (``topk2`` 1) is capped
  at 1. An object without a free anchor in its region stays short.

A positive whose object's overlap is zero everywhere gets target score 0 from upstream's normalisation (``fixed``
does not change the scores): it is foreground for the mask and keypoint terms, but its classification target is 0
and its box and DFL terms weigh 0. NWD gives such objects a score.

Everything runs on the device without a host sync of ours and keeps upstream's shapes. YOLO26 segment and pose
(``SegTaskAlignedAssigner``, ``PoseTaskAlignedAssigner``) mix mask IoU or keypoint OKS into the overlap: ``fixed`` and
``size_min_pos`` work there, ``nwd`` is refused by name (``check_assigner``).

Shapes (Ultralytics names): ``align_metric``, ``overlaps``, ``mask_pos``, ``mask_in_gts`` (bs, n_max_boxes,
num_anchors); ``anc_points`` (num_anchors, 2) px; ``gt_bboxes`` (bs, n_max_boxes, 4) xyxy px (OBB: 5, xywhr).
"""

from __future__ import annotations

import torch
from ultralytics.utils.tal import (
    PoseTaskAlignedAssigner,
    RotatedTaskAlignedAssigner,
    SegTaskAlignedAssigner,
    TaskAlignedAssigner,
)

from .nwd import nwd

_FAR = float("-inf")  # the rank of an anchor outside an object's region


class SizeAssigner:
    """Mixin in front of a ``TaskAlignedAssigner`` class: ``size_assign`` and ``size_min_pos``.

    Attributes (set by ``patch_assigner``):
        size_mode: ``"stock"``, ``"fixed"`` or ``"nwd"``.
        size_min_pos: positives to top each object up to (0: off).
        nwd_c: NWD's C in px (``nwd`` only).
    """

    size_mode, size_min_pos, nwd_c = "stock", 0, None

    def iou_calculation(self, gt_bboxes, pd_bboxes):
        """NWD (``nwd``) or upstream's clamped CIoU/ProbIoU (``TaskAlignedAssigner.iou_calculation``, 8.4.190)."""
        if self.size_mode == "nwd":
            return nwd(gt_bboxes, pd_bboxes, self.nwd_c).to(pd_bboxes.dtype)  # (N,)
        return super().iou_calculation(gt_bboxes, pd_bboxes)

    def get_pos_mask(self, pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt, **extra):
        """``TaskAlignedAssigner.get_pos_mask`` (8.4.190), with top-k over the ranks of ``candidate_ranks``."""
        mask_in_gts = self.select_candidates_in_gts(anc_points, gt_bboxes, mask_gt)  # (bs, n_max_boxes, num_anchors)
        align_metric, overlaps = self.get_box_metrics(
            pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_in_gts * mask_gt, **extra
        )
        self._ranks = candidate_ranks(align_metric, mask_in_gts & mask_gt.bool(), anc_points, gt_bboxes)
        ranks = align_metric if self.size_mode == "stock" else self._ranks  # stock: upstream's top-k, for the top-up
        mask_topk = self.select_topk_candidates(ranks, topk_mask=mask_gt.expand(-1, -1, self.topk).bool())
        mask_pos = mask_topk.mul_(mask_in_gts).mul_(mask_gt.bool())
        return mask_pos, align_metric, overlaps

    def select_highest_overlaps(self, mask_pos, overlaps, n_max_boxes, align_metric):
        """``TaskAlignedAssigner.select_highest_overlaps`` (8.4.190): contested anchors to a claimant (``fixed``),
        top-k2 by rank, then the ``size_min_pos`` top-up."""
        if self.size_mode == "stock":
            target_gt_idx, fg_mask, mask_pos = super().select_highest_overlaps(
                mask_pos, overlaps, n_max_boxes, align_metric
            )
        else:
            claimed = mask_pos.bool()
            contested = (mask_pos.sum(-2, keepdim=True) > 1).expand_as(claimed)  # (bs, n_max_boxes, num_anchors)
            key = torch.where(claimed, torch.where(overlaps > 0, overlaps.float(), self._ranks), _FAR)  # ranks <= -1
            best = torch.zeros_like(mask_pos).scatter_(1, key.argmax(1, keepdim=True), 1)  # one claimant per anchor
            mask_pos = torch.where(contested, best, mask_pos)
            if self.topk2 != self.topk:  # YOLO26's one-to-one branch: the best-ranked positive of each object
                top = torch.where(mask_pos.bool(), self._ranks, _FAR).topk(self.topk2, dim=-1).indices
                mask_pos = mask_pos * torch.zeros_like(mask_pos).scatter_(-1, top, 1)
        if self.size_min_pos > 0:
            mask_pos = top_up(mask_pos, self._ranks, min(self.size_min_pos, self.topk2))
        fg_mask, target_gt_idx = mask_pos.max(-2)
        return target_gt_idx, fg_mask, mask_pos


def centre_distances(anc_points: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
    """Distance of each anchor point to each object's centre, px: (bs, n_max_boxes, num_anchors).

    Args:
        anc_points: (num_anchors, 2) px.
        gt_bboxes: (bs, n_max_boxes, 4) xyxy px or (bs, n_max_boxes, 5) xywhr px.
    """
    centres = (gt_bboxes[..., :2] + gt_bboxes[..., 2:4]) / 2 if gt_bboxes.shape[-1] == 4 else gt_bboxes[..., :2]
    return (anc_points.float() - centres.float().unsqueeze(2)).square().sum(-1).sqrt()  # (bs, n_max_boxes, na)


def candidate_ranks(
    align_metric: torch.Tensor, candidates: torch.Tensor, anc_points: torch.Tensor, gt_bboxes: torch.Tensor
) -> torch.Tensor:
    """Rank keys (largest first) of each object's anchors, float32 (bs, n_max_boxes, num_anchors).

    The metric where it is positive (upstream's order among them); candidates (in the object's region) with a zero
    metric come next, nearest centre first, as -(1 + distance px); anchors outside the region and padding rows come
    last (-inf).
    """
    metric = align_metric.float()
    near = -1.0 - centre_distances(anc_points, gt_bboxes)  # (bs, n_max_boxes, num_anchors), <= -1
    return torch.where(metric > 0, metric, torch.where(candidates, near, _FAR))


def top_up(mask_pos: torch.Tensor, ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Give every object with fewer than ``k`` positives free anchors from its region, best ranked first, up to k.

    A free anchor is positive for no object; an anchor that several short objects would take goes to the one that
    ranks it highest. Anchors outside an object's region (rank -inf) are never taken.

    Args:
        mask_pos: (bs, n_max_boxes, num_anchors) 0/1, at most one object per anchor.
        ranks: (bs, n_max_boxes, num_anchors) from ``candidate_ranks``; -inf outside the region and on padding rows.
        k: the positives each object should have.

    Returns:
        (bs, n_max_boxes, num_anchors) 0/1, of ``mask_pos``'s dtype.
    """
    k = min(k, mask_pos.shape[-1])
    free = (mask_pos.sum(-2, keepdim=True) == 0).expand_as(mask_pos)  # (bs, n_max_boxes, num_anchors)
    need = (k - mask_pos.sum(-1, keepdim=True)).clamp(min=0)  # (bs, n_max_boxes, 1)
    key = torch.where(free, ranks, _FAR)
    values, idx = key.topk(k, dim=-1)  # (bs, n_max_boxes, k) the best free anchors, best first
    take = (torch.arange(k, device=idx.device) < need) & (values > _FAR)  # (bs, n_max_boxes, k)
    wanted = torch.zeros_like(key).scatter_(-1, idx, take.to(key.dtype)).bool()  # (bs, n_max_boxes, num_anchors)
    claim = torch.where(wanted, key, _FAR)
    winner = torch.zeros_like(mask_pos).scatter_(1, claim.argmax(1, keepdim=True), 1).bool()  # one object per anchor
    return mask_pos + (wanted & winner).to(mask_pos.dtype)


def _size_class(base: type) -> type:
    return type(f"Size{base.__name__}", (SizeAssigner, base), {"__doc__": f"``{base.__name__}`` with ``SizeAssigner``."})


SIZE_ASSIGNERS = {base: _size_class(base) for base in (
    TaskAlignedAssigner, RotatedTaskAlignedAssigner, SegTaskAlignedAssigner, PoseTaskAlignedAssigner)}
NWD_REFUSED = {  # assigners whose overlap is not a box overlap: size_assign=nwd is refused for them
    SegTaskAlignedAssigner: "YOLO26 segment (its overlap mixes in mask IoU)",
    PoseTaskAlignedAssigner: "YOLO26 pose (its overlap is keypoint OKS)",
}


def check_assigner(assigner: torch.nn.Module, mode: str) -> None:
    """Refuse ``size_assign=nwd`` for an assigner whose overlap is not a box overlap (``ValueError`` naming it)."""
    base = type(assigner)
    if base not in SIZE_ASSIGNERS:
        raise ValueError(
            f"size_assign: expected an assigner of {', '.join(b.__name__ for b in SIZE_ASSIGNERS)}; got "
            f"{base.__name__}"
        )
    if mode == "nwd" and base in NWD_REFUSED:
        raise ValueError(
            f"size_assign: expected stock or fixed for {NWD_REFUSED[base]}; got nwd (NWD replaces a box overlap only)"
        )


def check_model_assign(model: torch.nn.Module, mode: str) -> None:
    """Refuse ``size_assign=nwd`` for a model whose head trains with a mask- or keypoint-overlap assigner (YOLO26
    segment and pose), before a trainer is built: the same ``ValueError`` as ``check_assigner``."""
    from ultralytics.nn.modules.head import Pose26, Segment26

    head = model.model[-1] if hasattr(model, "model") else None
    refused = {Segment26: SegTaskAlignedAssigner, Pose26: PoseTaskAlignedAssigner}
    for cls, assigner in refused.items():
        if mode == "nwd" and isinstance(head, cls):
            raise ValueError(f"size_assign: expected stock or fixed for {NWD_REFUSED[assigner]}; got nwd (NWD "
                             f"replaces a box overlap only)")


def patch_assigner(assigner: torch.nn.Module, mode: str, min_pos: int, nwd_c: float | None) -> torch.nn.Module:
    """Turn a stock assigner into its ``SizeAssigner`` counterpart in place (same attributes) and return it."""
    check_assigner(assigner, mode)
    assigner.__class__ = SIZE_ASSIGNERS[type(assigner)]
    assigner.size_mode, assigner.size_min_pos, assigner.nwd_c = mode, min_pos, nwd_c
    return assigner
