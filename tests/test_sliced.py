"""Sliced prediction and validation on whole images (size_adaptive.sliced, sliced_merge, sliced_val).

Most tests run a fake model that "sees" every bright rectangle of what it is given, as a detector sees an object: the
part of the rectangle inside a slice becomes that slice's box (and mask, and rotated box). So an object cut by a slice
border is seen cut, exactly where the real geometry puts the cut, and the expected merged result is known by hand.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from size_adaptive.sliced import (
    Detections,
    predict,
    predict_image,
    slice_windows,
    sliced_settings,
)
from size_adaptive.sliced_merge import merge, rotated_nms
from size_adaptive.sliced_val import crop_rle, val

NAMES = {0: "square", 1: "disc", 2: "triangle", 3: "cross"}


class SeeingModel:
    """Detects each connected bright region (red channel > 127) of every image it gets, at native resolution: box =
    the region's extent, score = green / 255 (halved where the region touches the image's edge: a detector is less
    sure of a cut object), class = blue // 64; masks = the region; OBB = its minimum-area rectangle. ``calls``
    records the image shapes of each forward pass."""

    def __init__(self, task: str = "detect"):
        self.task, self.names, self.calls = task, dict(NAMES), []

    def predict(self, images, **kwargs):
        self.calls.append([im.shape[:2] for im in images])
        return [self._result(im) for im in images]

    def _result(self, im):
        n, labels, stats, _ = cv2.connectedComponentsWithStats((im[..., 2] > 127).astype(np.uint8))
        rows, masks, rboxes = [], [], []
        for k in range(1, n):
            x, y, w, h, _ = stats[k]
            ys, xs = np.nonzero(labels == k)
            score, cls = im[ys[0], xs[0], 1] / 255, im[ys[0], xs[0], 0] // 64
            if x == 0 or y == 0 or x + w == im.shape[1] or y + h == im.shape[0]:
                score /= 2
            rows.append([x, y, x + w, y + h, score, cls])
            masks.append(labels == k)
            (cx, cy), (rw, rh), angle = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
            rboxes.append([cx, cy, rw + 1, rh + 1, np.deg2rad(angle), score, cls])  # +1: pixel centres to extent
        boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
        if self.task == "segment":
            m = torch.from_numpy(np.array(masks, dtype=np.uint8)).reshape(-1, *im.shape[:2])
            return Results(im, "", self.names, boxes=boxes, masks=m)
        if self.task == "obb":
            return Results(im, "", self.names, obb=torch.tensor(rboxes, dtype=torch.float32).reshape(-1, 7))
        return Results(im, "", self.names, boxes=boxes)


def canvas(height=600, width=1000):
    return np.zeros((height, width, 3), dtype=np.uint8)


def draw(image, x0, y0, x1, y1, score=0.9, cls=0):
    image[y0:y1, x0:x1] = (cls * 64, round(score * 255), 255)
    return image


def write_dataset(root, image, rows, name="a.jpg", yaml_extra=""):
    """A one-image YOLO dataset: ``rows`` are label lines (norm); PNG pixels so the fake model sees exact colours."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "val" / name.replace(".jpg", ".png")), image)
    (root / "labels" / "val" / name.replace(".jpg", ".txt")).write_text("".join(r + "\n" for r in rows))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames: {list(NAMES.values())}\n{yaml_extra}")
    return yaml


# --- windows and settings ---------------------------------------------------------------------------------------

def test_windows_are_sahi_slices_moved_back_inside_the_image():
    # slice 600, overlap int(0.2 * 600) = 120 px: x starts 0, then 480 -> 1080 > 1000, moved back to 400..1000
    assert slice_windows(600, 1000, 600, 0.2) == [[0, 0, 600, 600], [400, 0, 1000, 600]]
    assert slice_windows(480, 640, 1000, 0.2) == [[0, 0, 640, 480]]  # a slice larger than the image: the image


def test_keys_from_the_command_line_are_strings_and_parse_like_typed_ones():
    assert sliced_settings("640", "0.25", "False", "4") == sliced_settings(640, 0.25, False, 4)
    s = sliced_settings(640, conf=0.001)  # SAHI's rule below a confidence of 0.1: NMS with IOU
    assert (s.postprocess, s.match_metric, s.max_det) == ("NMS", "IOU", 500)
    s = sliced_settings(640, conf="0.25")
    assert (s.postprocess, s.match_metric) == ("GREEDYNMM", "IOS")
    assert sliced_settings(640, device="cpu").batch == 1 and sliced_settings(640, device="0").batch == 8  # default


