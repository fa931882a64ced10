"""``size_assign`` and ``size_min_pos`` on hand-built assignments: who gets positives, which object an anchor goes to.

Geometry used below (imgsz 64, strides 8/16/32): anchor centres lie at 4, 12, ..., 60 px (stride 8), 8, 24, 40, 56
(16) and 16, 48 (32). Ultralytics 8.4.190 enlarges boxes with a side under ``stride_val`` (16 px) to 16 px around
their centre when it picks candidates, so a 6x6 px box at (30, 30)-(36, 36) has the candidate region (25, 25)-(41,
41): stride-8 centres at 28 and 36 on each axis (4 anchors) and the stride-16 centre (40, 40), 5 candidates.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections import Counter

import pytest
import torch
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss
from ultralytics.utils.tal import (
    PoseTaskAlignedAssigner,
    RotatedTaskAlignedAssigner,
    SegTaskAlignedAssigner,
    TaskAlignedAssigner,
    make_anchors,
)

import helpers as h
from size_adaptive.assign import (
    Candidates,
    SizeAssigner,
    candidate_ranks,
    pair_centre_distances,
    patch_assigner,
    resolve_contests,
)
from size_adaptive.assign import top_up as _top_up
from size_adaptive.diagnostics import OBJECTS, POSITIVES, SCORE, UNASSIGNED
from size_adaptive.loss import SizeAdaptiveDetectionLoss, build_criterion

IMGSZ = 64
_FEATS = [torch.zeros(1, 1, IMGSZ // s, IMGSZ // s) for s in (8, 16, 32)]
_ANC, _STRIDE = make_anchors(_FEATS, torch.tensor([8.0, 16.0, 32.0]))
ANCHORS_PX = _ANC * _STRIDE  # (84, 2)
NA = len(ANCHORS_PX)
SMALL_BOX = [30.0, 30.0, 36.0, 36.0]


def _assigner(mode=None, min_pos=0, topk=10, topk2=None, c=4.0):
    a = TaskAlignedAssigner(topk=topk, num_classes=2, alpha=0.5, beta=6.0, stride=[8, 16, 32], topk2=topk2)
    return a if mode is None else patch_assigner(a, mode, min_pos, c)


def _predictions(boxes_at_anchor=None):
    """Scores 0.5 everywhere; every anchor predicts a 2x2 px box at its own centre (overlapping nothing but itself),
    or ``boxes_at_anchor`` (xyxy px) everywhere."""
    scores = torch.full((1, NA, 2), 0.5)
    if boxes_at_anchor is None:
        pd = torch.cat((ANCHORS_PX - 1, ANCHORS_PX + 1), -1)[None]
    else:
        pd = torch.tensor(boxes_at_anchor).expand(1, NA, 4).clone()
    return scores, pd


def _gt(boxes):
    n = len(boxes)
    gt = torch.tensor(boxes, dtype=torch.float32)[None]  # (1, n, 4)
    return torch.zeros(1, n, 1), gt, torch.ones(1, n, 1)


def _in_region(box, anchors=ANCHORS_PX, floor=16.0):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = max(box[2] - box[0], floor) / 2, max(box[3] - box[1], floor) / 2
    return ((anchors[:, 0] - cx).abs() < half_w) & ((anchors[:, 1] - cy).abs() < half_h)


def test_the_small_box_whose_candidates_predict_no_overlap_gets_no_positive_from_stock_tal():
    labels, gt, mask = _gt([SMALL_BOX])
    out = _assigner()(*_predictions(), ANCHORS_PX, labels, gt, mask)
    assert out[3].sum() == 0  # fg_mask: CIoU is 0 at every candidate, top-k picks anchors outside the region
    overlapping = _assigner()(*_predictions(SMALL_BOX), ANCHORS_PX, labels, gt, mask)
    assert overlapping[3].sum() == int(_in_region(SMALL_BOX).sum()) == 5


@pytest.mark.parametrize("mode", ["fixed", "nwd"])
def test_fixed_and_nwd_give_the_small_box_all_its_candidates(mode):
    labels, gt, mask = _gt([SMALL_BOX])
    _, _, target_scores, fg_mask, _ = _assigner(mode)(*_predictions(), ANCHORS_PX, labels, gt, mask)
    assert torch.equal(fg_mask[0], _in_region(SMALL_BOX))
    # fixed keeps upstream's scores: zero metric, zero target score. NWD is never 0: the object gets a score.
    assert bool(target_scores.sum() > 0) == (mode == "nwd")


def test_fixed_ranks_zero_metric_candidates_by_centre_distance():
    # Top-3 of the 5 candidates of the 6x6 box centred at (33, 33): the stride-8 centres (28|36, 28|36) are 5.0 and
    # 4.2 px away, (40, 40) is 9.9 px away: the three nearest are (36, 36), then (28, 36) and (36, 28).
    labels, gt, mask = _gt([SMALL_BOX])
    _, _, _, fg_mask, _ = _assigner("fixed", topk=3)(*_predictions(), ANCHORS_PX, labels, gt, mask)
    picked = {tuple(p) for p in ANCHORS_PX[fg_mask[0]].tolist()}
    assert picked == {(36.0, 36.0), (28.0, 36.0), (36.0, 28.0)}


def test_fixed_equals_stock_where_every_candidate_overlaps():
    labels, gt, mask = _gt([[8.0, 8.0, 40.0, 40.0], [30.0, 30.0, 60.0, 50.0]])
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(1, NA, 2, generator=g)
    pd = torch.tensor([[10.0, 10.0, 50.0, 48.0]]).expand(1, NA, 4).clone()  # overlaps both objects everywhere
    stock = _assigner()(scores, pd, ANCHORS_PX, labels, gt, mask)
    fixed = _assigner("fixed")(scores, pd, ANCHORS_PX, labels, gt, mask)
    assert all(torch.equal(s, f) for s, f in zip(stock, fixed))


def _contest(overlaps_of_claimants):
    """Object 0 claims anchor 3 only; objects 1 and 2 both claim anchor 1 (1: anchors 0, 1; 2: anchors 1, 2)."""
    a = _assigner("fixed")
    mask_pos = torch.tensor([[[0, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]]], dtype=torch.int8)
    overlaps = torch.zeros(1, 3, 4)
    overlaps[0, 0, 1] = 0.9  # object 0 overlaps anchor 1 best, but never claimed it
    overlaps[0, 1, 1], overlaps[0, 2, 1] = overlaps_of_claimants
    # The record that _forward keeps for a call: every (object, anchor) is a candidate pair here, at these distances
    # (px); with a zero metric their ranks are -(1 + distance): [[-9, -9, -9, -1], [-2, -5, -9, -9], [-9, -3, -2, -9]].
    distances = torch.tensor([[[8.0, 8.0, 8.0, 0.0], [1.0, 4.0, 8.0, 8.0], [8.0, 2.0, 1.0, 8.0]]])
    a._call = Candidates(ANCHORS_PX, torch.ones(1, 3, 4).nonzero(as_tuple=True), distances.flatten())
    return a, mask_pos, overlaps


@pytest.mark.parametrize("claimant_overlaps, winner", [((0.2, 0.3), 2), ((0.0, 0.0), 2), ((0.4, 0.0), 1),
                                                       ((0.0, 0.1), 2)])
def test_a_contested_anchor_goes_to_the_best_of_its_claimants(claimant_overlaps, winner):
    # Stock gives anchor 1 to the argmax of the overlaps over all objects: object 0, which never claimed it. Fixed gives
    # it to the claimant with the higher overlap, or, where both are 0, to the one whose centre is nearer (rank -3
    # beats -5).
    a, mask_pos, overlaps = _contest(claimant_overlaps)
    stock_idx, _, _ = TaskAlignedAssigner.select_highest_overlaps(a, mask_pos, overlaps, 3, overlaps)
    assert stock_idx[0, 1] == 0
    target_gt_idx, fg_mask, new_mask = a.select_highest_overlaps(mask_pos, overlaps, 3, torch.zeros_like(overlaps))
    assert target_gt_idx[0, 1] == winner and fg_mask.tolist() == [[1, 1, 1, 1]]
    assert new_mask[0, :, 1].tolist() == [int(i == winner) for i in range(3)]
    assert [target_gt_idx[0, i].item() for i in (0, 2, 3)] == [1, 2, 0]  # uncontested anchors keep their object


def top_up(mask_pos, ranks, k, free=None):
    """``top_up`` on the candidate pairs of a dense rank tensor: its finite entries (the anchors in each region)."""
    pairs = torch.isfinite(ranks).nonzero(as_tuple=True)
    out, won = _top_up(mask_pos, pairs, ranks[pairs], k, free)
    assert torch.equal(out[pairs] - mask_pos[pairs], won.to(out.dtype))  # the pairs made positive, and only those
    return out


def test_top_up_takes_the_best_free_anchors_of_the_region_up_to_k():
    # Object 0 has 1 positive (anchor 0) and region {0, 1, 2, 3}; anchor 1 is object 1's positive, so it is not free.
    # Ranks: anchor 3 > anchor 2. With k = 3 object 0 takes 2 and 3. Object 1 (region {1, 4}) has 1 positive and takes
    # anchor 4; object 2 (region {5} only, 0 positives) takes 5; a padding row takes nothing.
    inf = float("-inf")
    mask_pos = torch.zeros(1, 4, 6, dtype=torch.int8)
    mask_pos[0, 0, 0] = mask_pos[0, 1, 1] = 1
    ranks = torch.tensor([[[0.5, 0.4, -3.0, -2.0, inf, inf],
                           [inf, 0.9, inf, inf, -4.0, inf],
                           [inf, inf, inf, inf, inf, -1.0],
                           [inf] * 6]])
    out = top_up(mask_pos, ranks, 3)
    assert out.dtype == mask_pos.dtype
    assert out[0].tolist() == [[1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1], [0] * 6]
    assert torch.equal(top_up(mask_pos, ranks, 1), mask_pos + torch.tensor([0, 0, 0, 0, 0, 1]).view(1, 1, 6) *
                       torch.tensor([0, 0, 1, 0]).view(1, 4, 1))  # k = 1: only the empty object 2 is topped up


def test_top_up_gives_a_free_anchor_wanted_by_two_objects_to_the_one_that_ranks_it_higher():
    inf = float("-inf")
    mask_pos = torch.zeros(1, 2, 3, dtype=torch.int8)
    ranks = torch.tensor([[[-1.5, -2.0, inf], [-1.0, inf, -3.0]]])  # anchor 0 wanted by both; object 1 ranks it higher
    out = top_up(mask_pos, ranks, 1)
    assert out[0].tolist() == [[0, 0, 0], [1, 0, 0]]  # object 0 stays short this call
    assert out.sum(1).max() <= 1
    tie = torch.tensor([[[-1.0, -2.0, inf], [-1.0, inf, -3.0]]])  # an exact tie on anchor 0: the first object
    assert top_up(mask_pos, tie, 1)[0].tolist() == [[1, 0, 0], [0, 0, 0]]
    free = torch.tensor([[True, True, True]])  # the caller's free anchors give the same result
    assert torch.equal(top_up(mask_pos, ranks, 1, free), out) and torch.equal(top_up(mask_pos, tie, 1, free)[0],
                                                                                top_up(mask_pos, tie, 1)[0])


def _top_up_by_loops(mask_pos, ranks, k):
    """The rule of ``top_up`` spelled out per object and per anchor: the reference for the random cases."""
    bs, n, na = mask_pos.shape
    out = mask_pos.clone()
    for b in range(bs):
        free = [mask_pos[b, :, a].sum() == 0 for a in range(na)]
        wanted = {}
        for g in range(n):
            short = max(k - int(mask_pos[b, g].sum()), 0)
            mine = sorted((a for a in range(na) if free[a] and ranks[b, g, a] > float("-inf")),
                          key=lambda a: -ranks[b, g, a].item())  # sorted() is stable: equal ranks keep anchor order
            for a in mine[:short]:
                wanted.setdefault(a, []).append(g)
        for a, claimants in wanted.items():
            out[b, max(claimants, key=lambda g: (ranks[b, g, a].item(), -g)), a] += 1
    return out


def test_pairs_are_grouped_by_object_best_first_with_ties_in_pair_order():
    from size_adaptive.assign import _grouped_best_first

    g = torch.Generator().manual_seed(0)
    key = torch.cat((torch.randn(40, generator=g) * 1e3, torch.tensor([0.0, 1e-30, -1e-30, 3.0, 3.0, float("-inf")])))
    key = key[torch.randperm(len(key), generator=g)]
    group = torch.randint(0, 4, (len(key),), generator=g)
    expected = sorted(range(len(key)), key=lambda i: (group[i].item(), -key[i].item(), i))
    assert _grouped_best_first(group, key).tolist() == expected


@pytest.mark.parametrize("seed", range(5))
def test_top_up_follows_its_rule_on_random_cases(seed):
    g = torch.Generator().manual_seed(seed)
    bs, n, na = 2, 5, 16
    region = torch.rand(bs, n, na, generator=g) < 0.5
    ranks = torch.where(region, -1.0 - torch.randint(0, 6, (bs, n, na), generator=g).float(), float("-inf"))
    mask_pos = torch.zeros(bs, n, na, dtype=torch.int8).scatter_(1, torch.randint(0, n, (bs, 1, na), generator=g), 1)
    mask_pos *= (torch.rand(bs, 1, na, generator=g) < 0.4).to(torch.int8) * region.to(torch.int8)
    for k in (1, 3, 6):
        out = top_up(mask_pos, ranks, k)
        assert torch.equal(out, _top_up_by_loops(mask_pos, ranks, k)) and out.sum(1).max() <= 1
        target = mask_pos.clone()  # inplace=True: the same mask, written into the given tensor
        pairs = torch.isfinite(ranks).nonzero(as_tuple=True)
        assert _top_up(target, pairs, ranks[pairs], k, inplace=True)[0].data_ptr() == target.data_ptr()
        assert torch.equal(target, out)


@pytest.mark.parametrize("seed", range(5))
def test_resolve_contests_gives_each_contested_anchor_to_its_best_claimant_on_random_cases(seed):
    # best: the highest overlap, then the highest rank (nearest centre), then the lowest object index
    g = torch.Generator().manual_seed(seed)
    bs, n, na = 2, 5, 16
    region = torch.rand(bs, n, na, generator=g) < 0.6
    pairs = region.nonzero(as_tuple=True)
    overlaps = torch.randint(0, 3, (bs, n, na), generator=g).float() / 2  # ties and zeros on purpose
    ranks = -1.0 - torch.randint(0, 3, (bs, n, na), generator=g).float()  # ties here too
    mask_pos = (region & (torch.rand(bs, n, na, generator=g) < 0.5)).to(torch.int8)
    out = resolve_contests(mask_pos, pairs, overlaps[pairs], ranks[pairs])
    for b in range(bs):
        for a in range(na):
            claimants = [j for j in range(n) if mask_pos[b, j, a]]
            best = [(overlaps[b, j, a].item(), ranks[b, j, a].item(), -j) for j in claimants]
            expected = claimants[best.index(max(best))] if claimants else None
            assert out[b, :, a].tolist() == [int(j == expected) for j in range(n)]


@pytest.mark.parametrize("mode, min_pos", [("fixed", 0), ("fixed", 3), ("nwd", 4), ("stock", 3)])
def test_the_patched_assigner_returns_fg_mask_and_object_indices_that_match_its_mask(mode, min_pos):
    # fg_mask and target_gt_idx are updated at the new positives only (no pass over the mask): they must still be the
    # column max and argmax of the final mask. Four overlapping objects, two of them tiny, noisy predictions.
    g = torch.Generator().manual_seed(3)
    boxes = [[8.0, 8.0, 40.0, 40.0], [30.0, 30.0, 36.0, 36.0], [20.0, 24.0, 60.0, 50.0], [33.0, 29.0, 39.0, 35.0]]
    labels, gt, mask = _gt(boxes)
    scores = torch.rand(1, NA, 2, generator=g)
    pd = torch.cat((ANCHORS_PX - 6, ANCHORS_PX + 6), -1)[None] + torch.rand(1, NA, 4, generator=g) * 8
    a, seen = _assigner(mode, min_pos=min_pos), {}
    step = a.select_highest_overlaps  # its outputs within the call, the final mask included
    a.select_highest_overlaps = lambda *args: seen.setdefault("out", step(*args))
    a(scores, pd, ANCHORS_PX, labels, gt, mask)
    target_gt_idx, fg_mask, final = seen["out"]
    fg = _assigner(mode, min_pos=min_pos)(scores, pd, ANCHORS_PX, labels, gt, mask)[3]  # another assigner's call
    assert final.sum(1).max() <= 1 and torch.equal(fg_mask.bool(), final.sum(1) > 0) and torch.equal(fg, fg_mask.bool())
    assert torch.equal(target_gt_idx[fg_mask.bool()], final.argmax(1)[fg_mask.bool()])
    region = a.select_candidates_in_gts(ANCHORS_PX, gt, mask)[0]  # (n, na)
    short = final[0].sum(-1) < min_pos
    assert (fg_mask[0].bool() | ~region[short]).all()  # an object stays short only when its region has no free anchor


def test_min_pos_on_the_stock_assigner_keeps_stock_top_k_and_adds_free_candidates():
    labels, gt, mask = _gt([SMALL_BOX])
    _, _, _, fg_mask, _ = _assigner("stock", min_pos=3)(*_predictions(), ANCHORS_PX, labels, gt, mask)
    assert fg_mask.sum() == 3 and (fg_mask[0] <= _in_region(SMALL_BOX)).all()
    g = torch.Generator().manual_seed(1)
    scores, pd = torch.rand(1, NA, 2, generator=g), torch.tensor([[20.0, 20.0, 50.0, 50.0]]).expand(1, NA, 4)
    labels, gt, mask = _gt([[16.0, 16.0, 48.0, 48.0]])
    stock = _assigner()(scores, pd.clone(), ANCHORS_PX, labels, gt, mask)
    topped = _assigner("stock", min_pos=3)(scores, pd.clone(), ANCHORS_PX, labels, gt, mask)
    assert stock[3].sum() >= 3 and all(torch.equal(s, t) for s, t in zip(stock, topped))  # nobody short: stock


def test_candidate_ranks_order_positive_metric_then_distance_then_outside():
    metric = torch.tensor([[[0.0, 1e-30, 0.0, 0.2]]])
    anchors = torch.tensor([[0.0, 0.0], [30.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    gt = torch.tensor([[-2.0, -2.0, 2.0, 2.0]])  # centre (0, 0)
    indices = (torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 3]))  # not 2
    distances = pair_centre_distances(anchors[indices[2]], gt.expand(3, 4))
    assert distances.tolist() == [0.0, 30.0, 10.0]
    ranks, pair_ranks = candidate_ranks(metric, indices, distances)
    assert pair_ranks.tolist() == [-1.0, pytest.approx(1e-30), pytest.approx(0.2)]
    assert ranks[0, 0].tolist() == [-1.0, pytest.approx(1e-30), float("-inf"), pytest.approx(0.2)]
    assert ranks[0, 0].argsort(descending=True).tolist() == [3, 1, 0, 2]
    rotated = torch.tensor([[0.0, 0.0, 4.0, 2.0, 0.7]])  # xywhr: the centre is the first two values
    assert pair_centre_distances(torch.tensor([[3.0, 4.0]]), rotated).tolist() == [5.0]


def test_the_patched_assigner_ranks_the_candidate_pairs_that_upstream_computes(monkeypatch):
    # The call's record keeps the (batch, object, anchor) pairs that upstream's get_box_metrics passes to pair_overlaps:
    # they are exactly the candidates in the (enlarged) region, and the ranks that upstream's top-k gets are finite
    # there and -inf elsewhere.
    labels, gt, mask = _gt([SMALL_BOX, [8.0, 8.0, 40.0, 40.0]])
    a, seen = _assigner("fixed"), {}
    topk = TaskAlignedAssigner.select_topk_candidates
    monkeypatch.setattr(TaskAlignedAssigner, "select_topk_candidates",
                        lambda self, metrics, topk_mask=None: topk(self, seen.setdefault("ranks", metrics), topk_mask))
    a(*_predictions(), ANCHORS_PX, labels, gt, mask)
    in_region = a.select_candidates_in_gts(ANCHORS_PX, gt, mask) & mask.bool()
    assert torch.equal(torch.isfinite(seen["ranks"]), in_region) and in_region.sum() > 0


def _random_call(seed, n_boxes, bs=2):
    """Inputs of one assigner call at imgsz 64: ``n_boxes`` random boxes per image (some tiny), noisy predictions."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(bs, n_boxes, 2, generator=g) * 50
    gt = torch.cat((xy, xy + 1 + torch.rand(bs, n_boxes, 2, generator=g) * 30), -1).clamp(max=IMGSZ)
    mask = (torch.rand(bs, n_boxes, 1, generator=g) < 0.8).float()  # some padding rows
    labels = torch.randint(0, 2, (bs, n_boxes, 1), generator=g).float()
    scores = torch.rand(bs, NA, 2, generator=g)
    pd = torch.cat((ANCHORS_PX - 5, ANCHORS_PX + 5), -1)[None] + torch.rand(bs, NA, 4, generator=g) * 10 - 5
    return scores, pd, ANCHORS_PX, labels, gt, mask


