"""SizeAdaptiveTrainer without a training loop: settings in, refused before anything is written, DDP rebuild."""

from __future__ import annotations

import cloudpickle
import pytest
import yaml
from ultralytics.utils import DEFAULT_CFG_DICT

from size_adaptive import YOLO, SizeAdaptiveTrainer
from size_adaptive.settings import SizeSettings
from size_adaptive.trainer import TRAINERS


def _overrides(tmp_path, data, **kw):
    return {"model": "yolo11n.yaml", "data": str(data), "project": str(tmp_path / "runs"), "name": "t",
            "epochs": 1, "imgsz": 64, "device": "cpu", **kw}


def test_settings_reach_args_and_args_yaml(tmp_path, tiny_demo_yaml):
    t = SizeAdaptiveTrainer(overrides=_overrides(tmp_path, tiny_demo_yaml, size_weights="3,2,1", size_norm=True))
    assert t.size_settings == SizeSettings(weights=(3.0, 2.0, 1.0), norm=True)
    assert t.args.size_weights == [3.0, 2.0, 1.0] and t.args.size_norm is True
    saved = yaml.safe_load((t.save_dir / "args.yaml").read_text())
    assert saved["size_weights"] == [3.0, 2.0, 1.0] and saved["size_space"] == "original"
    assert saved["save_json"] is True  # turns on Ultralytics' COCO evaluation: mAP small/medium/large


def test_user_can_turn_save_json_off(tmp_path, tiny_demo_yaml):
    assert SizeAdaptiveTrainer(overrides=_overrides(tmp_path, tiny_demo_yaml, save_json=False)).args.save_json is False


@pytest.mark.parametrize("key, value", [("size_weights", "2,1"), ("size_thresholds", "96,32"), ("size_space", "pixels"),
                                        ("size_norm", "maybe"), ("size_weigths", "2,1.5,1")])
def test_bad_setting_is_refused_before_the_run_folder_exists(tmp_path, tiny_demo_yaml, key, value):
    with pytest.raises(ValueError, match=key):
        SizeAdaptiveTrainer(overrides=_overrides(tmp_path, tiny_demo_yaml, **{key: value}))
    assert not (tmp_path / "runs").exists()


def test_bad_setting_through_the_python_api_and_a_cfg_yaml(tmp_path, tiny_demo_yaml):
    with pytest.raises(ValueError, match="size_weights"):
        YOLO("yolo11n.yaml").train(**_overrides(tmp_path, tiny_demo_yaml, size_weights=[2, 0, 1]))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("size_thresholds: [0, 96]\n")
    with pytest.raises(ValueError, match="size_thresholds"):
        YOLO("yolo11n.yaml").train(cfg=str(cfg), **_overrides(tmp_path, tiny_demo_yaml))
    assert not (tmp_path / "runs").exists()


def test_settings_from_a_cfg_yaml_apply_and_command_line_keys_win(tmp_path, tiny_demo_yaml):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("size_weights: [4, 2, 1]\nsize_thresholds: [16, 48]\n")
    t = SizeAdaptiveTrainer(overrides={**_overrides(tmp_path, tiny_demo_yaml), **yaml.safe_load(cfg.read_text()),
                                       "size_thresholds": "20,60"})
    assert t.size_settings.weights == (4.0, 2.0, 1.0) and t.size_settings.thresholds == (20.0, 60.0)


@pytest.mark.parametrize("task, model", [("detect", "yolo11n.yaml"), ("segment", "yolo11n-seg.yaml"),
                                         ("pose", "yolo26n-pose.yaml"), ("obb", "yolo11n-obb.yaml")])
def test_ddp_worker_rebuilds_the_same_trainer_from_pickled_class_and_vars_of_args(tmp_path, task, model):
    # The path of ultralytics.utils.dist.generate_ddp_file (8.4.190): the class is pickled with cloudpickle and the
    # worker calls it with the default cfg plus save_dir, and vars(trainer.args) as overrides.
    from conftest import TINY_DEMO
    from size_adaptive.demo import demo_data

    overrides = _overrides(tmp_path, demo_data(*TINY_DEMO, task=task), model=model, size_weights="3,2,1",
                           size_space="input", size_terms="box", size_norm=True)
    t1 = TRAINERS[task](overrides=overrides)
    state = cloudpickle.loads(cloudpickle.dumps({"trainer": type(t1), "args": vars(t1.args)}))
    cfg = DEFAULT_CFG_DICT.copy()
    cfg.update(save_dir="")
    t2 = state["trainer"](cfg=cfg, overrides=state["args"])
    assert type(t2) is TRAINERS[task] and t2.size_settings == t1.size_settings and t2.size_settings.terms == ("box",)
    assert t2.save_dir == t1.save_dir and vars(t2.args) == vars(t1.args) and t2.args.task == task


