"""``size_assign`` and ``size_min_pos``: Ultralytics' task-aligned assigners, patched where small objects lose.

Follows ultralytics 8.4.190 ``TaskAlignedAssigner._forward``: candidates in each object's (enlarged) region
(``select_candidates_in_gts``), the alignment metric s^alpha · overlap^beta (``get_box_metrics``, which lists the
candidate pairs and hands them to ``pair_overlaps``), the top-k candidates per object (``select_topk_candidates``), one
object per anchor (``select_highest_overlaps``), then the targets and the target scores, normalised per object by its
best overlap. Each lever of ``SizeAssigner`` wraps one of those units:

- ``fixed`` (``select_topk_candidates``): upstream ranks every anchor by the metric, and CIoU is clamped at 0, so an
  object whose candidates' predictions do not overlap it has an all-zero metric; top-k then picks arbitrary anchors
  among the ties and the region mask removes them: the object gets no positive. Here upstream's top-k runs over rank
  keys (``candidate_ranks``): the metric where it is positive (upstream's order), then the candidates with a zero
  metric, nearest centre first, then the anchors outside the region.
- ``fixed`` (``select_highest_overlaps``): upstream gives an anchor claimed by several objects to the argmax of the
  overlaps over *all* objects, which can be one that never claimed it when the claimants' overlaps are zero. Here it
  goes to the claimant with the highest overlap (on a tie, the nearest centre: the best ranked), and YOLO26's top-k2
  keeps each object's best-ranked positives. Both rules are upstream's unit, so this lever replaces it on the pairs
  (``_select_claimants``) rather than calling it: its dense contest step would then have nothing to do, at a cost.
- ``nwd`` (``iou_calculation``): ``fixed``, with NWD (C in network-input px, or C = k·sqrt(w·h) of each object with
  ``size_nwd_c=relative``) instead of CIoU (ProbIoU for OBB) as the overlap, in the metric and in the target-score
  normalisation; NWD is never zero.
- ``nwd_small`` (``iou_calculation``): ``fixed``, with NWD as the overlap of the objects of the small bucket (side
  sqrt(w·h) below the small/medium threshold in network-input px, as the weighting) and upstream's CIoU (ProbIoU) for
  the others. Each object's metric and target scores use its own overlap. A contested anchor
  (``resolve_contests``) goes to a claimant of the small bucket first, so that NWD and CIoU values are never
  compared with each other; among claimants of one bucket, the highest overlap (one measure), then the best rank.
- ``simd`` (``iou_calculation``): ``fixed``, with SimD (``size_adaptive.simd``, constants m, n fitted by the trainer
  on the training labels) as the overlap; axis-aligned boxes only (refused for OBB).
- ``size_min_pos=k`` (``select_highest_overlaps``, after the above): an object with fewer than k positives gets free
  anchors (positive for no object) from its region, best ranked first, up to k; the one-to-one branch (``topk2`` 1) is
  capped at 1. An object without a free anchor in its region stays short.

A positive whose object's overlap is zero everywhere gets target score 0 from upstream's normalisation (``fixed``
does not change the scores): foreground for the mask and keypoint terms, 0 for cls, box and DFL. NWD gives it a score.

The call's record (``Candidates``): the levers need the candidate pairs, which upstream lists inside
``get_box_metrics`` and passes to ``pair_overlaps`` only; ``select_topk_candidates(metrics, topk_mask)`` and
``select_highest_overlaps(mask_pos, overlaps, n_max_boxes, align_metric)`` have no argument to carry them. So the one
override that spans the call, ``_forward``, creates a fresh record, ``pair_overlaps`` fills it, the levers read it
(each derives its ranks from the metric it is given), and ``_forward`` deletes it when the call returns or raises.
Outside a call there is none to read (``RuntimeError``).

Cost: the distances, ranks, contests and top-up are computed on the N candidate pairs (a few per object) that upstream
lists anyway (``nonzero``, its own host sync), not on every (object, anchor) pair; what stays dense is one fill of the
rank keys, upstream's top-k of them and the column max of ``mask_pos``. No host sync of ours; upstream's shapes.
YOLO26 segment and pose (``SegTaskAlignedAssigner``, ``PoseTaskAlignedAssigner``) mix mask IoU or keypoint OKS into
the overlap: ``fixed`` and ``size_min_pos`` work there, ``nwd``, ``nwd_small`` and ``simd`` are refused by name
(``check_assigner``).

Shapes (Ultralytics names): ``align_metric``, ``overlaps``, ``mask_pos`` (bs, n_max_boxes, num_anchors);
``anc_points`` (num_anchors, 2) px; ``gt_bboxes`` (bs, n_max_boxes, 4) xyxy px (OBB: 5, xywhr); the candidate pairs
(batch, object, anchor) and their values (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ultralytics.utils.tal import (
    PoseTaskAlignedAssigner,
    RotatedTaskAlignedAssigner,
    SegTaskAlignedAssigner,
    TaskAlignedAssigner,
)

from .nwd import nwd, relative_c
from .settings import ASSIGNERS
from .simd import simd

_FAR = float("-inf")  # the rank of an anchor outside an object's region


@dataclass
class Candidates:
    """The record of one assignment call: its candidate pairs and their anchor-to-centre distances. Created empty by
    ``SizeAssigner._forward``, filled by ``pair_overlaps``, read by the levers, deleted when the call ends (the module
    docstring says why it is not an argument).

    Attributes:
        anc_points: (num_anchors, 2) px, the call's anchor points.
        indices: (batch, object, anchor) index tensors of the candidate pairs, (N,) each, each pair once; ``None``
            until upstream's ``get_box_metrics`` has listed them.
        distances: (N,) px, float32: each pair's anchor to its object's centre (``pair_centre_distances``).
        small_side: the small/medium threshold, px (``nwd_small`` only; else ``None``).
        small: (N,) bool, each pair's object in the small bucket (``nwd_small`` only; else ``None``).
    """

    anc_points: torch.Tensor
    indices: tuple | None = None
    distances: torch.Tensor | None = None
    small_side: float | None = None
    small: torch.Tensor | None = None

    def add_pairs(self, indices: tuple, gt_bboxes: torch.Tensor) -> None:
        """Record the call's candidate pairs ``indices`` and their distances; ``gt_bboxes`` (bs, n_max_boxes, 4|5)."""
        if self.indices is not None:
            raise RuntimeError("SizeAssigner: a second list of candidate pairs in one assignment call")
        b, g, a = indices
        boxes = gt_bboxes.reshape(-1, gt_bboxes.shape[-1]).index_select(0, b * gt_bboxes.shape[1] + g)  # (N, 4|5)
        self.indices, self.distances = indices, pair_centre_distances(self.anc_points.index_select(0, a), boxes)
        if self.small_side is not None:
            self.small = is_small(boxes, self.small_side)

    def ranks(self, align_metric: torch.Tensor, dense: bool = False) -> tuple:
        """``candidate_ranks`` of the recorded pairs under ``align_metric``: (dense ranks or ``None``, pair ranks)."""
        return candidate_ranks(align_metric, self.indices, self.distances, dense=dense)