LEVERS = [("fixed", 0, None), ("nwd", 0, None), ("stock", 3, None), ("fixed", 3, None), ("nwd", 2, 1)]


@pytest.mark.parametrize("mode, min_pos, topk2", LEVERS)
def test_the_assigner_keeps_no_state_between_calls(mode, min_pos, topk2):
    # Calls with different inputs (batches of 2 and 1 image, 6 and 3 object rows) in interleaved order give what a
    # fresh assigner gives for each, and a call leaves no attribute beyond those upstream's own forward sets.
    calls = [_random_call(1, 6), _random_call(2, 3, bs=1), _random_call(3, 6)]
    fresh = [_assigner(mode, min_pos, topk2=topk2)(*c) for c in calls]
    a = _assigner(mode, min_pos, topk2=topk2)
    stock = TaskAlignedAssigner(topk=10, num_classes=2, alpha=0.5, beta=6.0, stride=[8, 16, 32], topk2=topk2)
    before, stock_before = dict(vars(a)), set(vars(stock))
    stock(*calls[0])
    for i in (0, 1, 2, 1, 0, 2):
        assert all(torch.equal(x, y) for x, y in zip(a(*calls[i]), fresh[i]))
        assert set(vars(a)) - set(before) == set(vars(stock)) - stock_before == {"bs", "n_max_boxes"}
        assert all(vars(a)[k] is v for k, v in before.items()) and a._call is None


