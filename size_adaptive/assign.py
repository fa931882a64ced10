"""``size_assign`` and ``size_min_pos``: Ultralytics' task-aligned assigners, patched where small objects lose.

Follows ultralytics 8.4.190 ``TaskAlignedAssigner._forward``: candidates in each object's (enlarged) region
(``select_candidates_in_gts``), the alignment metric s^alpha · overlap^beta (``get_box_metrics``), the top-k candidates
per object (``get_pos_mask``), one object per anchor (``select_highest_overlaps``), then the targets and the target
scores, normalised per object by its best overlap. ``SizeAssigner`` overrides four of those units:

- ``fixed`` (``get_pos_mask``): upstream ranks every anchor by the metric, and CIoU is clamped at 0, so an object whose
  candidates' predictions do not overlap it has an all-zero metric; top-k then picks arbitrary anchors among the ties
  and the region mask removes them: the object gets no positive. Here candidates are ranked by the metric and, where
  it is zero, by the distance of the anchor to the object's centre, so an object with any anchor centre in its region
  gets positives. Where the metric is positive the order is upstream's.
- ``fixed`` (``select_highest_overlaps``): upstream gives an anchor claimed by several objects to the argmax of the
  overlaps over *all* objects, which can be one that never claimed it when the claimants' overlaps are zero. Here it
  goes to the claimant with the highest overlap (on a tie, the nearest centre: the best ranked).
- ``nwd`` (``iou_calculation``): ``fixed``, with NWD (C in network-input px) instead of CIoU (ProbIoU for OBB) as the
  overlap, in the metric and in the target-score normalisation; NWD is never zero.
- ``size_min_pos=k`` (end of ``select_highest_overlaps``): an object with fewer than k positives gets free anchors
  (positive for no object) from its region, best ranked first, up to k; the one-to-one branch (``topk2`` 1) is capped
  at 1. An object without a free anchor in its region stays short.

A positive whose object's overlap is zero everywhere gets target score 0 from upstream's normalisation (``fixed``
does not change the scores): it is foreground for the mask and keypoint terms, but its classification target is 0
and its box and DFL terms weigh 0. NWD gives such objects a score.

Cost: upstream's ``get_box_metrics`` already lists the candidate pairs (``nonzero``, its own host sync) and passes
them to ``pair_overlaps``; the override keeps them, so the distances, the ranks of the zero-metric candidates, the
contests and the top-up are computed on those N pairs (a few per object) rather than on every (object, anchor) pair.
What stays dense is one fill of the rank tensor (``fixed``, ``nwd``), its top-k (in place of upstream's top-k of the
metric) and the column max of ``mask_pos`` that upstream takes too. Everything runs on the device without a host sync
of ours and keeps upstream's shapes. YOLO26 segment and pose
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
        self._anc_points = anc_points  # for pair_overlaps, which get_box_metrics calls with the candidate pairs
        align_metric, overlaps = self.get_box_metrics(
            pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_in_gts * mask_gt, **extra
        )
        self._ranks, self._pair_ranks = candidate_ranks(align_metric, *self._pairs, dense=self.size_mode != "stock")
        ranks = align_metric if self.size_mode == "stock" else self._ranks  # stock: upstream's top-k, for the top-up
        mask_topk = self.select_topk_candidates(ranks, topk_mask=mask_gt.expand(-1, -1, self.topk).bool())
        mask_pos = mask_topk.mul_(mask_in_gts).mul_(mask_gt.bool())
        return mask_pos, align_metric, overlaps

    def pair_overlaps(self, indices, gt_bboxes, pd_bboxes, **extra):
        """Upstream's ``pair_overlaps`` (8.4.190) for the candidate pairs ``indices`` (batch, object, anchor), keeping
        the pairs and their anchor-to-centre distances for ``candidate_ranks``: (N,) each, no dense pass."""
        b, g, a = indices
        boxes = gt_bboxes.reshape(-1, gt_bboxes.shape[-1]).index_select(0, b * gt_bboxes.shape[1] + g)  # (N, 4|5)
        self._pairs = indices, pair_centre_distances(self._anc_points.index_select(0, a), boxes)  # ((b, g, a), (N,))
        return super().pair_overlaps(indices, gt_bboxes, pd_bboxes, **extra)

    def select_highest_overlaps(self, mask_pos, overlaps, n_max_boxes, align_metric):
        """``TaskAlignedAssigner.select_highest_overlaps`` (8.4.190): contested anchors to a claimant (``fixed``),
        top-k2 by rank, then the ``size_min_pos`` top-up."""
        pairs = self._pairs[0]
        if self.size_mode == "stock":
            target_gt_idx, fg_mask, mask_pos = super().select_highest_overlaps(
                mask_pos, overlaps, n_max_boxes, align_metric
            )
        else:
            pair_overlaps = overlaps.reshape(-1).index_select(0, flat_pairs(pairs, overlaps.shape)[0])
            mask_pos = resolve_contests(mask_pos, pairs, pair_overlaps, self._pair_ranks)
            if self.topk2 != self.topk:  # YOLO26's one-to-one branch: the best-ranked positive of each object
                top = torch.where(mask_pos.bool(), self._ranks, _FAR).topk(self.topk2, dim=-1).indices
                mask_pos = mask_pos * torch.zeros_like(mask_pos).scatter_(-1, top, 1)
            fg_mask, target_gt_idx = mask_pos.max(-2)
        if self.size_min_pos > 0:
            k = min(self.size_min_pos, self.topk2)  # mask_pos, fg_mask, target_gt_idx: fresh tensors, ours to update
            mask_pos, won = top_up(mask_pos.contiguous(), pairs, self._pair_ranks, k, fg_mask == 0, inplace=True)
            anchor = flat_pairs(pairs, mask_pos.shape)[1]  # the new positives were free: fg 0, object index 0 there
            fg_mask.view(-1).scatter_reduce_(0, anchor, won.to(fg_mask.dtype), "amax")
            target_gt_idx.view(-1).scatter_reduce_(0, anchor, torch.where(won, pairs[1], 0), "amax")
        return target_gt_idx, fg_mask, mask_pos


def pair_centre_distances(anc_points: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
    """Distance of each anchor point to its object's centre, px, float32: (N,).

    Args:
        anc_points: (N, 2) px.
        gt_bboxes: (N, 4) xyxy px or (N, 5) xywhr px.
    """
    centres = (gt_bboxes[:, :2] + gt_bboxes[:, 2:4]) / 2 if gt_bboxes.shape[-1] == 4 else gt_bboxes[:, :2]
    return (anc_points.float() - centres.float()).norm(dim=-1)


def flat_pairs(pairs: tuple, shape: torch.Size) -> tuple:
    """Flat positions (N,) of the pairs (batch, object, anchor) in a (bs, n_max_boxes, num_anchors) tensor, and of
    their anchors in a (bs, num_anchors) one: for ``index_select``/``index_copy_``, which cost a fraction of indexing
    with three index tensors on CPU."""
    b, g, a = pairs
    n, na = shape[-2], shape[-1]
    return (b * n + g) * na + a, b * na + a


def candidate_ranks(align_metric: torch.Tensor, indices: tuple, distances: torch.Tensor, dense: bool = True) -> tuple:
    """Rank keys (largest first) of each object's anchors: (N,) at the candidate pairs, and float32 (bs, n_max_boxes,
    num_anchors) (``None`` unless ``dense``).

    The metric where it is positive (upstream's order among them); candidates (the pairs ``indices``, anchors in the
    object's region) with a zero metric come next, nearest centre first, as -(1 + distance px); anchors outside the
    region and padding rows come last (-inf). Only the candidate pairs are computed: one fill of the output besides.

    Args:
        align_metric: (bs, n_max_boxes, num_anchors).
        indices: (batch, object, anchor) index tensors of the candidate pairs, (N,) each.
        distances: (N,) px, from ``pair_centre_distances``.
        dense: also return the dense ranks (for a top-k over all anchors).
    """
    flat = flat_pairs(indices, align_metric.shape)[0]
    metric = align_metric.reshape(-1).index_select(0, flat).float()  # (N,)
    pair_ranks = torch.where(metric > 0, metric, -1.0 - distances)
    if not dense:
        return None, pair_ranks
    ranks = torch.full(align_metric.shape, _FAR, dtype=torch.float32, device=align_metric.device)
    ranks.view(-1).index_copy_(0, flat, pair_ranks)
    return ranks, pair_ranks


def _grouped_best_first(group: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The order (N,) that groups the pairs by ``group`` (ascending) and puts the highest float32 ``key`` first within
    each group, ties in pair order: one stable sort of an int64 made of the group and an integer that orders like the
    key (IEEE 754 float32 bits, with the magnitude bits of negative values flipped)."""
    bits = key.float().contiguous().view(torch.int32).long()
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # increases with the key; -inf lowest
    return (group.long() * 2**32 + (2**31 - 1 - ordered)).argsort(stable=True)


def _first_best(slot: torch.Tensor, keys: list, g: torch.Tensor, slots: int, n: int) -> torch.Tensor:
    """(N,) bool: per ``slot`` (an anchor), the pair with the highest ``keys`` (compared in order: the first key, then
    the next among equals), and on a full tie the one of the lowest object index ``g`` (< n). A pair whose first key
    is -inf never wins."""
    top = None
    for key in keys:
        key = key if top is None else torch.where(top, key, _FAR)
        best = key.new_full((slots,), _FAR).scatter_reduce_(0, slot, key, "amax")
        won = (key == best.index_select(0, slot)) & (key > _FAR)
        top = won if top is None else top & won
    first = torch.full((slots,), n, device=g.device).scatter_reduce_(0, slot, torch.where(top, g, n), "amin")
    return top & (g == first.index_select(0, slot))


def resolve_contests(mask_pos: torch.Tensor, pairs: tuple, pair_overlaps: torch.Tensor,
                     pair_ranks: torch.Tensor) -> torch.Tensor:
    """An anchor claimed by several objects goes to the claimant with the highest overlap, on a tie (all 0, say) the
    best ranked (nearest centre), then the lowest object index; never to an object that did not claim it. Computed
    over the candidate pairs, which hold every positive.

    Args:
        mask_pos: (bs, n_max_boxes, num_anchors) 0/1, positive only at candidate pairs.
        pairs: (batch, object, anchor) index tensors of the candidate pairs, (N,) each, each pair once.
        pair_overlaps: (N,) the assigner's overlaps at the pairs.
        pair_ranks: (N,) their ranks (``candidate_ranks``).

    Returns:
        (bs, n_max_boxes, num_anchors) 0/1 of ``mask_pos``'s dtype, at most one object per anchor.
    """
    bs, n, na = mask_pos.shape
    g = pairs[1]
    flat, anchor = flat_pairs(pairs, mask_pos.shape)
    claimed = mask_pos.reshape(-1).index_select(0, flat).bool()  # (N,)
    claims = torch.zeros(bs * na, dtype=torch.int32, device=anchor.device).scatter_add_(0, anchor, claimed.int())
    won = _first_best(anchor, [torch.where(claimed, pair_overlaps.float(), _FAR), pair_ranks.float()], g, bs * na, n)
    keep = claimed & ((claims.index_select(0, anchor) == 1) | won)
    out = mask_pos.clone(memory_format=torch.contiguous_format)
    return out.view(-1).index_copy_(0, flat, keep.to(mask_pos.dtype)).view_as(mask_pos)


def top_up(mask_pos: torch.Tensor, pairs: tuple, pair_ranks: torch.Tensor, k: int,
           free: torch.Tensor | None = None, inplace: bool = False) -> tuple:
    """Give every object with fewer than ``k`` positives free anchors from its region, best ranked first, up to k.

    A free anchor is positive for no object; an anchor that several short objects would take goes to the one that
    ranks it highest (on an exact tie, the lowest object index). Only the candidate pairs (the anchors in each object's
    region, which hold every positive) are looked at, sorted per object by rank.

    Args:
        mask_pos: (bs, n_max_boxes, num_anchors) 0/1, at most one object per anchor, positive only at candidate pairs.
        pairs: (batch, object, anchor) index tensors of the candidate pairs, (N,) each, each pair once.
        pair_ranks: (N,) their ranks (``candidate_ranks``: larger is better).
        k: the positives each object should have.
        free: optional (bs, num_anchors) bool, the anchors positive for no object, when the caller has them.
        inplace: write the new positives into ``mask_pos`` (contiguous) rather than into a copy.

    Returns:
        The new mask, (bs, n_max_boxes, num_anchors) 0/1 of ``mask_pos``'s dtype, and (N,) bool: the pairs made
        positive.
    """
    bs, n, na = mask_pos.shape
    b, g = pairs[:2]
    if free is None:
        free = mask_pos.sum(-2, dtype=torch.int32) == 0  # (bs, num_anchors)
    flat, anchor = flat_pairs(pairs, mask_pos.shape)
    obj = b * n + g  # (N,) flat object id
    positive = mask_pos.reshape(-1).index_select(0, flat).long()
    count = torch.zeros(bs * n, dtype=torch.long, device=obj.device)
    need = (k - count.scatter_add(0, obj, positive)).clamp(min=0)  # (bs * n,) positives short of k
    key = torch.where(free.reshape(-1).index_select(0, anchor), pair_ranks.float(), _FAR)  # taken anchors rank last
    order = _grouped_best_first(obj, key)
    obj_sorted = obj.index_select(0, order)
    size = count.scatter_add(0, obj, torch.ones_like(obj))
    start = size.cumsum(0) - size  # (bs * n,) first slot of each object in the sorted order
    slot = torch.arange(len(order), device=obj.device) - start.index_select(0, obj_sorted)  # rank within its object
    wanted = slot < need.index_select(0, obj_sorted)  # in sorted order
    take = torch.zeros_like(wanted).scatter_(0, order, wanted)  # (N,) the wanted pairs (taken anchors: key -inf)
    won = _first_best(anchor, [torch.where(take, key, _FAR)], g, bs * na, n)
    out = mask_pos.view(-1) if inplace else mask_pos.flatten().clone()
    return out.scatter_add_(0, flat, won.to(mask_pos.dtype)).view_as(mask_pos), won


def _size_class(base: type) -> type:
    doc = f"``{base.__name__}`` with ``SizeAssigner``."
    return type(f"Size{base.__name__}", (SizeAssigner, base), {"__doc__": doc})


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
