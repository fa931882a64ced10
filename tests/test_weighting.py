"""The pure weighting rule: hand-computed areas, bucket edges, background anchors, shapes and dtypes."""

import pytest
import torch

from size_adaptive.weighting import anchor_weights, box_areas, bucket_counts, size_buckets

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
    assert anchor_weights(target_bboxes, torch.ones(1, 3, dtype=torch.bool), THRESHOLDS, WEIGHTS).tolist() == [[2.0] * 3]


def test_bucket_counts_count_foreground_anchors_only():
    target_bboxes = torch.tensor([[_box(10, 10), _box(10, 10), _box(40, 40), _box(100, 100), _box(10, 10)]])
    fg_mask = torch.tensor([[True, True, True, True, False]])
    bucket = size_buckets(box_areas(target_bboxes), THRESHOLDS)
    assert bucket_counts(bucket, fg_mask).tolist() == [2.0, 1.0, 1.0]


def test_weights_follow_the_device_of_the_boxes():
    target_bboxes = torch.zeros(2, 5, 4, device="meta")
    w = anchor_weights(target_bboxes, torch.zeros(2, 5, dtype=torch.bool, device="meta"),
                       torch.tensor(THRESHOLDS, device="meta"), torch.tensor(WEIGHTS, device="meta"))
    assert w.device.type == "meta" and w.shape == (2, 5)