def test_the_call_record_is_gone_after_a_failed_call_and_cannot_be_read_outside_a_call(monkeypatch):
    a = _assigner("fixed", min_pos=2)
    call = _random_call(0, 4)
    monkeypatch.setattr(TaskAlignedAssigner, "get_targets", lambda *args: 1 / 0)  # fails after both levers have run
    with pytest.raises(ZeroDivisionError):
        a(*call)
    assert "_call" not in vars(a) and a._call is None
    monkeypatch.undo()
    metric = torch.zeros(2, 4, NA)
    with pytest.raises(RuntimeError, match="no candidate pairs of a current call"):
        a.select_topk_candidates(metric, topk_mask=torch.ones(2, 4, 10, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="no candidate pairs of a current call"):
        a.select_highest_overlaps(metric.to(torch.int8), metric, 4, metric)
    with pytest.raises(RuntimeError, match="outside an assignment call"):
        a.get_pos_mask(call[0], call[1], call[3], call[4], ANCHORS_PX, call[5])


@pytest.mark.parametrize("mode, min_pos, topk2", LEVERS)
def test_upstream_out_of_memory_retry_gives_each_image_its_own_record(mode, min_pos, topk2, monkeypatch):
    # On CUDA out-of-memory upstream's forward retries _forward one image at a time: each retry is a call with its own
    # record, and the assignment equals the batched one.
    call = _random_call(4, 5)
    batched = _assigner(mode, min_pos, topk2=topk2)(*call)
    forward = TaskAlignedAssigner._forward

    def out_of_memory_for_batches(self, pd_scores, *args, **kwargs):
        if pd_scores.shape[0] > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return forward(self, pd_scores, *args, **kwargs)

    monkeypatch.setattr(TaskAlignedAssigner, "_forward", out_of_memory_for_batches)
    a = _assigner(mode, min_pos, topk2=topk2)
    retried = a(*call)
    assert a._oom_warned and a._call is None
    assert all(torch.equal(x, y) for x, y in zip(retried, batched))


def test_the_positive_bound_is_the_assigners_own():
    # At most top-k per object row, plus the top-up (capped at top-k2): 2 x 3 rows x (10 + 3), the one-to-one branch
    # 6 x (7 + 1); upstream's assigner 6 x 10.
    from size_adaptive.assign import max_positives

    assert max_positives(_assigner(), 6) == 60 and max_positives(_assigner("fixed"), 6) == 60
    assert max_positives(_assigner("stock", min_pos=3), 6) == 78
    assert max_positives(_assigner("nwd", min_pos=3, topk=7, topk2=1), 6) == 48


def test_each_upstream_assigner_has_a_declared_counterpart_with_the_levers_in_front():
    from size_adaptive.assign import SIZE_ASSIGNERS

    for base, ours in SIZE_ASSIGNERS.items():
        assert ours.__mro__[1:3] == (SizeAssigner, base) and ours.__name__ == f"Size{base.__name__}"
        assert ours.__module__ == "size_adaptive.assign" and base.__name__ in ours.__doc__
    refusals = {b.__name__: sorted(o.refused) for b, o in SIZE_ASSIGNERS.items() if o.refused}
    assert refusals == {"SegTaskAlignedAssigner": ["nwd", "nwd_small", "simd"],
                        "PoseTaskAlignedAssigner": ["nwd", "nwd_small", "simd"],
                        "RotatedTaskAlignedAssigner": ["simd"]}


@pytest.mark.parametrize("settings", [dict(assign="fixed"), dict(assign="nwd"), dict(assign="fixed", min_pos=3),
                                      dict(min_pos=2)])
def test_one_to_one_branch_keeps_at_most_one_positive_per_object(settings):
    m = h.model("yolo26n.yaml")
    b = h.batch([[10, 10, 30, 30], [30, 30, 36, 36], [4, 4, 44, 44], [40, 40, 60, 58]], IMGSZ, image_idx=[0, 0, 1, 1])
    criterion = build_criterion(m, h.settings(weights=(1, 1, 1), **settings))
    assert isinstance(criterion, E2ELoss)
    captured = h.capture_assignment(criterion.one2one)
    criterion(h.preds(m, 2, IMGSZ), b)
    _, mask_gt, _, _, _, fg_mask, target_gt_idx = captured["args"]
    per_object = Counter(zip(*torch.where(fg_mask)[:1], target_gt_idx[fg_mask].tolist()))
    assert max(per_object.values()) == 1
    assert criterion.one2one.size_counts[UNASSIGNED].sum() == 0  # and every object got its one


def test_the_loss_counts_the_small_object_as_assigned_under_fixed_and_scored_under_nwd():
    # Through the loss: an untrained model's predictions at imgsz 64, a 2 px object next to larger ones.
    m = h.model()
    p = h.preds(m, 2, IMGSZ)
    b = h.batch([[31, 31, 33, 33], [8, 8, 28, 28], [4, 4, 44, 44]], IMGSZ, image_idx=[0, 0, 1])
    counts = {}
    for mode in ("stock", "fixed", "nwd"):
        loss = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(1, 1, 1), assign=mode))
        loss(p, b)
        counts[mode] = loss.reset_size_counts()
    for mode in ("fixed", "nwd"):
        assert counts[mode][UNASSIGNED].sum() == 0 and counts[mode][OBJECTS].sum() == 3
        assert counts[mode][POSITIVES, 0] >= counts["stock"][POSITIVES, 0]
    assert counts["nwd"][SCORE, 0] > 0


