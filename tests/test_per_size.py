"""COCO mAP per object size with faster-coco-eval: hand-built cases with known AP per bucket, and the exact rotated IoU
that the OBB evaluation plugs into it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_utils
from matplotlib.path import Path as Polygon

from size_adaptive.per_size import coco_detections, coco_ground_truth, coco_per_size, rbox_corners, rotated_box_iou
from size_adaptive.validator import describe_per_size

# One 200x200 image. Ground truth: a small 30x30 box s, two medium 50x50 boxes m1, m2, nothing large.
GT_BOXES = [[10, 10, 30, 30], [60, 10, 50, 50], [60, 100, 50, 50]]  # ltwh px: s, m1, m2
PREDICTIONS = [  # in validation order
    {"category_id": 1, "score": 0.95, "bbox": [150, 150, 20, 20]},  # small, on nothing: a false positive, ranked first
    {"category_id": 1, "score": 0.9, "bbox": [10, 10, 30, 30]},  # s exactly
    {"category_id": 1, "score": 0.99, "bbox": [0, 80, 150, 110]},  # large, IoU 0.15 with m2: unmatched, outside small
    {"category_id": 1, "score": 0.8, "bbox": [60, 10, 50, 50]},  # m1 exactly                    and medium: ignored
]
# small: FP then TP -> precision 1/2 at recall 1 -> AP 0.5 at every IoU threshold.
# medium: m1 found (precision 1), m2 never: recall 0.5 -> 51 of COCO's 101 recall points at precision 1 -> 51/101.
# large: no ground truth -> -1.
KNOWN = {"small": 0.5, "medium": 51 / 101, "large": -1.0}


def _image(field: str, values: list, n_pred: int, shape=(200, 200)) -> dict:
    return {"height": shape[0], "width": shape[1], "category_id": [1] * len(values), field: values, "n_pred": n_pred}


def _xywhr(ltwh, angle: float = 0.0) -> list[float]:
    left, top, w, h = ltwh
    return [left + w / 2, top + h / 2, w, h, angle]


def _evaluate(field: str, iou_type: str, gts: list, predictions: list[dict]) -> dict[str, float]:
    images = [_image(field, gts, len(predictions))]
    gt = coco_ground_truth(images, iou_type, [1])
    return coco_per_size(gt, coco_detections(images, predictions, iou_type), iou_type)


def test_hand_built_boxes_give_the_known_ap_per_size():
    result = _evaluate("bbox", "bbox", GT_BOXES, PREDICTIONS)
    assert {b: result[b] for b in KNOWN} == pytest.approx(KNOWN, abs=1e-12)


def test_a_bucket_without_objects_reads_na():
    result = _evaluate("bbox", "bbox", GT_BOXES, PREDICTIONS)
    line = describe_per_size({b: result[b] for b in KNOWN})
    assert line.endswith("small 0.5000  medium 0.5050  large n/a (no objects)")


def test_rotated_boxes_at_angle_0_give_the_known_ap_per_size_of_the_same_boxes():
    rotated = [{**p, "rbox": _xywhr(p["bbox"])} for p in PREDICTIONS]
    result = _evaluate("rbox", "rbox", [_xywhr(b) for b in GT_BOXES], rotated)
    assert {b: result[b] for b in KNOWN} == pytest.approx(KNOWN, abs=1e-12)


def test_a_scene_turned_as_a_whole_keeps_its_ap_per_size():
    # Every box turned by 45° about the image centre: overlaps and areas w·h are unchanged, so are the APs. The
    # enclosing axis-aligned boxes grew: s's (30x30, 900 px², small) to 42.4 px square, 1800 px², medium.
    def turn(ltwh, a=math.pi / 4):
        x, y, w, h, _ = _xywhr(ltwh)
        dx, dy = x - 100, y - 100
        return [100 + dx * math.cos(a) - dy * math.sin(a), 100 + dx * math.sin(a) + dy * math.cos(a), w, h, a]

    rotated = [{**p, "rbox": turn(p["bbox"])} for p in PREDICTIONS]
    result = _evaluate("rbox", "rbox", [turn(b) for b in GT_BOXES], rotated)
    assert {b: result[b] for b in KNOWN} == pytest.approx(KNOWN, abs=1e-12)


def test_a_rotated_match_counts_only_at_the_thresholds_its_iou_reaches():
    # A 20x20 small square found as the same square turned 45°: IoU 1/sqrt(2) = 0.707, a match at 0.50, 0.55, ...,
    # 0.70 (5 of COCO's 10 thresholds) -> AP 0.5.
    gt = [[50, 50, 20, 20, 0.0]]
    result = _evaluate("rbox", "rbox", gt, [{"category_id": 1, "score": 0.9, "rbox": [50, 50, 20, 20, math.pi / 4]}])
    assert result == pytest.approx({"all": 0.5, "small": 0.5, "medium": -1.0, "large": -1.0}, abs=1e-12)


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]


def test_masks_fall_in_the_bucket_of_their_pixel_count_not_their_box():
    # An L of two 4 px wide strokes, 40x40 px: its box is medium (1600 px²), its mask small (2 * 160 - 16 = 304 px²).
    # Found exactly: mask AP 1 in small; the box evaluation of the same objects files it under medium.
    mask = np.zeros((100, 100), np.uint8)
    mask[10:50, 10:14] = 1
    mask[46:50, 10:50] = 1
    prediction = [{"category_id": 1, "score": 0.9, "segmentation": _rle(mask)}]
    result = _evaluate("segmentation", "segm", [_rle(mask)], prediction)
    assert result == pytest.approx({"all": 1.0, "small": 1.0, "medium": -1.0, "large": -1.0})
    box = _evaluate("bbox", "bbox", [[10, 10, 40, 40]], [{"category_id": 1, "score": 0.9, "bbox": [10, 10, 40, 40]}])
    assert box == pytest.approx({"all": 1.0, "small": -1.0, "medium": 1.0, "large": -1.0})


def test_predictions_are_paired_with_images_by_their_counts():
    images = [_image("bbox", [[10, 10, 20, 20]], 1), _image("bbox", [[60, 10, 50, 50]], 2)]
    preds = [{"category_id": 1, "score": s, "bbox": b, "file_name": "same.jpg"}
             for s, b in ((0.9, [10, 10, 20, 20]), (0.8, [60, 10, 50, 50]), (0.7, [0, 0, 5, 5]))]
    assert [d["image_id"] for d in coco_detections(images, preds, "bbox")] == [1, 2, 2]
    with pytest.raises(ValueError, match=r"predictions: expected 3 \(the images' n_pred\); got 2"):
        coco_detections(images, preds[:2], "bbox")


def test_an_unknown_iou_type_is_refused_by_name():
    with pytest.raises(ValueError, match="iou_type: expected one of bbox, segm, rbox; got 'keypoints'"):
        coco_per_size({"images": [], "annotations": [], "categories": []}, [], "keypoints")


def test_rotated_iou_of_hand_computed_pairs():
    # A 10x10 square against: itself turned 45° (overlap a regular octagon of area (2·sqrt(2) - 2)·100, IoU
    # 1/sqrt(2)); itself; itself moved by half a side (overlap 50, union 150); a distant box; itself as 10x10 at 90°.
    square = [0, 0, 10, 10, 0]
    others = [[0, 0, 10, 10, math.pi / 4], square, [5, 0, 10, 10, 0], [100, 0, 1, 1, 0], [0, 0, 10, 10, math.pi / 2]]
    assert rotated_box_iou([square], others)[0] == pytest.approx([1 / math.sqrt(2), 1, 1 / 3, 0, 1], abs=1e-12)
    assert rotated_box_iou([[0, 0, 4, 2, 0]], [[0, 0, 2, 4, math.pi / 2]])[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_rotated_iou_at_angle_0_is_faster_coco_eval_box_iou():
    rng = np.random.default_rng(0)
    xywh = rng.uniform([0, 0, 1, 1], [100, 100, 60, 60], (40, 4))
    ltwh = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, 2:]], 1)
    xywhr = np.concatenate([xywh, np.zeros((40, 1))], 1)
    ours = rotated_box_iou(xywhr, xywhr[::-1])
    reference = np.asarray(mask_utils.iou(ltwh.tolist(), ltwh[::-1].tolist(), [0] * 40))
    assert (reference > 0).sum() > 40 and np.abs(ours - reference).max() < 1e-12


def test_rotated_iou_agrees_with_a_point_count_on_a_fine_grid():
    # Reference independent of our geometry: the share of a 0.05 px grid's points inside both boxes over those
    # inside either (matplotlib's point-in-polygon), for random pairs that overlap.
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(0, 100, 0.05), np.arange(0, 100, 0.05)), -1).reshape(-1, 2)
    for _ in range(4):
        a = np.array([[*rng.uniform(45, 55, 2), *rng.uniform(5, 40, 2), rng.uniform(0, math.pi)]])
        b = np.array([[*(a[0, :2] + rng.uniform(-4, 4, 2)), *rng.uniform(5, 40, 2), rng.uniform(0, math.pi)]])
        ia, ib = (Polygon(rbox_corners(x)[0]).contains_points(grid) for x in (a, b))
        reference = (ia & ib).sum() / (ia | ib).sum()
        assert reference > 0.05 and rotated_box_iou(a, b)[0, 0] == pytest.approx(reference, abs=2e-3)


# --- size_bins=aitod: AI-TOD's very tiny (< 8²) and tiny (8²..16²) inside COCO's small ----------------------------

# One 300x300 image, one object per bin (ltwh px, side sqrt(area)): very tiny 6, tiny 12, small 24, medium 50,
# large 120.
AITOD_GT = [[10, 10, 6, 6], [40, 10, 12, 12], [80, 10, 24, 24], [10, 100, 50, 50], [150, 150, 120, 120]]
AITOD_PREDICTIONS = [
    {"category_id": 1, "score": 0.9, "bbox": [40, 10, 12, 12]},  # tiny exactly; the very tiny one is never found
    {"category_id": 1, "score": 0.9, "bbox": [80, 10, 24, 24]},  # the 24 px one exactly
    {"category_id": 1, "score": 0.95, "bbox": [80, 100, 50, 50]},  # medium-sized, on nothing: a FP ranked first
    {"category_id": 1, "score": 0.8, "bbox": [10, 100, 50, 50]},  # medium exactly
    {"category_id": 1, "score": 0.7, "bbox": [178, 150, 120, 120]},  # large moved 28 px: IoU 92/148 = 0.62
]
# very tiny: its only object missed -> 0.  tiny: found, nothing else of its size -> 1.
# small (COCO's [0, 32²], all three): 2 of 3 found at precision 1 -> recall points 0..0.66 -> 67/101.
# medium: FP then TP -> precision 1/2 at recall 1 -> 0.5.  large: IoU 0.62 reaches 0.50, 0.55, 0.60 -> 3/10.
AITOD_KNOWN = {"very_tiny": 0.0, "tiny": 1.0, "small": 67 / 101, "medium": 0.5, "large": 0.3}


def _evaluate_bins(field: str, iou_type: str, gts: list, predictions: list[dict], bins: str,
                   shape=(300, 300)) -> dict[str, float]:
    images = [_image(field, gts, len(predictions), shape)]
    gt = coco_ground_truth(images, iou_type, [1])
    return coco_per_size(gt, coco_detections(images, predictions, iou_type), iou_type, bins=bins)


def test_aitod_bins_give_the_known_ap_of_one_object_per_bin():
    result = _evaluate_bins("bbox", "bbox", AITOD_GT, AITOD_PREDICTIONS, "aitod")
    assert list(result) == ["all", "very_tiny", "tiny", "small", "medium", "large"]
    assert {b: result[b] for b in AITOD_KNOWN} == pytest.approx(AITOD_KNOWN, abs=1e-12)
    rotated = [{**p, "rbox": _xywhr(p["bbox"])} for p in AITOD_PREDICTIONS]
    result = _evaluate_bins("rbox", "rbox", [_xywhr(b) for b in AITOD_GT], rotated, "aitod")
    assert {b: result[b] for b in AITOD_KNOWN} == pytest.approx(AITOD_KNOWN, abs=1e-12)


def test_coco_bins_report_no_tiny_bins():
    result = _evaluate_bins("bbox", "bbox", AITOD_GT, AITOD_PREDICTIONS, "coco")
    assert list(result) == ["all", "small", "medium", "large"]


def _random_scene(seed: int, n_images: int = 6):
    """Images with boxes of every size (sides about 3..200 px) and detections: jittered copies with random scores,
    misses, and false positives."""
    rng = np.random.default_rng(seed)
    images, predictions = [], []
    for _ in range(n_images):
        n = int(rng.integers(5, 25))
        wh = np.exp(rng.uniform(np.log(3), np.log(200), (n, 1)) + rng.uniform(-0.2, 0.2, (n, 2)))
        lt = rng.uniform(0, 400, (n, 2))
        gts = np.concatenate([lt, wh], 1)
        found = gts[rng.random(n) < 0.7]
        jitter = found + rng.normal(0, 1, found.shape) * np.concatenate([found[:, 2:], found[:, 2:]], 1) * 0.04
        jitter[:, 2:] = np.abs(jitter[:, 2:]) + 0.5
        fps = np.concatenate([rng.uniform(0, 400, (4, 2)), np.exp(rng.uniform(np.log(3), np.log(150), (4, 2)))], 1)
        dets = np.concatenate([jitter, fps])
        preds = [{"category_id": 1, "score": float(s), "bbox": b.tolist()} for b, s in zip(dets, rng.random(len(dets)))]
        images.append(_image("bbox", gts.tolist(), len(preds), (560, 560)))
        predictions += preds
    return images, predictions


@pytest.mark.parametrize("seed", [0, 1])
def test_aitod_bins_leave_all_small_medium_and_large_as_faster_coco_eval_default_ranges_give_them(seed):
    from faster_coco_eval import COCO, COCOeval_faster

    images, predictions = _random_scene(seed)
    gt = coco_ground_truth(images, "bbox", [1])
    dets = coco_detections(images, predictions, "bbox")
    coco, aitod = coco_per_size(gt, dets, "bbox"), coco_per_size(gt, dets, "bbox", bins="aitod")
    # today's numbers: faster-coco-eval with its own default area ranges, as Ultralytics' detect evaluation runs it
    cocogt = COCO(gt)
    stock = COCOeval_faster(cocogt, cocogt.loadRes([dict(d) for d in dets]), iouType="bbox",
                            print_function=lambda *a: None)
    stock.evaluate()
    stock.accumulate()
    stock.summarize()
    today = {b: stock.stats_as_dict[f"AP_{b}"] for b in ("all", "small", "medium", "large")}
    assert 0 < today["small"] < 1 and 0 < today["medium"] < 1 and 0 < today["large"] < 1  # a scene that tells
    assert coco == today
    assert {b: aitod[b] for b in today} == today
    assert -1 < aitod["very_tiny"] < 1 and -1 < aitod["tiny"] < 1 and aitod["very_tiny"] != aitod["tiny"]


def test_unknown_bins_are_refused_by_the_key_name():
    with pytest.raises(ValueError, match=r"size_bins: expected one of \['coco', 'aitod'\]; got 'visdrone'"):
        _evaluate_bins("bbox", "bbox", AITOD_GT, AITOD_PREDICTIONS, "visdrone")