class SizeAssigner:
    """Mixin in front of a ``TaskAlignedAssigner`` class: ``size_assign`` and ``size_min_pos``.

    Each lever wraps one upstream unit (ultralytics 8.4.190): ``iou_calculation`` (``nwd``), ``select_topk_candidates``
    (the ranking of ``fixed`` and ``nwd``), ``select_highest_overlaps`` (the contests of ``fixed`` and ``nwd``, then the
    ``size_min_pos`` top-up). ``_forward`` and ``pair_overlaps`` keep the call's record (``Candidates``).

    Attributes (set by ``patch_assigner``):
        size_mode: ``"stock"``, ``"fixed"``, ``"nwd"``, ``"nwd_small"`` or ``"simd"``.
        size_min_pos: positives to top each object up to (0: off).
        size_nwd_input_c: NWD's C in network-input px, as the trainer resolved it (``nwd``, ``nwd_small``; ``None``
            with ``size_nwd_k``).
        size_nwd_k: k of the relative C = k·sqrt(w·h) of each object (``size_nwd_c=relative``), else ``None``.
        size_small_side: the small/medium threshold in network-input px (``nwd_small``).
        size_simd_mn: SimD's (m, n) (``simd``).
    """

    size_mode, size_min_pos, size_nwd_input_c, size_nwd_k = "stock", 0, None, None
    size_small_side: float | None = None
    size_simd_mn: tuple[float, float] | None = None
    refused: dict[str, str] = {}  # size_assign mode -> the model it is refused for, and why (``check_assigner``)
    _call: Candidates | None = None  # the record of the call in progress: an instance attribute only inside _forward

    def _forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        """``TaskAlignedAssigner._forward`` (8.4.190) with a fresh record of the call, deleted when it returns or
        raises (upstream's out-of-memory retry calls this once per image: one record each)."""
        self._call = Candidates(anc_points, small_side=self.size_small_side if self.size_mode == "nwd_small" else None)
        try:
            return super()._forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)
        finally:
            del self._call

    def pair_overlaps(self, indices, gt_bboxes, pd_bboxes, **extra):
        """Upstream's ``pair_overlaps`` (8.4.190) of the candidate pairs ``indices`` that ``get_box_metrics`` lists,
        recording them and their distances in the call's record: (N,) each, no dense pass."""
        if self._call is None:
            raise RuntimeError("SizeAssigner: pair_overlaps called outside an assignment call (_forward)")
        self._call.add_pairs(indices, gt_bboxes)
        return super().pair_overlaps(indices, gt_bboxes, pd_bboxes, **extra)

    def iou_calculation(self, gt_bboxes, pd_bboxes):
        """NWD (``nwd``), SimD (``simd``), NWD for small objects and CIoU/ProbIoU for the rest (``nwd_small``), or
        upstream's clamped CIoU/ProbIoU (``TaskAlignedAssigner.iou_calculation``, 8.4.190); (N,) pairs."""
        if self.size_mode == "simd":
            return simd(gt_bboxes, pd_bboxes, *self.size_simd_mn).to(pd_bboxes.dtype)
        if self.size_mode not in ("nwd", "nwd_small"):
            return super().iou_calculation(gt_bboxes, pd_bboxes)
        c = self.size_nwd_input_c if self.size_nwd_k is None else relative_c(gt_bboxes, self.size_nwd_k)
        overlap = nwd(gt_bboxes, pd_bboxes, c).to(pd_bboxes.dtype)
        if self.size_mode == "nwd_small":
            overlap = torch.where(is_small(gt_bboxes, self.size_small_side), overlap,
                                  super().iou_calculation(gt_bboxes, pd_bboxes))
        return overlap

    def select_topk_candidates(self, metrics, topk_mask=None):
        """``TaskAlignedAssigner.select_topk_candidates`` (8.4.190) of the rank keys (``fixed``, ``nwd``): upstream's
        top-k, with the zero-metric candidates ranked by centre distance rather than tied with every other anchor."""
        if self.size_mode != "stock":
            metrics = self._candidates().ranks(metrics, dense=True)[0]  # float32 (bs, n_max_boxes, num_anchors)
        return super().select_topk_candidates(metrics, topk_mask)

    def select_highest_overlaps(self, mask_pos, overlaps, n_max_boxes, align_metric):
        """``TaskAlignedAssigner.select_highest_overlaps`` (8.4.190) (``stock``) or its counterpart on the candidate
        pairs (``fixed``, ``nwd``: ``_select_claimants``), then the ``size_min_pos`` top-up."""
        call = self._candidates()
        pair_ranks = call.ranks(align_metric)[1]  # (N,)
        if self.size_mode == "stock":
            out = super().select_highest_overlaps(mask_pos, overlaps, n_max_boxes, align_metric)
        else:
            out = self._select_claimants(mask_pos, overlaps, align_metric, call, pair_ranks)
        target_gt_idx, fg_mask, mask_pos = out
        if self.size_min_pos > 0:  # mask_pos, fg_mask, target_gt_idx: fresh tensors, ours to update
            k, pairs = min(self.size_min_pos, self.topk2), call.indices
            mask_pos, won = top_up(mask_pos.contiguous(), pairs, pair_ranks, k, fg_mask == 0, inplace=True)
            anchor = flat_pairs(pairs, mask_pos.shape)[1]  # the new positives were free: fg 0, object index 0 there
            fg_mask.view(-1).scatter_reduce_(0, anchor, won.to(fg_mask.dtype), "amax")
            target_gt_idx.view(-1).scatter_reduce_(0, anchor, torch.where(won, pairs[1], 0), "amax")
        return target_gt_idx, fg_mask, mask_pos

    def _select_claimants(self, mask_pos, overlaps, align_metric, call: Candidates, pair_ranks):
        """Upstream's ``select_highest_overlaps`` (8.4.190) with both its rules replaced: a contested anchor goes to
        the best of its claimants (``resolve_contests``), and the top-k2 (YOLO26's one-to-one branch) keeps each
        object's best-ranked positives. Its outputs: target_gt_idx, fg_mask (bs, num_anchors) and mask_pos.

        Upstream's method is not called after the contests: its contest step (a sum, a max and a select over every
        (object, anchor) pair) would find nothing left to do, at about a quarter of a stock loss call on CPU
        (``scripts/bench_loss.py``'s setup, one thread: the loss ratio of ``fixed`` to stock 1.06 through it, 0.89
        without).
        """
        pair_overlaps = overlaps.reshape(-1).index_select(0, flat_pairs(call.indices, overlaps.shape)[0])  # (N,)
        mask_pos = resolve_contests(mask_pos, call.indices, pair_overlaps, pair_ranks, first=call.small)
        if self.topk2 != self.topk:
            ranks = call.ranks(align_metric, dense=True)[0]  # (bs, n_max_boxes, num_anchors)
            top = torch.where(mask_pos.bool(), ranks, _FAR).topk(self.topk2, dim=-1).indices
            mask_pos = mask_pos * torch.zeros_like(mask_pos).scatter_(-1, top, 1)
        # the column max gives the fg flag and the object index; as upstream, in int64 on NPU (no int8 max there)
        fg_mask, target_gt_idx = (mask_pos.to(torch.int64) if mask_pos.device.type == "npu" else mask_pos).max(-2)
        return target_gt_idx, fg_mask, mask_pos

    def max_positives(self, n_objects: int) -> int:
        """A bound on the positives of one call for ``n_objects`` object rows (bs * n_max_boxes): each is among an
        object's top-k candidates (contests and top-k2 only remove) or one of its top-up anchors (at most top-k2)."""
        return n_objects * (self.topk + min(self.size_min_pos, self.topk2))

    def _candidates(self) -> Candidates:
        """The current call's record, its pairs listed; a ``RuntimeError`` outside a call."""
        if self._call is None or self._call.indices is None:
            raise RuntimeError("SizeAssigner: no candidate pairs of a current call (a lever ran outside _forward, or "
                               "upstream no longer lists them through pair_overlaps first: see tests/test_assign.py)")
        return self._call