@pytest.mark.parametrize("key, value, start", [
    ("slice", "abc", "slice: expected a whole number of px >= 0; got slice='abc'"),
    ("slice", -1, "slice: expected a whole number of px >= 0; got slice=-1"),
    ("slice", 640.5, "slice: expected a whole number"),
    ("slice", 0, "slice: expected a whole number of px >= 1 for sliced validation (slice=0 is the whole-image"),
    ("overlap", 1, "overlap: expected a fraction of the slice in [0, 1); got overlap=1"),
    ("overlap", "-0.1", "overlap: expected a fraction"),
    ("overlap", "x", "overlap: expected a fraction"),
    ("slice_whole", "maybe", "slice_whole: expected True or False"),
    ("batch", 0, "batch: expected a whole number of slices per forward pass >= 1"),
])
def test_bad_keys_are_refused_by_name_before_anything_is_written(tmp_path, key, value, start):
    image = draw(canvas(), 100, 100, 140, 140)
    yaml = write_dataset(tmp_path / "d", image, ["0 0.12 0.2 0.04 0.0667"])
    keys = {"slice": 320, key: value}
    with pytest.raises(ValueError) as e:
        val(SeeingModel(), str(yaml), **keys, project=str(tmp_path / "runs"), name="v")
    assert str(e.value).startswith(start)
    assert not (tmp_path / "runs").exists()


# --- the merge ----------------------------------------------------------------------------------------------------

def test_object_cut_by_a_slice_border_is_merged_into_one_detection():
    # Slices [0, 600) and [400, 1000). The object spans x 560..660: the first slice sees x 560..600 (cut at its
    # border), the second sees it whole. GREEDYNMM/IOS: intersection 40 x 60 over the smaller (cut) box = 1 -> merged.
    image = draw(canvas(), 560, 100, 660, 160)
    model = SeeingModel()
    d = predict_image(model, image, sliced_settings(600, slice_whole=False, batch=8, conf=0.25), "detect")
    assert len(d) == 1
    np.testing.assert_array_equal(d.boxes[0], [560, 100, 660, 160])
    assert model.calls == [[(600, 600), (600, 600)]]  # both slices in one forward pass


def test_object_seen_whole_by_two_overlapping_slices_is_counted_once(tmp_path):
    # x 450..550 lies in the overlap [400, 600) of both slices: two identical boxes (and the whole-image pass's
    # third), merged into one; validation then finds 1 true positive and no false positive.
    image = draw(canvas(), 450, 300, 550, 340)
    model = SeeingModel()
    d = predict_image(model, image, sliced_settings(600, batch=2, conf=0.001), "detect")
    assert len(d) == 1 and len(model.calls) == 2  # the slices' pass and one whole-image pass
    yaml = write_dataset(tmp_path / "d", image, ["0 0.5 0.5333333 0.1 0.0666667"])
    r = val(model, str(yaml), slice=600, project=str(tmp_path / "runs"), name="v", plots=False)
    assert r["metrics/precision(B)"] == pytest.approx(1, abs=1e-3) and r["metrics/recall(B)"] == pytest.approx(1)
    assert r["metrics/mAP_medium(B)"] == pytest.approx(1)  # 100 x 40 = 4000 px², medium; COCO AP of a perfect match
    saved = json.loads((tmp_path / "runs" / "v" / "sliced_val.json").read_text())
    assert saved["detection_cap"] == {"max_det": 500, "coco_max_dets": [1, 10, 500]}


def test_per_size_map_of_a_hand_built_case_is_known(tmp_path):
    # Image 1000 x 600 px, slices 600 px. Ground truth: small 20 x 20 at (100, 100); medium 50 x 50 at (300, 300);
    # large 120 x 120 at (700, 150).
    # The model sees: the small one exactly (IoU 1); a medium box shifted 16 px right: IoU 34*50 / (2*2500 - 1700) =
    # 1700 / 3300 = 0.515, a match at IoU 0.50 only (1 of COCO's 10 thresholds) -> AP 0.1; the large one not at all.
    image = draw(canvas(), 100, 100, 120, 120, score=0.9)
    draw(image, 316, 300, 366, 350, score=0.8)
    rows = ["0 0.11 0.18333333 0.02 0.03333333", "0 0.325 0.54166667 0.05 0.08333333",
            "0 0.76 0.35 0.12 0.2"]
    yaml = write_dataset(tmp_path / "d", image, rows)
    r = val(SeeingModel(), str(yaml), slice=600, project=str(tmp_path / "runs"), name="v", plots=False)
    assert r["metrics/mAP_small(B)"] == pytest.approx(1.0)
    assert r["metrics/mAP_medium(B)"] == pytest.approx(0.1)
    assert r["metrics/mAP_large(B)"] == pytest.approx(0.0)
    assert r["metrics/recall(B)"] == pytest.approx(2 / 3, abs=0.01)  # 2 of 3 objects found at IoU 0.5
    saved = json.loads((tmp_path / "runs" / "v" / "per_size_metrics.json").read_text())
    assert saved == {"mAP_small": pytest.approx(1.0), "mAP_medium": pytest.approx(0.1), "mAP_large": 0.0}