@pytest.mark.parametrize("mode", ["nwd", "nwd_small", "simd"])
def test_nwd_is_refused_for_yolo26_segment_and_pose_and_fixed_is_accepted(mode):
    for cfg, what in (("yolo26n-seg.yaml", "YOLO26 segment"), ("yolo26n-pose.yaml", "YOLO26 pose")):
        m = h.model(cfg, nc=4)
        with pytest.raises(ValueError, match=f"size_assign: expected one of stock, fixed for {what}.*got {mode}$"):
            build_criterion(m, h.settings(assign=mode, simd_mn=(6.0, 4.0)))
        criterion = build_criterion(m, h.settings(assign="fixed", min_pos=2))
        assert all(isinstance(b.assigner.inner, SizeAssigner) for b in (criterion.one2many, criterion.one2one))


def test_the_assigner_is_patched_only_when_a_setting_asks():
    m = h.model()
    assert type(SizeAdaptiveDetectionLoss(m, settings=h.settings()).assigner.inner) is TaskAlignedAssigner
    patched = SizeAdaptiveDetectionLoss(m, settings=h.settings(assign="nwd", nwd_c=11.0)).assigner.inner
    assert isinstance(patched, TaskAlignedAssigner) and isinstance(patched, SizeAssigner)
    assert (patched.size_mode, patched.size_min_pos, patched.size_nwd_input_c, patched.topk) == ("nwd", 0, 11.0, 10)
    assert type(v8DetectionLoss(m).assigner) is TaskAlignedAssigner  # upstream's class is untouched