def is_small(gt_bboxes: torch.Tensor, small_side: float) -> torch.Tensor:
    """(N,) bool: boxes (N, 4) xyxy or (N, 5) xywhr px whose side sqrt(w·h) is below ``small_side`` px: the small
    bucket of the weighting (``weighting.size_buckets``), from the area."""
    wh = gt_bboxes[:, 2:4] - gt_bboxes[:, :2] if gt_bboxes.shape[-1] == 4 else gt_bboxes[:, 2:4]
    return (wh[:, 0] * wh[:, 1]).float() < small_side**2


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
                     pair_ranks: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """An anchor claimed by several objects goes to the claimant with the highest overlap, on a tie (all 0, say) the
    best ranked (nearest centre), then the lowest object index; never to an object that did not claim it. With
    ``first``, the claimants it flags come before all others (``nwd_small``: the small objects, so that their NWD is
    only compared with NWD). Computed over the candidate pairs, which hold every positive.

    Args:
        mask_pos: (bs, n_max_boxes, num_anchors) 0/1, positive only at candidate pairs.
        pairs: (batch, object, anchor) index tensors of the candidate pairs, (N,) each, each pair once.
        pair_overlaps: (N,) the assigner's overlaps at the pairs.
        pair_ranks: (N,) their ranks (``candidate_ranks``).
        first: optional (N,) bool, the pairs whose object takes precedence.

    Returns:
        (bs, n_max_boxes, num_anchors) 0/1 of ``mask_pos``'s dtype, at most one object per anchor.
    """
    bs, n, na = mask_pos.shape
    g = pairs[1]
    flat, anchor = flat_pairs(pairs, mask_pos.shape)
    claimed = mask_pos.reshape(-1).index_select(0, flat).bool()  # (N,)
    claims = torch.zeros(bs * na, dtype=torch.int32, device=anchor.device).scatter_add_(0, anchor, claimed.int())
    keys = [pair_overlaps.float(), pair_ranks.float()] if first is None else [first.float(), pair_overlaps.float(),
                                                                             pair_ranks.float()]
    keys[0] = torch.where(claimed, keys[0], _FAR)
    won = _first_best(anchor, keys, g, bs * na, n)
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