@pytest.mark.parametrize("task, data", [("detect", "demo-seg"), ("segment", "demo"), ("obb", "demo-pose")])
def test_demo_data_of_another_task_is_refused_before_the_run_folder_exists(tmp_path, monkeypatch, task, data):
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "2,1")
    with pytest.raises(ValueError, match=f"data: expected the demo data of a {task} model"):
        TRAINERS[task](overrides=_overrides(tmp_path, data))
    assert not (tmp_path / "runs").exists()


def test_demo_keyword_selects_the_generated_data(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "8,4")
    t = SizeAdaptiveTrainer(overrides=_overrides(tmp_path, "demo"))
    assert t.args.data.endswith("data.yaml") and t.data["nc"] == 4


@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo26n.yaml"])
def test_diagnostic_columns_from_known_counts_of_the_counted_branch(tmp_path, tiny_demo_yaml, cfg):
    # Counts: 5 small, 2 medium, 1 large object; 1 small without a positive; 6 small, 3 medium, 1 large positives;
    # target-score sums 1.2, 1.5, 0.5; overlap sums 3, 1.2, 0.9. Shares 0.6 / 0.3 / 0.1, mean weight
    # 0.6 * 2 + 0.3 * 1.5 + 0.1 * 1 = 1.75, unassigned 1/5, positives per object 6/5, 3/2, 1/1, mean scores 0.2, 0.5,
    # 0.5, mean IoU 0.5, 0.4, 0.9. An end-to-end model reports its one-to-many branch: the one-to-one branch's counts
    # (all tens here) must not leak in.
    import csv
    import time

    import torch

    import helpers as h
    from size_adaptive.loss import build_criterion

    t = SizeAdaptiveTrainer(overrides=_overrides(tmp_path, tiny_demo_yaml, size_space="input"))
    t.model = h.model(cfg)
    t.model.criterion = build_criterion(t.model, t.size_settings)
    counted = getattr(t.model.criterion, "one2many", t.model.criterion)
    counted.size_counts = torch.tensor([[5.0, 2, 1], [1, 0, 0], [6, 3, 1], [1.2, 1.5, 0.5], [3, 1.2, 0.9]])
    if hasattr(t.model.criterion, "one2one"):
        t.model.criterion.one2one.size_counts = torch.full((5, 3), 10.0)
    t.epoch, t.train_time_start = 0, time.time()
    t.save_metrics({"metrics/mAP50(B)": 0.5})
    t.epoch = 1
    t.save_metrics({"metrics/mAP50(B)": 0.6})  # nothing counted since: the counts were reset
    rows = list(csv.DictReader(open(t.csv)))
    expected = {"fg_small": 0.6, "fg_medium": 0.3, "fg_large": 0.1, "mean_fg_weight": 1.75, "unassigned_small": 0.2,
                "unassigned_medium": 0.0, "pos_per_gt_small": 1.2, "pos_per_gt_medium": 1.5, "pos_per_gt_large": 1.0,
                "score_small": 0.2, "score_medium": 0.5, "score_large": 0.5, "iou_small": 0.5, "iou_medium": 0.4,
                "iou_large": 0.9}
    assert {k: float(rows[0][f"size/{k}"]) for k in expected} == pytest.approx(expected)
    assert float(rows[1]["size/fg_small"]) == 0 and float(rows[1]["size/mean_fg_weight"]) == 0
    assert rows[1]["size/unassigned_small"] == "nan"  # no objects counted: not a share of 0
    del t.model.criterion


def test_mean_label_side_is_the_mean_box_side_in_network_input_px():
    import math

    import numpy as np

    from size_adaptive.trainer import mean_label_side

    # Image A: 200x100 px (w x h), imgsz 100 -> factor 0.5; its box 0.1 x 0.2 of the image = 20x20 px -> 10 px.
    # Image B: 50x50 px -> factor 2; its box 0.2 x 0.08 = 10x4 px -> sqrt(40) · 2 px. C = the mean of the two.
    labels = [{"shape": (100, 200), "bboxes": np.array([[0.5, 0.5, 0.1, 0.2]])},
              {"shape": (50, 50), "bboxes": np.array([[0.5, 0.5, 0.2, 0.08]])}]
    assert mean_label_side(labels, 100) == pytest.approx((10 + 2 * math.sqrt(40)) / 2)
    # OBB: a 40x10 px rectangle turned by 45° in a 100x100 px image at imgsz 100: side sqrt(400) = 20 (its axis-aligned
    # hull would give about 35).
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    corners = [(50 + dx * c - dy * s, 50 + dx * s + dy * c) for dx, dy in ((-20, -5), (20, -5), (20, 5), (-20, 5))]
    segment = np.array(corners, dtype=np.float32) / 100
    rotated = [{"shape": (100, 100), "bboxes": np.array([[0.5, 0.5, 0.35, 0.35]]), "segments": [segment]}]
    assert mean_label_side(rotated, 100, rotated=True) == pytest.approx(20, rel=1e-3)
    with pytest.raises(ValueError, match="size_nwd_c: expected training labels with boxes"):
        mean_label_side([{"shape": (10, 10), "bboxes": np.zeros((0, 4))}], 64)
