"""Per-size mAP of segment, pose and OBB end to end through ``yolo-sa``: a tiny training run writes the per-size columns
of its task in place and reports them at its final validation, and ``yolo-sa val`` prints and saves them."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import TINY_DEMO
from size_adaptive import YOLO
from size_adaptive.demo import demo_data
from size_adaptive.validator import VALIDATORS
from test_e2e import _plain, _run

IMGSZ = 64
LINE = "mAP50-95 by object size (COCO areas, original px): small"  # the mask line reads "mask " + LINE
PER_SIZE = "per_size_metrics.json"
TASKS = {  # model yaml -> (demo keyword, per_size_metrics.json keys)
    "yolo11n-seg.yaml": ("demo-seg", ["mAP_small", "mAP_medium", "mAP_large", "mask_mAP_small", "mask_mAP_medium",
                                      "mask_mAP_large"]),
    "yolo11n-pose.yaml": ("demo-pose", ["mAP_small", "mAP_medium", "mAP_large"]),
    "yolo11n-obb.yaml": ("demo-obb", ["mAP_small", "mAP_medium", "mAP_large"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """cfg -> (run folder, log) of a 2-epoch ``yolo-sa train`` with val=False, trained on first use."""
    done = {}

    def run(cfg):
        if cfg not in done:
            project = tmp_path_factory.mktemp("per-size")
            proc = _run("-m", "size_adaptive", "train", f"model={cfg}", f"data={TASKS[cfg][0]}", "epochs=2",
                        f"imgsz={IMGSZ}", "batch=4", "device=cpu", "plots=False", "val=False", f"project={project}",
                        "name=run")
            done[cfg] = project / "run", _plain(proc.stdout + proc.stderr)
        return done[cfg]

    return run


@pytest.mark.parametrize("cfg", list(TASKS))
def test_training_writes_per_size_map_in_place_and_reports_it_at_the_final_validation(runs, cfg):
    # val=False: epoch 1 is not validated, epoch 2 (the last) is. Its per-size values must sit under the header that
    # epoch 1 wrote, right after the task's own metrics (box, then mask or pose).
    folder, log = runs(cfg)
    keys = TASKS[cfg][1]
    with open(folder / "results.csv") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    metrics = [c for c in header if c.startswith("metrics/")]
    per_size = [c for c in metrics if c.startswith("metrics/mAP_")]
    assert per_size == metrics[-len(per_size):] and len(per_size) == len(keys)
    assert all(0.0 <= float(rows[-1][header.index(c)]) <= 1.0 for c in per_size)
    # one line per kind (box, mask) at the validated epoch and at the final validation of best.pt, which saves the file
    kinds = len(keys) // 3
    assert log.count(LINE) == 2 * kinds and log.count("mask " + LINE) == 2 * (kinds - 1)
    assert list(json.loads((folder / PER_SIZE).read_text())) == keys


def test_yolo_sa_val_prints_and_saves_box_and_mask_map_per_size(runs, tmp_path):
    folder, _ = runs("yolo11n-seg.yaml")
    proc = _run("-m", "size_adaptive", "val", f"model={folder / 'weights' / 'best.pt'}", "data=demo-seg",
                f"imgsz={IMGSZ}", "batch=4", "device=cpu", "plots=False", f"project={tmp_path}", "name=val")
    log = _plain(proc.stdout + proc.stderr)
    assert log.count(LINE) == 2 and log.count("mask " + LINE) == 1
    assert list(json.loads((tmp_path / "val" / PER_SIZE).read_text())) == TASKS["yolo11n-seg.yaml"][1]


def test_yolo_validates_every_box_task_with_its_per_size_validator_and_save_json(monkeypatch):
    model = YOLO("yolo11n-obb.yaml")
    seen = {}
    monkeypatch.setattr("ultralytics.engine.model.Model.val", lambda self, validator=None, **kw: seen.update(kw))
    for task in ("detect", "segment", "pose", "obb"):
        assert model.task_map[task]["validator"] is VALIDATORS[task]
        model.task = task  # val() reads only the task of the model
        seen.clear()
        model.val(data="my-data.yaml")
        assert seen == {"save_json": True, "data": "my-data.yaml"}, task


def test_size_metrics_png_draws_mask_map_per_size_dashed_beside_the_box_lines(tmp_path, monkeypatch):
    import matplotlib.figure

    from size_adaptive.plots import plot_size_metrics

    columns = [f"metrics/mAP_{b}({k})" for k in "BM" for b in ("small", "medium", "large")]
    (tmp_path / "results.csv").write_text("epoch," + ",".join(columns) + "\n1,0.1,0.2,-1,0.05,0.1,-1\n"
                                          "2,0.2,0.3,-1,0.1,0.2,-1\n")
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    plot_size_metrics(tmp_path / "results.csv")
    lines = figures[0].axes[0].get_lines()
    # large reads -1 (no objects) in both kinds: left out
    assert [(line.get_label(), line.get_linestyle()) for line in lines] == [
        ("small", "-"), ("medium", "-"), ("small (mask)", "--"), ("medium (mask)", "--")]


STOCK_ARM = """
import sys
from ultralytics import YOLO
from size_adaptive.validator import per_size_in_stock_training

model = YOLO("yolo11n-obb.yaml")
per_size_in_stock_training(model)
model.train(data=sys.argv[1], epochs=2, imgsz=64, batch=4, device="cpu", plots=False, val=False, save_json=True,
            project=sys.argv[2], name="stock")
print("trainer", type(model.trainer).__name__, "validator", type(model.trainer.validator).__name__)
"""


def test_a_stock_training_reports_per_size_map_with_its_validator_swapped(tmp_path):
    # yolo-sa compare's stock arms: Ultralytics' own trainer and loss, our validator. val=False checks the columns.
    proc = _run("-c", STOCK_ARM, str(demo_data(*TINY_DEMO, task="obb")), str(tmp_path))
    assert "trainer OBBTrainer validator SizeAdaptiveOBBValidator" in proc.stdout
    with open(tmp_path / "stock" / "results.csv") as f:
        header, *rows = list(csv.reader(f))
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    metrics = [c for c in header if c.startswith("metrics/")]
    assert metrics[-3:] == ["metrics/mAP_small(B)", "metrics/mAP_medium(B)", "metrics/mAP_large(B)"]
    assert not any(c.startswith("size/") for c in header)  # the training stayed stock
    assert list(json.loads((tmp_path / "stock" / PER_SIZE).read_text())) == TASKS["yolo11n-obb.yaml"][1]
