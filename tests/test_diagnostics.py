"""Assignment diagnostics from hand-built assignments: known counts give known shares, no host sync needed."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import helpers as h
from size_adaptive.diagnostics import (
    DIAGNOSTIC_COLUMNS,
    IOU,
    OBJECTS,
    POSITIVES,
    SCORE,
    UNASSIGNED,
    assignment_counts,
    describe,
    diagnostic_columns,
    diagnostics,
    new_counts,
)
from size_adaptive.loss import SizeAdaptiveDetectionLoss
from size_adaptive.settings import SizeSettings


def _assignment():
    """One image, three gt slots: a small object with 3 positives, a medium one with none, one padding row.

    Six anchors: 0-2 assigned to gt 0 with target scores 0.2, 0.3, 0.1 and overlaps 0.5, 0.25, 0.75; 3-5 background
    (target_gt_idx 0 there, as the assigner leaves it; their overlaps must not count).
    """
    gt_bucket = torch.tensor([[0, 1, 2]])  # (bs, n_max_boxes); the padding row's bucket must not matter
    mask_gt = torch.tensor([[[1.0], [1.0], [0.0]]])  # (bs, n_max_boxes, 1)
    fg_mask = torch.tensor([[True, True, True, False, False, False]])
    target_gt_idx = torch.zeros(1, 6, dtype=torch.long)
    score = torch.tensor([[0.2, 0.3, 0.1, 0.0, 0.0, 0.0]])
    iou = torch.tensor([[0.5, 0.25, 0.75, 0.9, -0.3, 1.0]])
    return gt_bucket, mask_gt, fg_mask, target_gt_idx, score, iou


def test_known_assignment_gives_known_counts():
    counts = assignment_counts(*_assignment())
    assert counts[OBJECTS].tolist() == [1.0, 1.0, 0.0]
    assert counts[UNASSIGNED].tolist() == [0.0, 1.0, 0.0]  # the medium object got no positive
    assert counts[POSITIVES].tolist() == [3.0, 0.0, 0.0]
    torch.testing.assert_close(counts[SCORE], torch.tensor([0.6, 0.0, 0.0]))
    torch.testing.assert_close(counts[IOU], torch.tensor([1.5, 0.0, 0.0]))  # 0.5 + 0.25 + 0.75; background ignored


def test_positives_of_two_objects_in_two_images_land_in_their_own_buckets():
    # Image 0: gt 0 (medium) has anchors 0, 1; image 1: gt 1 (small) has anchor 2, gt 0 (large) anchors 0 and 3.
    gt_bucket = torch.tensor([[1, 0], [2, 0]])
    mask_gt = torch.ones(2, 2, 1)
    fg_mask = torch.tensor([[True, True, False, False], [True, False, True, True]])
    target_gt_idx = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 0]])
    score = torch.tensor([[0.5, 0.25, 0.0, 0.0], [0.1, 0.0, 0.4, 0.2]])
    counts = assignment_counts(gt_bucket, mask_gt, fg_mask, target_gt_idx, score, score * 2)
    assert counts[OBJECTS].tolist() == [2.0, 1.0, 1.0]  # image 0's gt 1 (small) is real too, without positives
    assert counts[UNASSIGNED].tolist() == [1.0, 0.0, 0.0]
    assert counts[POSITIVES].tolist() == [1.0, 2.0, 2.0]
    torch.testing.assert_close(counts[SCORE], torch.tensor([0.4, 0.75, 0.3]))
    torch.testing.assert_close(counts[IOU], torch.tensor([0.8, 1.5, 0.6]))


def test_counts_accumulate_in_place_over_calls():
    out = torch.zeros(5, 3)
    for _ in range(3):
        assert assignment_counts(*_assignment(), out=out) is out
    assert out[OBJECTS].tolist() == [3.0, 3.0, 0.0] and out[POSITIVES].tolist() == [9.0, 0.0, 0.0]


def test_batch_without_ground_truth_counts_nothing():
    gt_bucket, mask_gt = torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 1)
    fg_mask = torch.zeros(2, 6, dtype=torch.bool)
    target_gt_idx = torch.zeros(2, 6)  # float: the assigner's own early return for n_max_boxes == 0
    counts = assignment_counts(gt_bucket, mask_gt, fg_mask, target_gt_idx, torch.zeros(2, 6), torch.zeros(2, 6))
    assert torch.equal(counts, torch.zeros(5, 3))


def test_columns_are_shares_means_and_nan_for_empty_buckets():
    counts = torch.tensor([
        [4.0, 2.0, 0.0],  # objects
        [1.0, 0.0, 0.0],  # unassigned
        [6.0, 3.0, 0.0],  # positives
        [1.2, 1.5, 0.0],  # target-score sums
        [3.0, 2.4, 0.0],  # overlap sums
    ])
    values = diagnostics(counts, weights=(2.0, 1.5, 1.0))
    assert list(values) == list(DIAGNOSTIC_COLUMNS)
    # shares 6/9, 3/9, 0; mean weight (6*2 + 3*1.5) / 9 = 16.5 / 9; 1 of 4 small objects unassigned; 6/4 and 3/2
    # positives per object; mean scores 1.2/6 and 1.5/3; the large bucket is empty: NaN, not 0.
    assert values["size/fg_small"] == pytest.approx(6 / 9) and values["size/fg_large"] == 0
    assert values["size/mean_fg_weight"] == pytest.approx(16.5 / 9)
    assert values["size/unassigned_small"] == 0.25 and values["size/unassigned_medium"] == 0
    assert values["size/pos_per_gt_small"] == 1.5 and values["size/pos_per_gt_medium"] == 1.5
    assert values["size/score_small"] == pytest.approx(0.2) and values["size/score_medium"] == pytest.approx(0.5)
    assert values["size/iou_small"] == pytest.approx(0.5) and values["size/iou_medium"] == pytest.approx(0.8)
    assert all(math.isnan(values[f"size/{w}_large"]) for w in ("unassigned", "pos_per_gt", "score", "iou"))
    assert "size/mean_fg_weight" not in diagnostics(counts)  # a stock run has no weights


def test_log_line_reads_na_for_empty_buckets():
    counts = torch.tensor([[4.0, 2.0, 0.0], [1.0, 0.0, 0.0], [6.0, 3.0, 0.0], [1.2, 1.5, 0.0], [3.0, 2.4, 0.0]])
    line = describe(diagnostics(counts, weights=(2.0, 1.5, 1.0)))
    assert line == ("small/medium/large: positives 66.7/33.3/0.0% (mean weight 1.833); objects without a positive "
                    "25.0/0.0/n/a%; positives per object 1.5/1.5/n/a; mean target score 0.20/0.50/n/a; mean IoU "
                    "0.50/0.80/n/a")


def test_loss_counts_every_labelled_object_once_per_call():
    # A real assignment at imgsz 64 with thresholds 32/50 px: a 20 px (small), a 40 px (medium) and a 60 px (large)
    # object; each gets positives, and their positives add up to the assigner's foreground.
    m = h.model()
    p = h.preds(m, 2, 64)
    b = h.batch([[10, 10, 30, 30], [4, 4, 44, 44], [2, 2, 62, 62]], 64, image_idx=[0, 1, 1])
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings(thresholds=(32, 50)))
    captured = h.capture_assignment(ours)
    ours(p, b)
    fg_mask = captured["args"][5]
    counts = ours.size_counts
    assert counts[OBJECTS].tolist() == [1.0, 1.0, 1.0] and counts[UNASSIGNED].sum() == 0
    assert counts[POSITIVES].sum() == fg_mask.sum() and (counts[POSITIVES] > 0).all()


def test_stock_assigner_gives_a_tiny_object_positives():
    # Ultralytics 8.4.190 enlarges boxes with a side under stride_val (16 px) to 16 px when it picks candidate
    # anchors, so a 2x2 px object still has anchor centres inside: it is not left out for lack of one.
    m = h.model()
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings())
    ours(h.preds(m, 1, 64), h.batch([[31, 31, 33, 33]], 64))
    assert ours.size_counts[OBJECTS, 0] == 1 and ours.size_counts[UNASSIGNED, 0] == 0
    assert ours.size_counts[POSITIVES, 0] >= 1


def test_a_box_whose_candidate_region_holds_no_anchor_centre_gets_no_positive():
    # At imgsz 64 the anchor centres lie at 4..60 px (stride 8), 8..56 (16) and 16, 48 (32). A 4x4 px box at
    # (70, 70) is enlarged by the assigner to 16x16 px, (64, 64)-(80, 80): no centre inside, so no positive.
    m = h.model()
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings())
    ours(h.preds(m, 1, 64), h.batch([[70, 70, 74, 74], [10, 10, 30, 30]], 64))
    assert ours.size_counts[OBJECTS, 0] == 2 and ours.size_counts[UNASSIGNED, 0] == 1


# --- size_bins=aitod: every object also counted in AI-TOD's very tiny (< 8 px) or tiny (8-16 px) -----------------


def test_an_object_counts_in_its_coco_bucket_and_its_aitod_bin():
    # _assignment() with AI-TOD columns: the small object (3 positives) is tiny (column 4), the medium one (no
    # positive) is 16 px and above (column 5, not shown). COCO's columns stay those of the plain (bs, n) buckets.
    gt_bucket, *rest = _assignment()
    aitod = torch.stack((gt_bucket, torch.tensor([[4, 5, 3]])), -1)  # (bs, n_max_boxes, 2); padding row: any
    counts = assignment_counts(aitod, *rest, out=new_counts(bins="aitod"))
    assert counts.shape == (5, 6) and torch.equal(counts[:, :3], assignment_counts(gt_bucket, *rest))
    assert counts[OBJECTS, 3:].tolist() == [0.0, 1.0, 1.0] and counts[UNASSIGNED, 3:].tolist() == [0.0, 0.0, 1.0]
    assert counts[POSITIVES, 3:].tolist() == [0.0, 3.0, 0.0]
    torch.testing.assert_close(counts[SCORE, 3:], torch.tensor([0.0, 0.6, 0.0]))
    torch.testing.assert_close(counts[IOU, 3:], torch.tensor([0.0, 1.5, 0.0]))


def test_aitod_columns_are_shares_of_all_positives_and_leave_the_coco_columns_as_they_were():
    coco = torch.tensor([[4.0, 2.0, 0.0], [1.0, 0.0, 0.0], [6.0, 3.0, 0.0], [1.2, 1.5, 0.0], [3.0, 2.4, 0.0]])
    # of the 4 small objects: 1 very tiny (unassigned), 2 tiny with 4 positives (scores 0.4, overlaps 1.0), 1 larger
    aitod = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [0.0, 4.0, 5.0], [0.0, 0.4, 2.3], [0.0, 1.0, 4.4]])
    values = diagnostics(torch.cat((coco, aitod), 1), weights=(2.0, 1.5, 1.0))
    assert list(values) == list(diagnostic_columns("aitod"))
    assert {k: values[k] for k in DIAGNOSTIC_COLUMNS} == diagnostics(coco, weights=(2.0, 1.5, 1.0))
    # 4 of the 9 positives are tiny; the very tiny object has none, so its score and IoU are undefined
    assert values["size/fg_tiny"] == pytest.approx(4 / 9) and values["size/fg_very_tiny"] == 0
    assert values["size/unassigned_very_tiny"] == 1.0 and values["size/unassigned_tiny"] == 0.0
    assert values["size/pos_per_gt_tiny"] == 2.0 and values["size/score_tiny"] == pytest.approx(0.1)
    assert values["size/iou_tiny"] == pytest.approx(0.25) and math.isnan(values["size/iou_very_tiny"])
    assert describe(values).startswith("very tiny/tiny/small/medium/large: positives 0.0/44.4/66.7/33.3/0.0% "
                                       "(mean weight 1.833); objects without a positive 100.0/0.0/25.0/0.0/n/a%")


def test_aitod_edges_are_8_and_16_original_px_at_the_factor_of_the_thresholds():
    from size_adaptive.loss import size_tiny_thresholds

    resolved = SizeSettings(bins="aitod", thresholds=(32.0, 96.0), input_thresholds=(16.0, 48.0))  # factor 0.5
    assert size_tiny_thresholds(resolved).tolist() == [4.0, 8.0]
    assert size_tiny_thresholds(replace(resolved, bins="coco")) is None
    assert size_tiny_thresholds(h.settings(thresholds=(32, 50))) is None  # the default: coco


def test_loss_with_aitod_bins_counts_as_with_coco_plus_the_tiny_bins():
    # imgsz 64, thresholds 32/50 px input (AI-TOD's 8/16 px then input px too): a 5 px (very tiny), a 12 px (tiny) and
    # a 20 px (16-32) small object, a 40 px medium and a 60 px large one. The loss and COCO's columns do not change;
    # very tiny and tiny hold one object each, and with the 16 px-and-above column they split every positive.
    m = h.model()
    p = h.preds(m, 2, 64)
    b = h.batch([[10, 10, 15, 15], [30, 10, 42, 22], [10, 30, 30, 50], [4, 4, 44, 44], [2, 2, 62, 62]], 64,
                image_idx=[0, 0, 0, 1, 1])
    coco = SizeAdaptiveDetectionLoss(m, settings=h.settings(thresholds=(32, 50)))
    aitod = SizeAdaptiveDetectionLoss(m, settings=replace(h.settings(thresholds=(32, 50)), bins="aitod"))
    cap, hook = {}, aitod.assigner.hook  # copies: upstream scales some of these tensors in place after the assignment
    aitod.assigner.hook = lambda *a: (cap.update(args=[t.clone() for t in a]), hook(*a))[1]
    loss_coco, loss_aitod = coco(p, b), aitod(p, b)
    assert torch.equal(loss_coco[0], loss_aitod[0])
    assert all(torch.equal(loss_coco[1][k], loss_aitod[1][k]) for k in loss_coco[1])
    counts = aitod.size_counts
    assert counts.shape == (5, 6) and torch.equal(counts[:, :3], coco.size_counts)
    assert counts[OBJECTS].tolist() == [3.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    assert counts[POSITIVES, 3:].sum() == counts[POSITIVES, :3].sum() > 0
    assert counts[POSITIVES, 3:5].sum() <= counts[POSITIVES, 0]
    # counted at the foreground slots (max_positives < every anchor), as reading every anchor counts
    from size_adaptive.loss import count_assignment, max_positives
    from size_adaptive.weighting import anchor_scores, size_buckets

    pd_bboxes, gt_bboxes, mask_gt, labels, target_bboxes, scores, fg_mask, target_gt_idx = cap["args"]
    assert max_positives(aitod, gt_bboxes) < fg_mask.numel()
    areas = aitod.box_areas(gt_bboxes)
    gt_bucket = torch.stack((size_buckets(areas, aitod.size_thresholds),
                             size_buckets(areas, aitod.size_tiny_thresholds) + 3), -1)
    every = count_assignment(new_counts(bins="aitod"), aitod.box_overlap, gt_bucket, mask_gt, pd_bboxes,
                             target_bboxes, fg_mask, target_gt_idx, anchor_scores(scores, labels), fg_mask.numel())
    assert torch.allclose(counts, every, rtol=1e-6, atol=0)