def test_mask_per_size_map_of_a_hand_built_case_is_known(tmp_path):
    # The case above with masks: the drawn regions are the masks, the labels are polygons (the boxes' corners),
    # rasterised by COCO onto the same pixels. Mask IoU = box IoU here: small 1 -> AP 1, medium 0.515 -> AP 0.1.
    image = draw(canvas(), 100, 100, 120, 120, score=0.9)
    draw(image, 316, 300, 366, 350, score=0.8)
    rows = ["0 0.1 0.16666667 0.12 0.16666667 0.12 0.2 0.1 0.2", "0 0.3 0.5 0.35 0.5 0.35 0.58333333 0.3 0.58333333"]
    yaml = write_dataset(tmp_path / "d", image, rows)
    r = val(SeeingModel("segment"), str(yaml), slice=600, project=str(tmp_path / "runs"), name="v", plots=False)
    for suffix in "BM":
        assert r[f"metrics/mAP_small({suffix})"] == pytest.approx(1.0)
        assert r[f"metrics/mAP_medium({suffix})"] == pytest.approx(0.1)
        assert r[f"metrics/mAP_large({suffix})"] == -1  # no large object
    assert r["metrics/recall(M)"] == pytest.approx(1, abs=0.01)
    src = tmp_path / "d" / "images" / "val"
    out = predict(SeeingModel("segment"), str(src), slice=600, save=False, save_txt=True, project=str(tmp_path),
                  name="p")
    rows = [np.array(line.split(), float) for line in (out["save_dir"] / "labels" / "a.txt").read_text().splitlines()]
    small = min(rows, key=lambda row: row[1])[1:].reshape(-1, 2) * (1000, 600)  # the outline of x, y 100..119 px
    assert small.min(0) == pytest.approx([100, 100], abs=1e-3) and small.max(0) == pytest.approx([119, 119], abs=1e-3)


def test_oriented_boxes_are_validated_by_their_rotated_overlap(tmp_path):
    # A 140 x 40 px bar rotated 30 degrees across the slice border, labelled by its 4 corners: found once, as a
    # rotated box close to its label (minimum-area rectangle of its pixels): a match at IoU 0.5 and above.
    image = canvas()
    corners = cv2.boxPoints(((590, 300), (140, 40), 30))
    cv2.fillPoly(image, [corners.round().astype(np.int32)], (0, 230, 255))
    row = "0 " + " ".join(f"{v:.6f}" for v in (corners / (1000, 600)).reshape(-1))
    yaml = write_dataset(tmp_path / "d", image, [row])
    r = val(SeeingModel("obb"), str(yaml), slice=600, project=str(tmp_path / "runs"), name="v", plots=False)
    assert r["metrics/recall(B)"] == pytest.approx(1) and r["metrics/mAP50(B)"] > 0.99
    assert 0.5 < r["metrics/mAP_medium(B)"] <= 1  # 140 x 40 = 5600 px²: medium


def test_greedy_merge_on_arrays_equals_sahis_object_prediction_merge():
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (60, 2))], 1).round(1)
    scores, cls = rng.uniform(0.1, 1, 60).round(3), rng.integers(0, 2, 60)
    ours = merge(Detections(boxes, scores, cls), "GREEDYNMM", "IOS", 0.5)
    preds = [ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(c), score=float(s))
             for b, s, c in zip(boxes, scores, cls)]
    theirs = GreedyNMMPostprocess(0.5, "IOS", class_agnostic=False)(preds)

    def key(rows):
        return sorted(tuple(np.round(r, 3)) for r in rows)

    assert len(ours) < 60  # some merged
    assert key(np.c_[ours.boxes, ours.scores, ours.cls]) == key(
        [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in theirs])


