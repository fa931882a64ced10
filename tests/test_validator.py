"""The validators' per-size mAP: the log line, the quiet COCO evaluation during training, and the segment, pose and OBB
validators run over demo data with predictions made from the labels (no model), against known answers and against
Ultralytics' own detect evaluation."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from faster_coco_eval import COCOeval_faster
from ultralytics.data.utils import check_det_dataset
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.models.yolo.obb import OBBValidator
from ultralytics.models.yolo.pose import PoseValidator
from ultralytics.models.yolo.segment import SegmentationValidator
from ultralytics.utils import LOGGER

from conftest import TINY_DEMO
from size_adaptive.demo import demo_data
from size_adaptive.validator import (
    LABELS,
    VALIDATORS,
    SizeAdaptiveOBBValidator,
    SizeAdaptiveValidator,
    _quiet,
    describe_per_size,
    per_size_columns,
    with_per_size_columns,
)

SMALL, MEDIUM = 32**2, 96**2  # COCO's area edges, original px²
DEMO_SHAPE = (480, 640)  # demo images, (h, w) px
UPSTREAM = {"detect": DetectionValidator, "segment": SegmentationValidator, "pose": PoseValidator, "obb": OBBValidator}


def test_per_size_line_reads_na_for_a_bucket_without_objects():
    line = describe_per_size({"small": 0.0301, "medium": -1.0, "large": 0.25})
    assert line == ("mAP50-95 by object size (COCO areas, original px): small 0.0301  medium n/a (no objects)  "
                    "large 0.2500")
    assert describe_per_size({"small": 0.5, "medium": 0.25, "large": -1.0}, "M") == (
        "mask mAP50-95 by object size (COCO areas, original px): small 0.5000  medium 0.2500  large n/a (no objects)")


def test_quiet_drops_info_records_and_keeps_warnings(caplog):
    logger = logging.getLogger("size-adaptive-test")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger=logger.name):
        with _quiet(logger):
            logger.info("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000")
            logger.warning("faster-coco-eval unable to run")
        logger.info("after")
    assert [r.getMessage() for r in caplog.records] == ["faster-coco-eval unable to run", "after"]
    assert logger.level == logging.INFO


def test_per_size_columns_follow_the_task_metrics_box_first():
    # The trainer places these after the task's last metric column in rows that were not validated; the validators
    # add them in the same order.
    assert per_size_columns(VALIDATORS["segment"].per_size_kinds) == [
        "metrics/mAP_small(B)", "metrics/mAP_medium(B)", "metrics/mAP_large(B)",
        "metrics/mAP_small(M)", "metrics/mAP_medium(M)", "metrics/mAP_large(M)"]
    for task in ("detect", "pose", "obb"):
        assert per_size_columns(VALIDATORS[task].per_size_kinds) == [
            "metrics/mAP_small(B)", "metrics/mAP_medium(B)", "metrics/mAP_large(B)"]


# --- the validators over demo data, predictions made from the labels -------------------------------------------------


def _validate(cls, data_yaml, predict, tmp_path: Path, training: bool = True, imgsz: int = 128, **args):
    """Run validator ``cls`` over the val split of ``data_yaml`` as ``BaseValidator.__call__`` (8.4.190) does, with
    ``predict(validator, si, batch)`` in place of a model; return the validator and its stats."""
    v = cls(save_dir=tmp_path, args={"data": str(data_yaml), "imgsz": imgsz, "batch": 4, "save_json": True,
                                     "plots": False, "workers": 0, "device": "cpu", **args})
    v.data, v.device, v.stride, v.training = check_det_dataset(str(data_yaml)), torch.device("cpu"), 32, training
    v.dataloader = v.get_dataloader(v.data["val"], 4)
    return v, _validation(v, predict)


def _validation(v, predict) -> dict:
    """One validation by ``v`` (set up by ``_validate``), as ``BaseValidator.__call__`` (8.4.190) runs it."""
    v.init_metrics(SimpleNamespace(names=v.data["names"]))
    for batch in v.dataloader:
        batch = v.preprocess(batch)
        v.update_metrics([predict(v, si, batch) for si in range(len(batch["im_file"]))], batch)
    stats = v.get_stats()
    if not v.training and v.jdict:
        stats = v.eval_json(stats)
    return stats


def _labels(v, si: int, batch: dict) -> dict:
    """The image's labels as the task's own ``_prepare_batch`` (8.4.190) gives them, network-input px."""
    return UPSTREAM[v.args.task]._prepare_batch(v, si, batch)


def _perfect(v, si: int, batch: dict) -> dict:
    """Predictions equal to the labels: every box, mask and keypoint, confidence 1."""
    labels = _labels(v, si, batch)
    keys = [k for k in ("bboxes", "masks", "keypoints") if k in labels and (k != "masks" or len(labels["cls"]))]
    return {"conf": torch.ones(len(labels["cls"])), "cls": labels["cls"].float(), **{k: labels[k] for k in keys}}


def _area(row: str, task: str) -> float:
    """The original-px² area of a label row: w·h of its box (detect, pose; segment: the polygon's extent) or of its
    rotated box (obb: the lengths of two sides between its corners)."""
    h, w = DEMO_SHAPE
    values = np.array(row.split()[1:], dtype=float)
    if task in ("detect", "pose"):
        return values[2] * w * values[3] * h
    xy = values[: 8 if task == "obb" else None].reshape(-1, 2) * (w, h)
    if task == "obb":
        return np.linalg.norm(xy[1] - xy[0]) * np.linalg.norm(xy[2] - xy[1])
    return np.prod(xy.max(0) - xy.min(0))


def _without_large_objects(data_yaml, task: str, folder: Path) -> tuple[Path, list[float]]:
    """A copy of a demo data set's val split whose labels drop every large object (>= 96² px²);
    returns its data.yaml and the areas of the objects kept."""
    src = Path(data_yaml).parent
    shutil.copytree(src / "images" / "val", folder / "images" / "val")  # a link would be resolved to src's labels
    (folder / "labels" / "val").mkdir(parents=True)
    areas = []
    for f in (src / "labels" / "val").glob("*.txt"):
        rows = [r for r in f.read_text().split("\n") if r.strip() and _area(r, task) < MEDIUM]
        areas += [_area(r, task) for r in rows]
        (folder / "labels" / "val" / f.name).write_text("\n".join(rows) + "\n")
    text = Path(data_yaml).read_text().replace(f"path: {src}", f"path: {folder}")
    (folder / "data.yaml").write_text(text.replace("train: images/train", "train: images/val"))
    return folder / "data.yaml", areas


@pytest.mark.parametrize("task", ["segment", "pose", "obb"])
def test_predictions_equal_to_the_labels_score_1_in_every_bucket_that_holds_objects(tmp_path, task):
    # Labels and predictions travel different roads to original px (ours: the recorded labels; theirs: Ultralytics'
    # scale_preds and pred_to_json, rounded to 3 decimals): only if both land on the same pixels, in the same image,
    # does every bucket score 1. The large objects are dropped from the labels, so that bucket must read -1 (no
    # objects), small and medium 1. mask_ratio=1 rasterises the masks at full size, so no 8 px object loses its mask.
    data, areas = _without_large_objects(demo_data(*TINY_DEMO, task=task), task, tmp_path / "data")
    assert min(areas) < SMALL < max(areas) < MEDIUM  # small and medium objects, no large ones
    v, stats = _validate(VALIDATORS[task], data, _perfect, tmp_path / "val", imgsz=320, mask_ratio=1)
    expected = {"small": 1.0, "medium": 1.0, "large": -1.0}
    assert {b: stats[f"metrics/mAP_{b}(B)"] for b in expected} == pytest.approx(expected)
    if task == "segment":  # buckets by mask area: small objects certainly, medium ones perhaps (masks fill less)
        masks = {b: stats[f"metrics/mAP_{b}(M)"] for b in expected}
        assert masks["small"] == pytest.approx(1.0) and masks["medium"] in (1.0, -1.0) and masks["large"] == -1.0
    assert len(v.size_images) == TINY_DEMO[1] and sum(i["n_pred"] for i in v.size_images) == len(v.jdict) > 0


def test_standalone_segment_validation_logs_and_saves_box_and_mask_map_per_size(tmp_path):
    data = demo_data(*TINY_DEMO, task="segment")
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        _, stats = _validate(VALIDATORS["segment"], data, _perfect, tmp_path, training=False, imgsz=320, mask_ratio=1)
    finally:
        LOGGER.removeHandler(handler)
    saved = json.loads((tmp_path / "per_size_metrics.json").read_text())
    assert saved == {**{f"mAP_{b}": stats[f"metrics/mAP_{b}(B)"] for b in ("small", "medium", "large")},
                     **{f"mask_mAP_{b}": stats[f"metrics/mAP_{b}(M)"] for b in ("small", "medium", "large")}}
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", r) for r in records if "by object size" in r]  # without colours
    assert lines == [
        "size_adaptive: mAP50-95 by object size (COCO areas, original px): small 1.0000  medium 1.0000  large 1.0000",
        "size_adaptive: mask mAP50-95 by object size (COCO areas, original px): small 1.0000  medium 1.0000  "
        "large 1.0000"]
    assert any("area= small" in r for r in records)  # faster-coco-eval's summary at a standalone validation


def test_training_validation_is_quiet_saves_nothing_and_converts_the_labels_once(tmp_path, monkeypatch):
    data = demo_data(*TINY_DEMO, task="obb")
    v, stats = _validate(VALIDATORS["obb"], data, _perfect, tmp_path, training=True)
    assert stats["metrics/mAP_small(B)"] == pytest.approx(1.0)
    assert not (tmp_path / "per_size_metrics.json").exists()
    calls = []
    monkeypatch.setitem(LABELS, "rbox", lambda pbatch: calls.append(pbatch))  # the next epoch's validation
    assert _validation(v, _perfect) == stats and calls == []


# --- OBB at angle 0 against Ultralytics' own detect evaluation -------------------------------------------------------

TARGET_IOUS = (0.975, 0.825, 0.675, 0.525, 0.3)  # each 0.025 or more from every COCO threshold 0.50:0.05:0.95


def _obb_twin(detect_yaml: Path, folder: Path) -> Path:
    """The detect demo's val split as OBB data: the same images, each box as its 4 corners (angle 0)."""
    src = Path(detect_yaml).parent
    shutil.copytree(src / "images" / "val", folder / "images" / "val")  # a link would be resolved to src's labels
    (folder / "labels" / "val").mkdir(parents=True)
    for f in (src / "labels" / "val").glob("*.txt"):
        rows = []
        for row in f.read_text().split("\n"):
            if row.strip():
                c, x, y, w, h = row.split()
                x, y, w, h = map(float, (x, y, w, h))
                x0, y0, x1, y1 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
                rows.append(f"{c} {x0:.6f} {y0:.6f} {x1:.6f} {y0:.6f} {x1:.6f} {y1:.6f} {x0:.6f} {y1:.6f}")
        (folder / "labels" / "val" / f.name).write_text("\n".join(rows) + "\n")
    text = Path(detect_yaml).read_text().replace(f"path: {src}", f"path: {folder}")
    (folder / "data.yaml").write_text(text.replace("train: images/train", "train: images/val"))
    return folder / "data.yaml"


def _imperfect(xyxy: torch.Tensor, cls: torch.Tensor, nc: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions from labels xyxy (n, 4) px: object k shifted along x (towards the image centre) so that its IoU
    with its label is TARGET_IOUS[k % 5], every 4th one missed, and object 0 repeated with the next class (a false
    positive) at the top score. Returns boxes xyxy, confidences, classes."""
    boxes, conf, classes = [], [], []
    for k, (box, c) in enumerate(zip(xyxy.tolist(), cls.tolist())):
        if k % 4 == 3:
            continue
        t, w = TARGET_IOUS[k % 5], box[2] - box[0]
        d = w * (1 - t) / (1 + t) * (1 if box[0] < 64 else -1)  # IoU (w - d) / (w + d) = t
        boxes.append([box[0] + d, box[1], box[2] + d, box[3]])
        conf.append(0.9 - 0.01 * k)
        classes.append(c)
    boxes.append(xyxy[0].tolist())
    conf.append(0.99)
    classes.append((cls[0].item() + 1) % nc)
    return torch.tensor(boxes), torch.tensor(conf), torch.tensor(classes)


def _detect_prediction(v, si, batch):
    labels = _labels(v, si, batch)
    boxes, conf, cls = _imperfect(labels["bboxes"], labels["cls"], len(v.names))
    return {"bboxes": boxes, "conf": conf, "cls": cls}


def _obb_prediction(v, si, batch):
    labels = _labels(v, si, batch)
    from ultralytics.utils import ops

    corners = ops.xywhr2xyxyxyxy(labels["bboxes"])  # (n, 4, 2): the label's rotated box, angle 0 or pi/2
    xyxy = torch.cat([corners.amin(1), corners.amax(1)], 1)
    boxes, conf, cls = _imperfect(xyxy, labels["cls"], len(v.names))
    xywhr = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2], torch.zeros(len(boxes), 1)], 1)
    return {"bboxes": xywhr, "conf": conf, "cls": cls}


def test_obb_labels_at_angle_0_give_the_per_size_map_of_ultralytics_detect_evaluation(tmp_path, tiny_demo_yaml):
    # The same boxes and predictions, once through Ultralytics' detect COCO evaluation (its own ground truth, box IoU)
    # and once as rotated boxes at angle 0 through ours (our ground truth, exact rotated IoU). Tolerance 1e-9: every
    # IoU lies 0.025 or more from a COCO threshold, so the 3-decimal rounding of the saved predictions cannot change
    # a match, and the AP arithmetic is faster-coco-eval's in both.
    obb_yaml = _obb_twin(tiny_demo_yaml, tmp_path / "obb-data")
    _, detect = _validate(SizeAdaptiveValidator, tiny_demo_yaml, _detect_prediction, tmp_path / "detect")
    _, obb = _validate(SizeAdaptiveOBBValidator, obb_yaml, _obb_prediction, tmp_path / "obb")
    columns = per_size_columns(SizeAdaptiveOBBValidator.per_size_kinds)
    values = [detect[c] for c in columns]
    assert 0 < values[0] < 1 and values[0] != values[1]  # a case with misses, false positives and partial matches
    assert [obb[c] for c in columns] == pytest.approx(values, abs=1e-9)


def test_an_unvalidated_row_gets_the_per_size_columns_after_the_task_metrics_and_keeps_its_values():
    row = {"metrics/precision(B)": 0.1, "metrics/mAP50-95(B)": 0.2, "metrics/mAP50-95(M)": 0.3, "val/box_loss": 4.0}
    out = with_per_size_columns(row, VALIDATORS["segment"].per_size_kinds)
    assert list(out) == ["metrics/precision(B)", "metrics/mAP50-95(B)", "metrics/mAP50-95(M)",
                         *per_size_columns(VALIDATORS["segment"].per_size_kinds), "val/box_loss"]
    assert [out[k] for k in row] == list(row.values()) and out["metrics/mAP_large(M)"] == 0.0
    assert with_per_size_columns(out, VALIDATORS["segment"].per_size_kinds) == out  # once is enough


# --- what the per-size validators rely on upstream (Ultralytics 8.4.190, faster-coco-eval 1.8) ---------------------


def test_upstream_prepares_each_image_once_then_adds_its_predictions_to_jdict():
    import inspect

    source = inspect.getsource(DetectionValidator.update_metrics)
    assert source.count("self._prepare_batch(si, batch)") == 1 and "self.pred_to_json(predn_scaled, pbatch)" in source
    assert "self._prepare_batch" not in inspect.getsource(DetectionValidator.plot_predictions)
    assert '"rbox"' in inspect.getsource(OBBValidator.pred_to_json)
    assert '["segmentation"] = r' in inspect.getsource(SegmentationValidator.pred_to_json)
    assert ".byte()" in inspect.getsource(SegmentationValidator.scale_preds)  # we resample the labels the same way


def test_faster_coco_eval_computes_iou_per_image_and_category_through_the_method_we_replace():
    import inspect

    from faster_coco_eval import COCOeval_faster

    assert "computeIoU = self.computeIoU" in inspect.getsource(COCOeval_faster.evaluate)
    assert list(inspect.signature(COCOeval_faster.computeIoU).parameters) == ["self", "imgId", "catId"]


# --- size_bins=aitod: very tiny and tiny beside COCO's columns ---------------------------------------------------

AITOD = [f"metrics/mAP_{b}(B)" for b in ("very_tiny", "tiny", "small", "medium", "large")]


class _AitodDetect(SizeAdaptiveValidator):
    size_bins = "aitod"


class _AitodOBB(SizeAdaptiveOBBValidator):
    size_bins = "aitod"


def test_aitod_columns_come_before_coco_s_in_every_kind_and_move_there_in_a_validated_row():
    assert per_size_columns(VALIDATORS["segment"].per_size_kinds, "aitod") == [
        *AITOD, *(c.replace("(B)", "(M)") for c in AITOD)]
    validated = {"metrics/mAP50-95(B)": 0.2, "fitness": 0.3, "metrics/mAP_small(B)": 0.1, "metrics/mAP_medium(B)": 0.2,
                 "metrics/mAP_large(B)": 0.3, "metrics/mAP_very_tiny(B)": 0.4, "metrics/mAP_tiny(B)": 0.5}
    out = with_per_size_columns(validated, VALIDATORS["detect"].per_size_kinds, "aitod")
    assert list(out) == ["metrics/mAP50-95(B)", "fitness", *AITOD] and all(out[k] == validated[k] for k in validated)
    unvalidated = with_per_size_columns({"metrics/mAP50-95(B)": 0.2, "val/box_loss": 1.0},
                                        VALIDATORS["detect"].per_size_kinds, "aitod")
    assert list(unvalidated) == ["metrics/mAP50-95(B)", *AITOD, "val/box_loss"]


def test_aitod_line_names_every_bin():
    line = describe_per_size({"very_tiny": 0.0, "tiny": -1.0, "small": 0.5, "medium": 0.25, "large": 1.0})
    assert line == ("mAP50-95 by object size (COCO and AI-TOD areas, original px): very tiny 0.0000  tiny n/a (no "
                    "objects)  small 0.5000  medium 0.2500  large 1.0000")


def test_aitod_bins_of_detect_and_of_obb_at_angle_0_agree_and_leave_coco_s_columns_as_they_were(tmp_path,
                                                                                               tiny_demo_yaml,
                                                                                               monkeypatch):
    # Detect adds very tiny and tiny to Ultralytics' own evaluation (its ground truth gdict); OBB evaluates its
    # recorded labels with the exact rotated IoU: the same boxes at angle 0 give the same five values. The COCO
    # columns are those of the COCO bins.
    # faster-coco-eval runs once per detect validation with either bins.
    obb_yaml = _obb_twin(tiny_demo_yaml, tmp_path / "obb-data")
    runs = []
    evaluate = COCOeval_faster.evaluate
    monkeypatch.setattr(COCOeval_faster, "evaluate", lambda self: runs.append(self.params.areaRngLbl) or evaluate(self))
    _, coco = _validate(SizeAdaptiveValidator, tiny_demo_yaml, _detect_prediction, tmp_path / "coco")
    _, detect = _validate(_AitodDetect, tiny_demo_yaml, _detect_prediction, tmp_path / "detect")
    assert [list(labels) for labels in runs] == [["all", "small", "medium", "large"],
                                                 ["all", "very_tiny", "tiny", "small", "medium", "large"]]
    _, obb = _validate(_AitodOBB, obb_yaml, _obb_prediction, tmp_path / "obb")
    assert [k for k in detect if k in AITOD] == AITOD and [k for k in obb if k in AITOD] == AITOD
    assert {c: detect[c] for c in AITOD[2:]} == {c: coco[c] for c in AITOD[2:]}
    assert "metrics/mAP_tiny(B)" not in coco
    assert 0 < detect["metrics/mAP_tiny(B)"] < 1 and detect["metrics/mAP_tiny(B)"] != detect["metrics/mAP_small(B)"]
    assert [obb[c] for c in AITOD] == pytest.approx([detect[c] for c in AITOD], abs=1e-9)


def test_standalone_detect_validation_saves_and_logs_the_aitod_bins(tmp_path, tiny_demo_yaml):
    # Predictions equal to the labels: every bin that holds objects scores 1 (the val split has very tiny and tiny
    # ones, the demo generates both).
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    LOGGER.addHandler(handler)
    try:
        _, stats = _validate(_AitodDetect, tiny_demo_yaml, _perfect, tmp_path, training=False, imgsz=320)
    finally:
        LOGGER.removeHandler(handler)
    assert [stats[c] for c in AITOD] == pytest.approx([1.0] * 5)
    saved = json.loads((tmp_path / "per_size_metrics.json").read_text())
    assert saved == {f"mAP_{b}": 1.0 for b in ("very_tiny", "tiny", "small", "medium", "large")}
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", r) for r in records if "by object size" in r]
    assert lines == ["size_adaptive: mAP50-95 by object size (COCO and AI-TOD areas, original px): very tiny 1.0000  "
                     "tiny 1.0000  small 1.0000  medium 1.0000  large 1.0000"]