class SizeTaskAlignedAssigner(SizeAssigner, TaskAlignedAssigner):
    """``TaskAlignedAssigner`` with the size levers: detect, and YOLOv8/11/12 segment and pose (CIoU overlap)."""


class SizeRotatedTaskAlignedAssigner(SizeAssigner, RotatedTaskAlignedAssigner):
    """``RotatedTaskAlignedAssigner`` with the size levers (OBB): xywhr boxes, ProbIoU overlap, or NWD of the rotated
    Gaussians (``nwd``, ``nwd_small``); the distances are to the boxes' centres. ``simd`` is refused: SimD is
    defined on axis-aligned boxes."""

    refused = {"simd": "OBB (SimD is defined on axis-aligned boxes)"}


class SizeSegTaskAlignedAssigner(SizeAssigner, SegTaskAlignedAssigner):
    """``SegTaskAlignedAssigner`` with the size levers (YOLO26 segment): ``fixed`` and ``size_min_pos``; ``nwd``,
    ``nwd_small`` and ``simd`` are refused, as they would replace only the box part of an overlap that mixes in mask
    IoU."""

    refused = dict.fromkeys(("nwd", "nwd_small", "simd"), "YOLO26 segment (its overlap mixes in mask IoU; these "
                            "replace a box overlap only)")


