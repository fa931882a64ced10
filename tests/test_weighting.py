"""The pure weighting rule: hand-computed areas, bucket edges, background anchors, size_norm balance, shapes, dtypes."""

import pytest
import torch

from size_adaptive.weighting import (
    anchor_scores,
    anchor_weights,
    balance_weights,
    box_areas,
    rotated_box_areas,
    size_buckets,
)

THRESHOLDS, WEIGHTS = (32, 96), (2.0, 1.5, 1.0)


def _box(w, h):
    return [10.0, 20.0, 10.0 + w, 20.0 + h]


def test_box_areas_are_width_times_height_and_zero_when_degenerate():
    boxes = torch.tensor([_box(20, 20), _box(31, 33), [5.0, 5.0, 5.0, 9.0], [9.0, 9.0, 4.0, 2.0]])
    # 20*20 = 400; 31*33 = 1023; zero width -> 0; negative extent -> 0, not a positive product of two negatives
    assert box_areas(boxes).tolist() == [400.0, 1023.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "w, h, bucket",
    [
        (31, 33, 0),  # 1023 px² < 32² = 1024: small
        (32, 32, 1),  # 1024 px² = 32²: medium (edges belong to the upper bucket, as in COCO)
        (95, 97, 1),  # 9215 px² < 96² = 9216: medium
        (96, 96, 2),  # 9216 px²: large
        (0, 10, 0),  # zero area: small
    ],
)
def test_bucket_edges(w, h, bucket):
    assert size_buckets(box_areas(torch.tensor([_box(w, h)])), THRESHOLDS).tolist() == [bucket]


def test_foreground_anchors_get_their_bucket_weight_and_background_anchors_get_one():
    target_bboxes = torch.tensor([[_box(31, 33), _box(32, 32), _box(96, 96), _box(5, 5)]])  # (1, 4, 4)
    fg_mask = torch.tensor([[True, True, True, False]])
    assert anchor_weights(target_bboxes, fg_mask, THRESHOLDS, WEIGHTS).tolist() == [[2.0, 1.5, 1.0, 1.0]]


def test_weights_have_the_anchor_shape_and_the_dtype_of_the_weight_table():
    bs, num_anchors = 16, 8400  # imgsz 640
    target_bboxes = torch.rand(bs, num_anchors, 4) * 640
    fg_mask = torch.rand(bs, num_anchors) > 0.9
    w = anchor_weights(target_bboxes, fg_mask, THRESHOLDS, torch.tensor(WEIGHTS, dtype=torch.float64))
    assert w.shape == (bs, num_anchors) and w.dtype == torch.float64
    assert anchor_weights(target_bboxes, fg_mask, THRESHOLDS, WEIGHTS).dtype == torch.float32


def test_a_small_object_is_small_at_every_stride():
    # The assigner gives every anchor its box in px; a 20x20 px box is 400 px² whether the anchor sits on the
    # stride-8, 16 or 32 grid. The seed's extra stride factor would have made it 160, 320 or 640 px wide.
    target_bboxes = torch.tensor([_box(20, 20)]).expand(1, 3, 4)  # one anchor per stride
    fg_mask = torch.ones(1, 3, dtype=torch.bool)
    assert anchor_weights(target_bboxes, fg_mask, THRESHOLDS, WEIGHTS).tolist() == [[2.0] * 3]


def test_rotated_box_area_is_width_times_height_whatever_the_angle():
    # xywhr: a 20x50 px box has area 1000 px² (small at 32/96) at every angle; its axis-aligned hull would not.
    boxes = torch.tensor([[100.0, 100.0, 20.0, 50.0, a] for a in (0.0, 0.3, 0.785, 1.5)] + [[5.0, 5.0, -2.0, 4.0, 0.1]])
    assert rotated_box_areas(boxes).tolist() == [1000.0] * 4 + [0.0]
    assert size_buckets(rotated_box_areas(boxes[:4]), THRESHOLDS).tolist() == [0] * 4


def _balance_case():
    # Two images, four anchors each. Foreground: scores 0.5 (weight 2), 0.25 (weight 1.5), 1.0 (weight 1), 0.25 (w 2).
    fg_mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    weights = torch.tensor([[2.0, 1.5, 1.0, 1.0], [1.0, 1.0, 2.0, 1.0]])
    score = torch.tensor([[0.5, 0.25, 0.0, 0.0], [1.0, 0.0, 0.25, 0.0]])
    target_scores = torch.zeros(2, 4, 3)
    target_scores[..., 1] = score  # one class per anchor, as the assigner gives
    return weights, fg_mask, target_scores, score


def test_size_norm_keeps_the_stock_target_score_sum_and_background_weights():
    weights, fg_mask, target_scores, score = _balance_case()
    w = balance_weights(weights, fg_mask, anchor_scores(target_scores, torch.ones(2, 4)))
    # stock sum 0.5 + 0.25 + 1 + 0.25 = 2.0; weighted 0.5*2 + 0.25*1.5 + 1*1 + 0.25*2 = 2.875; scale 2 / 2.875
    scale = 2.0 / 2.875
    expected = torch.tensor([[2 * scale, 1.5 * scale, 1.0, 1.0], [1 * scale, 1.0, 2 * scale, 1.0]])
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close((score * w).sum(), score.sum())
    assert torch.equal(w[~fg_mask], torch.ones(4))  # background anchors are not rescaled


def test_anchor_score_is_the_sum_over_classes_read_from_the_assigned_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (3, 7), generator=g)
    target_scores = torch.zeros(3, 7, 5).scatter_(2, labels.unsqueeze(-1), torch.rand(3, 7, 1, generator=g))
    assert torch.equal(anchor_scores(target_scores, labels), target_scores.sum(-1))
    # a batch without ground truth: the assigner labels every anchor num_classes and every score is 0
    assert torch.equal(anchor_scores(torch.zeros(3, 7, 5), torch.full((3, 7), 5)), torch.zeros(3, 7))
    assert anchor_scores(target_scores.half(), labels).dtype == torch.float32


def test_size_norm_turns_equal_weights_into_ones():
    _, fg_mask, _, score = _balance_case()
    for c in (0.5, 3.0, 1.7):
        w = balance_weights(torch.where(fg_mask, c, 1.0), fg_mask, score)
        torch.testing.assert_close(w, torch.ones(2, 4), rtol=1e-6, atol=0)


def test_size_norm_leaves_a_batch_without_foreground_scores_alone():
    weights, fg_mask, _, _ = _balance_case()
    no_fg = torch.zeros_like(fg_mask)
    assert torch.equal(balance_weights(torch.ones(2, 4), no_fg, torch.zeros(2, 4)), torch.ones(2, 4))
    # foreground anchors whose target scores are all 0 (no aligned prediction yet): weights stay as they are
    w = balance_weights(weights, fg_mask, torch.zeros(2, 4))
    assert torch.equal(w, weights) and torch.isfinite(w).all()


def test_weights_follow_the_device_of_the_boxes():
    target_bboxes = torch.zeros(2, 5, 4, device="meta")
    w = anchor_weights(target_bboxes, torch.zeros(2, 5, dtype=torch.bool, device="meta"),
                       torch.tensor(THRESHOLDS, device="meta"), torch.tensor(WEIGHTS, device="meta"))
    assert w.device.type == "meta" and w.shape == (2, 5)