def test_yolo_train_refuses_nwd_for_a_yolo26_segment_model_before_the_run_folder_exists(tmp_path):
    from size_adaptive import YOLO

    with pytest.raises(ValueError, match="size_assign: expected one of stock, fixed for YOLO26 segment"):
        YOLO("yolo26n-seg.yaml").train(data="demo-seg", epochs=1, imgsz=64, project=str(tmp_path), name="run",
                                      size_assign="nwd")
    assert not (tmp_path / "run").exists()


# Contract: the upstream units (ultralytics 8.4.190) that SizeAssigner wraps, and the order in which a call reaches
# them; the levers read the call's record in that order.


def _self_calls(func) -> list:
    """The ``self.<name>(...)`` calls in ``func``'s source, in source order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "self"]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def _params(func) -> list:
    return list(inspect.signature(func).parameters)


def test_upstream_runs_each_assignment_and_each_out_of_memory_retry_through_forward_underscore():
    assert _params(TaskAlignedAssigner._forward) == [
        "self", "pd_scores", "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt", "extra"]
    assert [c.func.attr for c in _self_calls(TaskAlignedAssigner.forward)].count("_forward") == 2
    assert "super().forward(" in inspect.getsource(PoseTaskAlignedAssigner.forward)


def test_upstream_lists_the_pairs_in_pair_overlaps_before_the_levers_that_read_them():
    calls = {f: [c.func.attr for c in _self_calls(getattr(TaskAlignedAssigner, f))] for f in (
        "_forward", "get_pos_mask", "get_box_metrics", "pair_overlaps")}
    assert [c for c in calls["_forward"] if c in ("get_pos_mask", "select_highest_overlaps", "get_targets")] == [
        "get_pos_mask", "select_highest_overlaps", "get_targets"]
    assert [c for c in calls["get_pos_mask"] if c != "select_candidates_in_gts"] == [
        "get_box_metrics", "select_topk_candidates"]
    assert calls["get_box_metrics"] == ["pair_overlaps"] and calls["pair_overlaps"] == ["iou_calculation"]
    source = inspect.getsource(TaskAlignedAssigner.get_box_metrics)
    assert "indices = mask_gt.nonzero(as_tuple=True)" in source
    assert "self.pair_overlaps(indices, gt_bboxes, pd_bboxes, **extra)" in source
    # select_topk_candidates and select_highest_overlaps get the same align_metric: the levers' ranks agree
    source = inspect.getsource(TaskAlignedAssigner._forward)
    assert "self.select_highest_overlaps(\n            mask_pos, overlaps, self.n_max_boxes, align_metric\n" in source
    assert source.index("self.select_highest_overlaps(") < source.index("align_metric *= mask_pos")
    assert "self.select_topk_candidates(align_metric, topk_mask=" in inspect.getsource(TaskAlignedAssigner.get_pos_mask)


def test_the_wrapped_units_keep_their_signatures():
    assert _params(TaskAlignedAssigner.select_topk_candidates) == ["self", "metrics", "topk_mask"]
    assert _params(TaskAlignedAssigner.select_highest_overlaps) == [
        "self", "mask_pos", "overlaps", "n_max_boxes", "align_metric"]
    assert _params(TaskAlignedAssigner.iou_calculation) == ["self", "gt_bboxes", "pd_bboxes"]
    assert _params(TaskAlignedAssigner.pair_overlaps) == ["self", "indices", "gt_bboxes", "pd_bboxes"]
    assert _params(SegTaskAlignedAssigner.pair_overlaps)[:4] == _params(PoseTaskAlignedAssigner.pair_overlaps)[:4] == [
        "self", "indices", "gt_bboxes", "pd_bboxes"]


def test_the_task_assigners_leave_the_wrapped_units_to_the_base_class():
    # So the levers sit in front of upstream's units for all four classes; OBB's own overlap is ProbIoU.
    for cls in (RotatedTaskAlignedAssigner, SegTaskAlignedAssigner, PoseTaskAlignedAssigner):
        assert not {"_forward", "select_topk_candidates", "select_highest_overlaps"} & set(vars(cls)), cls.__name__
    assert "iou_calculation" in vars(RotatedTaskAlignedAssigner)


def test_upstream_select_highest_overlaps_ends_with_the_column_max_that_the_contest_lever_repeats():
    # fixed and nwd replace upstream's contest and top-k2 rules (SizeAssigner._select_claimants) and end as upstream
    # does; a change to upstream's last step shows here.
    line = 'fg_mask, target_gt_idx = (mask_pos.to(torch.int64) if mask_pos.device.type == "npu" else mask_pos).max(-2)'
    source = inspect.getsource(TaskAlignedAssigner.select_highest_overlaps)
    assert line in source and source.rstrip().endswith("return target_gt_idx, fg_mask, mask_pos")
    assert "if self.topk2 != self.topk:" in source
    assert line in inspect.getsource(SizeAssigner._select_claimants)


# size_nwd_c=relative, size_assign=nwd_small and simd (issue 21)


def _patched(mode, **kw):
    a = TaskAlignedAssigner(topk=10, num_classes=2, alpha=0.5, beta=6.0, stride=[8, 16, 32])
    return patch_assigner(a, mode, 0, kw.pop("c", None), **kw)


def _pair_boxes():
    """Two objects (6x6 px and 40x40 px) and, for each, a prediction offset by 3 px in x: (N, 4) gt and pd."""
    gt = torch.tensor([[30.0, 30.0, 36.0, 36.0], [10.0, 10.0, 50.0, 50.0]])
    return gt, gt + torch.tensor([3.0, 0.0, 3.0, 0.0])


def test_the_overlap_of_each_mode_on_the_same_pairs():
    from ultralytics.utils.metrics import bbox_iou

    from size_adaptive.nwd import nwd, relative_c
    from size_adaptive.simd import simd

    gt, pd = _pair_boxes()
    ciou = bbox_iou(gt, pd, xywh=False, CIoU=True).squeeze(-1).clamp(0)
    fixed_c = _patched("nwd", c=8.0).iou_calculation(gt, pd)
    relative = _patched("nwd", c=None, nwd_k=1.0).iou_calculation(gt, pd)
    assert torch.allclose(fixed_c, nwd(gt, pd, 8.0))  # one C: both read e^(-3/8)
    assert torch.allclose(relative, torch.exp(-torch.tensor([3 / 6, 3 / 40])))  # its own side each
    assert torch.allclose(relative, nwd(gt, pd, relative_c(gt, 1.0)))
    # nwd_small with the small edge at 32 px input: NWD for the 6 px object, CIoU for the 40 px one
    small = _patched("nwd_small", c=None, nwd_k=1.0, small_side=32.0).iou_calculation(gt, pd)
    assert torch.allclose(small, torch.stack((relative[0], ciou[1])))
    assert torch.allclose(_patched("simd", simd_mn=(5.0, 4.0)).iou_calculation(gt, pd), simd(gt, pd, 5.0, 4.0))


def test_relative_c_lifts_the_large_objects_overlap_over_one_c():
    # The bias the issue names: at one C (the mean side, say 13 px) a 3 px offset on a 40 px object reads as low as on
    # a 6 px one; relative C scores the large object's near-perfect prediction near 1.
    gt, pd = _pair_boxes()
    one_c = _patched("nwd", c=13.0).iou_calculation(gt, pd)
    relative = _patched("nwd", c=None, nwd_k=1.0).iou_calculation(gt, pd)
    assert one_c[0] == one_c[1] and relative[1] > 0.9 > one_c[1] and relative[0] < one_c[0]


def test_nwd_small_contest_goes_to_the_small_claimant_before_any_overlap_comparison():
    # Object 1 (small) and object 2 (large) claim anchor 1. The large one's CIoU (0.9) is higher than the small one's
    # NWD (0.2), yet the anchor goes to the small claimant: NWD and CIoU are not compared. Among claimants of one
    # bucket the overlap decides as under fixed.
    a, mask_pos, overlaps = _contest((0.2, 0.9))
    for small, winner in (([False, True, False], 1), ([False, False, True], 2), ([False, True, True], 2),
                          ([False, False, False], 2)):
        a._call.small = torch.tensor(small).repeat_interleave(4)  # the record's pairs: (object, anchor) row-major
        target_gt_idx, _, new_mask = a.select_highest_overlaps(mask_pos, overlaps, 3, torch.zeros_like(overlaps))
        assert target_gt_idx[0, 1] == winner and new_mask[0, :, 1].sum() == 1


def test_nwd_small_through_a_call_gives_the_contested_anchor_to_the_small_object():
    # A 4x4 px object inside a 30x30 px one at imgsz 64: their candidate regions share stride-8 anchors. Every anchor
    # predicts the large box, so CIoU favours the large object everywhere; with nwd_small the shared anchors go to the
    # small object (it keeps all the candidates it was given top-k for); under nwd the contested ones go to the
    # large one, whose NWD is 1 there.
    labels, gt, mask = _gt([[30.0, 30.0, 34.0, 34.0], [17.0, 17.0, 47.0, 47.0]])
    scores, pd = _predictions([17.0, 17.0, 47.0, 47.0])
    out = _patched("nwd_small", c=None, nwd_k=1.0, small_side=8.0)(scores, pd, ANCHORS_PX, labels, gt, mask)
    target_gt_idx, fg_mask = out[4], out[3]
    shared = _in_region([30.0, 30.0, 34.0, 34.0]) & _in_region([17.0, 17.0, 47.0, 47.0])
    assert shared.sum() > 0 and bool((target_gt_idx[0][shared & fg_mask[0]] == 0).all())
    assert bool(fg_mask[0][shared].all())
    plain = _patched("nwd", c=None, nwd_k=1.0)(scores, pd, ANCHORS_PX, labels, gt, mask)
    assert bool((plain[4][0][shared & plain[3][0]] == 1).any())


def test_simd_is_refused_for_obb_and_nwd_small_is_accepted():
    m = h.model("yolo11n-obb.yaml", nc=2)
    refusal = r"size_assign: expected one of stock, fixed, nwd, nwd_small for OBB .*got simd$"
    with pytest.raises(ValueError, match=refusal):
        build_criterion(m, h.settings(assign="simd", simd_mn=(6.0, 4.0)))
    criterion = build_criterion(m, h.settings(assign="nwd_small", nwd_c="relative"))
    assert criterion.assigner.inner.size_mode == "nwd_small" and criterion.assigner.inner.size_nwd_k == 1.0


def test_patch_assigner_refuses_nwd_small_or_simd_without_their_resolved_values():
    for mode, what in (("nwd_small", "small_side"), ("simd", "simd_mn")):
        with pytest.raises(ValueError, match=f"size_assign: {mode} needs {what}"):
            _patched(mode, c=8.0)