class SizePoseTaskAlignedAssigner(SizeAssigner, PoseTaskAlignedAssigner):
    """``PoseTaskAlignedAssigner`` with the size levers (YOLO26 pose): ``fixed`` and ``size_min_pos``; ``nwd``,
    ``nwd_small`` and ``simd`` are refused, as the overlap is keypoint OKS (the box IoU only for objects without
    visible keypoints)."""

    refused = dict.fromkeys(("nwd", "nwd_small", "simd"), "YOLO26 pose (its overlap is keypoint OKS; these replace "
                            "a box overlap only)")


SIZE_ASSIGNERS: dict[type, type] = {  # upstream assigner class -> ours; exact types
    TaskAlignedAssigner: SizeTaskAlignedAssigner,
    RotatedTaskAlignedAssigner: SizeRotatedTaskAlignedAssigner,
    SegTaskAlignedAssigner: SizeSegTaskAlignedAssigner,
    PoseTaskAlignedAssigner: SizePoseTaskAlignedAssigner,
}


def max_positives(assigner: torch.nn.Module, n_objects: int) -> int:
    """A bound on the positives of one call of ``assigner`` (upstream's or patched) for ``n_objects`` object rows: a
    ``SizeAssigner``'s own (``SizeAssigner.max_positives``), else upstream's top-k per object."""
    if isinstance(assigner, SizeAssigner):
        return assigner.max_positives(n_objects)
    return n_objects * assigner.topk


def _check_mode(size_class: type, mode: str) -> None:
    """The refusal of a ``size_assign`` mode that ``size_class`` does not take (``SizeAssigner.refused``)."""
    if mode in size_class.refused:
        allowed = [m for m in ASSIGNERS if m not in size_class.refused]
        raise ValueError(f"size_assign: expected one of {', '.join(allowed)} for {size_class.refused[mode]}; got "
                         f"{mode}")


def check_assigner(assigner: torch.nn.Module, mode: str) -> None:
    """Refuse a ``size_assign`` mode the assigner does not take (NWD and SimD where the overlap is not a box overlap,
    SimD on rotated boxes): a ``ValueError`` naming it."""
    base = type(assigner)
    if base not in SIZE_ASSIGNERS:
        raise ValueError(
            f"size_assign: expected an assigner of {', '.join(b.__name__ for b in SIZE_ASSIGNERS)}; got "
            f"{base.__name__}"
        )
    _check_mode(SIZE_ASSIGNERS[base], mode)


def check_model_assign(model: torch.nn.Module, mode: str) -> None:
    """Refuse a ``size_assign`` mode for a model whose head trains with an assigner that does not take it (YOLO26
    segment and pose: a mask- or keypoint-overlap; OBB: rotated boxes), before a trainer is built: the same
    ``ValueError`` as ``check_assigner``."""
    from ultralytics.nn.modules.head import OBB, Pose26, Segment26

    head = model.model[-1] if hasattr(model, "model") else None
    for cls, assigner in ((Segment26, SegTaskAlignedAssigner), (Pose26, PoseTaskAlignedAssigner),
                          (OBB, RotatedTaskAlignedAssigner)):
        if isinstance(head, cls):
            _check_mode(SIZE_ASSIGNERS[assigner], mode)
            return


def patch_assigner(assigner: torch.nn.Module, mode: str, min_pos: int, nwd_input_c: float | None,
                   nwd_k: float | None = None, small_side: float | None = None,
                   simd_mn: tuple[float, float] | None = None) -> torch.nn.Module:
    """Turn a stock assigner into its ``SizeAssigner`` counterpart in place (same attributes) and return it; the
    arguments are the ``SizeAssigner`` attributes of the same names (``size_*``)."""
    check_assigner(assigner, mode)
    needed = {"nwd_small": ("small_side", small_side), "simd": ("simd_mn", simd_mn)}.get(mode)
    if needed and needed[1] is None:
        raise ValueError(f"size_assign: {mode} needs {needed[0]} (resolved by SizeAdaptiveTrainer); got None")
    assigner.__class__ = SIZE_ASSIGNERS[type(assigner)]
    assigner.size_mode, assigner.size_min_pos, assigner.size_nwd_input_c = mode, min_pos, nwd_input_c
    assigner.size_nwd_k, assigner.size_small_side, assigner.size_simd_mn = nwd_k, small_side, simd_mn
    return assigner
