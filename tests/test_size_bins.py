"""``size_bins=aitod`` end to end: a tiny training, a standalone ``yolo-sa val`` and a stock arm of ``yolo-sa compare``
log AI-TOD's very tiny and tiny bins beside COCO's in ``results.csv``, the diagnostics, the log and
``per_size_metrics.json``."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from size_adaptive.diagnostics import DIAGNOSTIC_COLUMNS, DIAGNOSTICS_FILE, diagnostic_columns

REPO = Path(__file__).resolve().parents[1]
AITOD = [f"metrics/mAP_{b}(B)" for b in ("very_tiny", "tiny", "small", "medium", "large")]
# imgsz 128: AI-TOD's tiny objects (8-16 px of 640) are 1.6-3.2 px there; at 64 every one is under the 2 px below
# which Ultralytics' augmentation drops a training box (RandomPerspective.box_candidates), so none would be counted
TRAIN = ("epochs=2", "imgsz=128", "batch=4", "device=cpu", "workers=0", "seed=0")


def _run(*args, timeout=900) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=timeout)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # drop terminal colours
    assert proc.returncode == 0, out[-3000:]
    return out


def _table(csv_file: Path) -> tuple[list[str], list[list[str]]]:
    with open(csv_file) as f:
        header, *rows = [[c.strip() for c in r] for r in csv.reader(f)]
    return header, rows


@pytest.fixture(scope="module")
def aitod_run(tmp_path_factory, tiny_demo_yaml):
    """yolo11n, 2 epochs at imgsz 128 on the tiny demo with ``size_bins=aitod``; val=False: only the last epoch is
    validated, so the header comes from a row that was not."""
    project = tmp_path_factory.mktemp("aitod")
    log = _run("-m", "size_adaptive", "train", "model=yolo11n.yaml", f"data={tiny_demo_yaml}", *TRAIN, "val=False",
               f"project={project}", "name=run", "size_bins=aitod")
    return project / "run", log


def test_training_writes_the_tiny_map_columns_beside_coco_s_in_aligned_rows(aitod_run):
    folder, log = aitod_run
    header, rows = _table(folder / "results.csv")
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    i = header.index("metrics/mAP50-95(B)") + 1
    assert header[i:i + 5] == AITOD
    final = dict(zip(header, rows[-1]))
    # the tiny demo's val split holds very tiny and tiny objects: evaluated, not -1 (no objects) nor left at 0.0 by
    # a validation that did not run
    assert all(0.0 <= float(final[c]) <= 1.0 for c in AITOD)
    assert yaml.safe_load((folder / "args.yaml").read_text())["size_bins"] == "aitod"
    assert "size bins aitod" in log
    assert "mAP50-95 by object size (COCO and AI-TOD areas, original px): very tiny " in log
    saved = json.loads((folder / "per_size_metrics.json").read_text())  # the final validation's
    assert list(saved) == [f"mAP_{b}" for b in ("very_tiny", "tiny", "small", "medium", "large")]
    assert (folder / "size_metrics.png").is_file()


def test_training_writes_the_tiny_diagnostics_that_split_the_positives_of_small(aitod_run):
    folder, log = aitod_run
    header, rows = _table(folder / "results.csv")
    columns = list(diagnostic_columns("aitod"))
    assert header[-len(columns):] == columns
    for row in rows:
        values = dict(zip(header, row))
        fg = {b: float(values[f"size/fg_{b}"]) for b in ("very_tiny", "tiny", "small", "medium", "large")}
        assert fg["small"] + fg["medium"] + fg["large"] == pytest.approx(1.0, abs=1e-4)
        assert 0 < fg["tiny"] and fg["very_tiny"] + fg["tiny"] <= fg["small"] + 1e-6
    assert "very tiny/tiny/small/medium/large: positives " in log


def test_yolo_sa_val_reports_the_bins_it_is_given(aitod_run, tmp_path, tiny_demo_yaml):
    folder, _ = aitod_run
    common = (f"model={folder / 'weights' / 'last.pt'}", f"data={tiny_demo_yaml}", "imgsz=128", "batch=4",
              "device=cpu", "plots=False", f"project={tmp_path}")
    log = _run("-m", "size_adaptive", "val", *common, "name=aitod", "size_bins=aitod")
    assert "ignored here" not in log and "(COCO and AI-TOD areas, original px): very tiny " in log
    assert list(json.loads((tmp_path / "aitod" / "per_size_metrics.json").read_text())) == [
        f"mAP_{b}" for b in ("very_tiny", "tiny", "small", "medium", "large")]
    _run("-m", "size_adaptive", "val", *common, "name=coco")
    assert list(json.loads((tmp_path / "coco" / "per_size_metrics.json").read_text())) == [
        "mAP_small", "mAP_medium", "mAP_large"]


STOCK_ARM = """
import sys
from ultralytics import YOLO
from size_adaptive.settings import SizeSettings
from size_adaptive.trainer import observe_assignment
from size_adaptive.validator import per_size_in_stock_training

model = YOLO("yolo11n.yaml")
observe_assignment(model, SizeSettings(bins="aitod"))
per_size_in_stock_training(model, "aitod")
model.train(data=sys.argv[1], epochs=1, imgsz=64, batch=4, device="cpu", workers=0, plots=False, save_json=True,
            project=sys.argv[2], name="stock")
print("validator", type(model.trainer.validator).__name__, model.trainer.validator.size_bins)
"""


def test_a_stock_detect_arm_gets_the_tiny_columns_and_diagnostics_when_its_settings_say_aitod(tmp_path,
                                                                                              tiny_demo_yaml):
    log = _run("-c", STOCK_ARM, str(tiny_demo_yaml), str(tmp_path))
    assert "validator SizeAdaptiveValidator aitod" in log
    header, rows = _table(tmp_path / "stock" / "results.csv")
    assert [c for c in header if c in AITOD] == AITOD and not any(c.startswith("size/") for c in header)
    diag_header, diag_rows = _table(tmp_path / "stock" / DIAGNOSTICS_FILE)
    columns = [c for c in diagnostic_columns("aitod") if c != "size/mean_fg_weight"]  # stock: no weights
    assert diag_header == ["epoch", *columns] and len(diag_rows) == 1
    assert set(DIAGNOSTIC_COLUMNS) - {"size/mean_fg_weight"} < set(diag_header)


def test_sliced_val_reports_the_tiny_bins_too(aitod_run, tmp_path, tiny_demo_yaml):
    from size_adaptive.sliced_val import val

    folder, _ = aitod_run
    results = val(folder / "weights" / "last.pt", tiny_demo_yaml, slice=320, imgsz=128, size_bins="aitod",
                  save_dir=tmp_path / "sliced", plots=False, verbose=False)
    assert [k for k in results if k.startswith("metrics/mAP_")] == AITOD
    assert list(json.loads((tmp_path / "sliced" / "per_size_metrics.json").read_text())) == [
        f"mAP_{b}" for b in ("very_tiny", "tiny", "small", "medium", "large")]