def test_rotated_nms_uses_the_rotated_overlap_not_the_enclosing_boxes():
    # Two 100 x 10 px bars crossing at 90 degrees (an X): their enclosing boxes are the same 78 x 78 px square (IoU
    # 1), their true overlap is 10 x 10 = 100 px² of 1900 (IoU 0.053): both stay. A copy of the first bar moved by
    # (1, 1), 1.41 px along its length (IoU 98.6 * 10 / (2000 - 986) = 0.97), is suppressed by it.
    rboxes = np.array([[50, 50, 100, 10, np.pi / 4], [50, 50, 100, 10, -np.pi / 4], [51, 51, 100, 10, np.pi / 4]])
    keep = rotated_nms(rboxes, np.array([0.9, 0.8, 0.7]), np.zeros(3, int), "IOU", 0.5)
    assert keep.tolist() == [0, 1]
    keep = rotated_nms(rboxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), "IOU", 0.5)  # other class: kept
    assert keep.tolist() == [0, 1, 2]


def test_oriented_object_cut_by_a_border_is_one_rotated_box():
    # A 140 x 40 px bar rotated 30 degrees, centred at x = 590 (across the first slice's border at 600): the
    # second slice sees it whole, the first sees part of it, less sure; IOS of the part with the whole is 1: the part
    # is suppressed.
    image = canvas()
    corners = cv2.boxPoints(((590, 300), (140, 40), 30)).astype(np.int32)
    cv2.fillPoly(image, [corners], (0, 230, 255))
    model = SeeingModel("obb")
    d = predict_image(model, image, sliced_settings(600, slice_whole=False, conf=0.25), "obb")
    assert len(d) == 1
    assert d.rboxes[0, :2] == pytest.approx([590, 300], abs=1.5)
    assert sorted(d.rboxes[0, 2:4]) == pytest.approx([40, 140], abs=3)


def test_mask_cut_by_a_border_is_merged_into_the_objects_pixels():
    image = draw(canvas(), 560, 100, 660, 160)
    d = predict_image(SeeingModel("segment"), image, sliced_settings(600, slice_whole=False, conf=0.25), "segment")
    assert len(d) == 1
    crop, x, y = d.masks[0]
    full = np.zeros(image.shape[:2], bool)
    full[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    np.testing.assert_array_equal(full, image[..., 2] > 127)


def test_mask_crop_rle_equals_the_whole_image_encoding():
    from faster_coco_eval.core import mask as mask_utils

    rng = np.random.default_rng(1)
    for x, y, h, w in [(0, 0, 5, 7), (13, 4, 9, 3), (30, 17, 3, 10), (37, 20, 1, 3)]:  # the last two touch the edges
        crop = rng.random((h, w)) > 0.4
        full = np.zeros((20, 40), dtype=np.uint8)
        full[y:y + h, x:x + w] = crop
        expected = mask_utils.encode(np.asfortranarray(full))
        assert crop_rle(crop, x, y, 20, 40)["counts"] == expected["counts"]


# --- a real model -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def real_model():
    """An untrained yolo11n with 4 classes, scores spread around 0.02 (random class weights) so that it detects."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = DetectionModel("yolo11n.yaml", nc=4, verbose=False)
    m.names = dict(NAMES)
    head = m.model[-1]
    for seq in head.one2many["cls_head"]:
        seq[-1].weight.data.normal_(0, 0.05)
        seq[-1].bias.data[: head.nc] = -4
    model = YOLO("yolo11n.yaml")
    model.model = m
    return model


def test_a_slice_covering_the_image_gives_the_unsliced_prediction(real_model, tiny_demo_yaml):
    # Tolerance: 1e-3 px and 1e-5 in score. One window is the image itself, so the same array meets the same
    # letterbox and the same forward pass; no whole-image pass is added and nothing is merged.
    image = cv2.imread(str(next((tiny_demo_yaml.parent / "images" / "val").glob("*.jpg"))))  # 640 x 480
    s = sliced_settings(1000, conf=0.01, imgsz=320, max_det=300)
    ours = predict_image(real_model, image, s, "detect")
    r = real_model.predict(image, imgsz=320, conf=0.01, iou=0.7, max_det=300, verbose=False)[0]
    assert len(ours) == len(r.boxes) > 10
    np.testing.assert_allclose(ours.boxes, r.boxes.xyxy.numpy(), atol=1e-3)
    np.testing.assert_allclose(ours.scores, r.boxes.conf.numpy(), atol=1e-5)
    np.testing.assert_array_equal(ours.cls, r.boxes.cls.numpy())


def test_batches_hold_at_most_batch_slices_and_the_whole_image_is_one_pass():
    image = canvas(1500, 1500)
    model = SeeingModel()
    predict_image(model, image, sliced_settings(400, batch=4, conf=0.25), "detect")
    # 400 px slices, 80 px overlap: x0 = 0, 320, 640, 960, then 1280 + 400 > 1500 moved back to 1100: 5 x 5 slices
    assert len(slice_windows(1500, 1500, 400, 0.2)) == 25
    assert [len(c) for c in model.calls] == [4, 4, 4, 4, 4, 4, 1, 1]  # 25 slices by 4, then the whole image
    assert model.calls[-1] == [(1500, 1500)]


def test_sliced_validation_of_a_real_model_writes_what_yolo_sa_val_writes(real_model, tmp_path, tiny_demo_yaml):
    r = val(real_model, str(tiny_demo_yaml), slice="320", imgsz="320", batch="4", project=str(tmp_path), name="v")
    run = tmp_path / "v"
    for f in ("per_size_metrics.json", "sliced_val.json", "BoxPR_curve.png", "confusion_matrix.png"):
        assert (run / f).is_file(), f
    keys = ["metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
            "metrics/mAP_small(B)", "metrics/mAP_medium(B)", "metrics/mAP_large(B)"]
    assert all(0 <= r[k] <= 1 or r[k] == -1 for k in keys)
    assert json.loads((run / "sliced_val.json").read_text())["split"] == "val"


# --- prediction's files ---------------------------------------------------------------------------------------

def test_predict_saves_images_and_labels_in_the_whole_images_norm(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "big.png"), draw(canvas(), 560, 100, 660, 160, score=0.8, cls=2))
    out = predict(SeeingModel(), str(src), slice=600, save_txt=True, save_conf=True, project=str(tmp_path),
                  name="p")
    assert out["detections"] == 1 and (out["save_dir"] / "big.png").is_file()
    values = [float(v) for v in (out["save_dir"] / "labels" / "big.txt").read_text().split()]
    # class 2, centre (610, 130) / (1000, 600), size (100, 60) / (1000, 600), score 204 / 255
    assert values == pytest.approx([2, 0.61, 130 / 600, 0.1, 0.1, 0.8], abs=1e-4)


# --- refusals ---------------------------------------------------------------------------------------------------

def test_a_yaml_without_a_val_set_is_refused(tmp_path):
    yaml = write_dataset(tmp_path / "d", canvas(), [])
    yaml.write_text(f"path: {tmp_path / 'd'}\ntrain: images/val\nnames: {list(NAMES.values())}\n")
    with pytest.raises(ValueError, match=r"^data: expected a dataset yaml with 'val_whole' or 'val'"):
        val(SeeingModel(), str(yaml), slice=320, project=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_val_whole_is_taken_before_val(tmp_path):
    yaml = write_dataset(tmp_path / "d", draw(canvas(), 100, 100, 140, 140), ["0 0.12 0.2 0.04 0.0667"])
    (tmp_path / "d" / "whole" / "images").mkdir(parents=True)
    (tmp_path / "d" / "whole" / "images" / "w.png").write_bytes(b"not an image")
    yaml.write_text(yaml.read_text() + "val_whole: whole/images\n")
    with pytest.raises(ValueError, match=r"^data: expected readable images; got .*w\.png"):
        val(SeeingModel(), str(yaml), slice=320, project=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_image_is_named_and_nothing_is_written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), canvas())
    (src / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ValueError, match=r"^source: expected readable images; got .*b\.jpg"):
        predict(SeeingModel(), str(src), slice=320, project=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_pose_is_refused_by_name(tmp_path):
    pose = SeeingModel("pose")
    with pytest.raises(ValueError, match=r"^model: expected a detect, segment or OBB model; got a pose model"):
        predict_image(pose, canvas(), sliced_settings(320))
    yaml = write_dataset(tmp_path / "d", canvas(), [], yaml_extra="kpt_shape: [4, 3]\n")
    with pytest.raises(ValueError, match=r"^data: expected a detect, segment or OBB dataset; got a pose dataset"):
        val(SeeingModel(), str(yaml), slice=320, project=str(tmp_path / "runs"))


# --- the benchmark script ---------------------------------------------------------------------------------------

def test_bench_prints_every_run_against_sahis_loop_and_refuses_a_zero_batch(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_sliced.py"
    spec = importlib.util.spec_from_file_location("bench_sliced", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit):
        bench.main(["--batch", "0"])
    assert bench.main(["--sizes", "400", "--memory-sizes", "", "--slice", "320", "--imgsz", "320", "--batch", "2",
                       "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for run in ("SAHI loop (batch 1)", "SAHI batch 2", "ours batch 1, no whole", "ours batch 2",
                "ours, whole-image pass only"):
        assert f"   400 {run}" in out, run
    assert "as fast as SAHI's loop" in out and "the whole-image pass costs" in out  # the summary line
