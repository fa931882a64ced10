"""End to end through the CLI: a tiny training run on the demo data, its results, and its checkpoint in plain
Ultralytics (a process where ``size_adaptive`` cannot be imported)."""

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

from conftest import TINY_DEMO
from size_adaptive.diagnostics import DIAGNOSTIC_COLUMNS

REPO = Path(__file__).resolve().parents[1]
IMGSZ, EPOCHS = 128, 2


def _run(*args, timeout=900) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_SA_DEMO_SIZE": ",".join(map(str, TINY_DEMO)), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train yolo11n for 2 epochs on 8 demo images at imgsz 128 with `yolo-sa train` (plots on, as by default)."""
    project = tmp_path_factory.mktemp("e2e")
    proc = _run("-m", "size_adaptive", "train", "model=yolo11n.yaml", "data=demo", f"epochs={EPOCHS}",
                f"imgsz={IMGSZ}", "batch=4", "device=cpu", f"project={project}", "name=run", "seed=0")
    return project / "run", _plain(proc.stdout + proc.stderr)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # drop terminal colours


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def test_results_hold_per_size_map_for_every_epoch(run):
    folder, _ = run
    rows = _rows(folder)
    assert len(rows) == EPOCHS
    for row in rows:
        for size in ("small", "medium", "large"):
            assert 0.0 <= float(row[f"metrics/mAP_{size}(B)"]) <= 1.0


def test_weighting_was_active_and_the_assignment_was_counted(run):
    # Foreground anchors fall in every bucket of the demo data, and the mean weight they received lies strictly
    # between the smallest and largest weight (2, 1.5, 1): the loss that trained was the size-adaptive one.
    folder, log = run
    for row in _rows(folder):
        shares = [float(row[f"size/fg_{s}"]) for s in ("small", "medium", "large")]
        assert abs(sum(shares) - 1) < 1e-4 and all(s > 0 for s in shares)
        expected = 2.0 * shares[0] + 1.5 * shares[1] + 1.0 * shares[2]
        assert abs(float(row["size/mean_fg_weight"]) - expected) < 1e-3 and 1.0 < expected < 2.0
        for s in ("small", "medium", "large"):
            assert 0 <= float(row[f"size/unassigned_{s}"]) <= 1 and float(row[f"size/pos_per_gt_{s}"]) > 0
            assert 0 <= float(row[f"size/score_{s}"]) <= 1
    assert log.count("size_adaptive: small/medium/large: positives ") == EPOCHS


def test_coco_summary_is_printed_at_the_final_validation_only(run):
    # faster-coco-eval's ~15-line block: once (best.pt); the one-line per-size mAP at every validation.
    _, log = run
    assert log.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 1
    assert log.count("mAP50-95 by object size (COCO areas, original px): small") == EPOCHS + 1


def test_size_metrics_png_is_drawn_next_to_results_png(run):
    folder, _ = run
    for name in ("results.png", "size_metrics.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_original_thresholds_were_converted_with_the_median_resize_factor_and_recorded(run):
    folder, log = run
    args = yaml.safe_load((folder / "args.yaml").read_text())
    factor = IMGSZ / 640  # demo images are 640x480
    assert args["size_input_thresholds"] == pytest.approx([32 * factor, 96 * factor])
    assert f"32/96 px original -> {32 * factor:.1f}/{96 * factor:.1f} px input" in log


def test_final_validation_logs_and_saves_per_size_metrics(run):
    folder, log = run
    saved = json.loads((folder / "per_size_metrics.json").read_text())
    assert set(saved) == {"mAP_small", "mAP_medium", "mAP_large"}
    assert "mAP50-95 by object size (COCO areas, original px): small" in log
    assert f"run folder {folder}" in log


STOCK_ONLY = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "size_adaptive":
            raise ImportError("size_adaptive is blocked in this process")

sys.meta_path.insert(0, Block())
try:
    import size_adaptive
except ImportError:
    pass
else:
    raise SystemExit("size_adaptive should not be importable here")

from ultralytics import YOLO

weights, data, images = sys.argv[1:4]
model = YOLO(weights)
metrics = model.val(data=data, imgsz=128, batch=4, device="cpu", plots=False, project=sys.argv[4], name="val")
results = model.predict(images, imgsz=128, device="cpu", verbose=False)
assert "size_adaptive" not in sys.modules
print("stock-ok", type(model.model).__name__, len(results), metrics.box.map50 >= 0)
"""


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_checkpoints_load_validate_and_predict_with_plain_ultralytics(run, tmp_path, name):
    folder, _ = run
    data = yaml.safe_load((folder / "args.yaml").read_text())["data"]
    images = Path(data).parent / "images" / "val"
    proc = _run("-c", STOCK_ONLY, str(folder / "weights" / name), data, str(images), str(tmp_path))
    assert f"stock-ok DetectionModel {TINY_DEMO[1]} True" in proc.stdout


def test_yolo_sa_predict_and_export_behave_like_yolo(run, tmp_path):
    folder, _ = run
    best = folder / "weights" / "best.pt"
    data = yaml.safe_load((folder / "args.yaml").read_text())["data"]
    _run("-m", "size_adaptive", "predict", f"model={best}", f"source={Path(data).parent / 'images' / 'val'}",
         f"imgsz={IMGSZ}", "device=cpu", "save_txt=True", f"project={tmp_path}", "name=pred")
    assert len(list((tmp_path / "pred").glob("*.jpg"))) == TINY_DEMO[1]
    _run("-m", "size_adaptive", "export", f"model={best}", "format=torchscript", f"imgsz={IMGSZ}")
    assert best.with_suffix(".torchscript").is_file()


def test_yolo_sa_val_reports_and_writes_per_size_metrics(run, tmp_path):
    folder, _ = run
    proc = _run("-m", "size_adaptive", "val", f"model={folder / 'weights' / 'best.pt'}", "data=demo", f"imgsz={IMGSZ}",
                "batch=4", "device=cpu", "plots=False", f"project={tmp_path}", "name=val")
    assert "mAP50-95 by object size" in _plain(proc.stdout + proc.stderr)
    assert set(json.loads((tmp_path / "val" / "per_size_metrics.json").read_text())) == {
        "mAP_small", "mAP_medium", "mAP_large"}


INTERRUPTED = """
import sys
from size_adaptive import SizeAdaptiveTrainer, YOLO
from ultralytics import YOLO as StockYOLO

def stop_after_first_checkpoint(trainer):
    raise KeyboardInterrupt("simulated interruption after epoch 1")

# the drop-in YOLO, or a stock YOLO given the trainer class
cfg, data, assign = sys.argv[3:6]
model, trainer = (YOLO(cfg), None) if sys.argv[2] == "yolo" else (StockYOLO(cfg), SizeAdaptiveTrainer)
model.add_callback("on_model_save", stop_after_first_checkpoint)
try:
    model.train(data=data, epochs=3, imgsz=128, batch=4, device="cpu", plots=False, project=sys.argv[1], name="run",
                size_weights=[3, 2, 1], size_thresholds=[20, 60], size_terms="box,dfl", size_assign=assign,
                size_min_pos=2, size_box_nwd=0.2, trainer=trainer)
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("api, how, cfg, data, assign", [
    ("yolo", "resume=path", "yolo11n.yaml", "demo", "nwd"),
    ("trainer", "model=path resume=True", "yolo11n.yaml", "demo", "nwd"),
    ("yolo", "resume=path", "yolo11n-obb.yaml", "demo-obb", "nwd"),
    ("yolo", "resume=path", "yolo11n.yaml", "demo", "simd"),
])
def test_interrupted_run_resumes_with_its_recorded_settings(tmp_path, api, how, cfg, data, assign):
    _run("-c", INTERRUPTED, str(tmp_path), api, cfg, data, assign)
    folder = tmp_path / "run"
    first = yaml.safe_load((folder / "args.yaml").read_text())
    assert len(_rows(folder)) == 1
    assert first["size_weights"] == [3.0, 2.0, 1.0] and first["size_terms"] == ["box", "dfl"]
    assert first["size_assign"] == assign and first["size_nwd_c"] == "auto" and first["size_nwd_input_c"] > 0
    if assign == "simd":  # SimD's constants, fitted on the training labels, recorded beside NWD's C
        m, n = first["size_simd_mn"]
        assert m > 0 and n > 0
    last = folder / "weights" / "last.pt"
    args = [f"resume={last}"] if how == "resume=path" else [f"model={last}", "resume=True"]
    log = _plain(_run("-m", "size_adaptive", "train", *args).stdout)
    rows = _rows(folder)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    factor = 128 / 640
    assert f"20/60 px original -> {20 * factor:.1f}/{60 * factor:.1f} px input" in log
    assert "(from the checkpoint)" in log
    assert f"NWD C {first['size_nwd_input_c']:.1f} px" in log and f"assigner {assign}, at least 2 positives" in log
    if assign == "simd":
        assert "SimD m, n {:.3g}, {:.3g}".format(*first["size_simd_mn"]) in log
    assert all(abs(float(r["size/mean_fg_weight"]) - (3 * float(r["size/fg_small"]) + 2 * float(r["size/fg_medium"])
                                                         + float(r["size/fg_large"]))) < 1e-3 for r in rows)
    after = yaml.safe_load((folder / "args.yaml").read_text())
    size_keys = [k for k in first if k.startswith("size_")]
    assert {k: after[k] for k in size_keys} == {k: first[k] for k in size_keys}


def test_ddp_worker_file_trains_with_our_loss(tmp_path, tiny_demo_yaml):
    # Ultralytics' own DDP launch file (generate_ddp_file, 8.4.190): the trainer class and vars(args) are pickled,
    # and the worker script rebuilds the trainer from them and trains. Run on CPU it is a single worker, but the
    # rebuild is the one every GPU worker does: the run must train with the size-adaptive loss and our settings.
    from ultralytics.utils.dist import generate_ddp_file

    from size_adaptive import SizeAdaptiveTrainer

    trainer = SizeAdaptiveTrainer(overrides={
        "model": "yolo11n.yaml", "data": str(tiny_demo_yaml), "epochs": 1, "imgsz": IMGSZ, "batch": 4, "device": "cpu",
        "plots": False, "project": str(tmp_path), "name": "ddp", "size_weights": "3,2,1", "size_space": "input",
        "size_thresholds": "8,20", "size_assign": "fixed", "size_box_nwd": 0.25, "size_nwd_c": 12})
    file = generate_ddp_file(trainer)
    log = _plain(_run(file).stdout)
    assert "imgsz 128: thresholds 8/20 px input; weights small x3, medium x2, large x1" in log
    assert "assigner fixed; box term 0.75(1 - CIoU) + 0.25(1 - NWD); NWD C 12.0 px" in log
    (row,) = _rows(tmp_path / "ddp")
    shares = [float(row[f"size/fg_{s}"]) for s in ("small", "medium", "large")]
    expected = 3 * shares[0] + 2 * shares[1] + shares[2]
    assert min(shares) > 0 and abs(float(row["size/mean_fg_weight"]) - expected) < 1e-3


FAMILY_STOCK = STOCK_ONLY.split("weights, data, images")[0] + """
folder, data, images, out = sys.argv[1:5]
for name in ("best.pt", "last.pt"):
    model = YOLO(f"{folder}/weights/{name}")
    metrics = model.val(data=data, imgsz=128, batch=4, device="cpu", plots=False, project=out, name=name)
    results = model.predict(images, imgsz=128, device="cpu", verbose=False)
    assert len(results) > 0 and metrics.box.map50 >= 0
onnx = YOLO(f"{folder}/weights/best.pt").export(format="onnx", imgsz=128)
results = YOLO(onnx, task="detect").predict(images, imgsz=128, device="cpu", verbose=False)
assert "size_adaptive" not in sys.modules
print("stock-ok", len(results))
"""


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml"])
def test_every_family_trains_and_its_checkpoints_work_in_plain_ultralytics(tmp_path, cfg):
    _run("-m", "size_adaptive", "train", f"model={cfg}", "data=demo", "epochs=1", f"imgsz={IMGSZ}", "batch=4",
         "device=cpu", "plots=False", f"project={tmp_path}", "name=run")
    folder = tmp_path / "run"
    (row,) = _rows(folder)
    assert float(row["size/mean_fg_weight"]) > 1.0  # the size-adaptive loss trained (weights 2, 1.5, 1)
    data = yaml.safe_load((folder / "args.yaml").read_text())["data"]
    images = Path(data).parent / "images" / "val"
    proc = _run("-c", FAMILY_STOCK, str(folder), data, str(images), str(tmp_path / "stock"))
    assert f"stock-ok {TINY_DEMO[1]}" in proc.stdout


TASK_STOCK = STOCK_ONLY.split("weights, data, images")[0] + """
folder, data, images, out, task = sys.argv[1:6]
for name in ("best.pt", "last.pt"):
    model = YOLO(f"{folder}/weights/{name}")
    assert model.task == task, model.task
    metrics = model.val(data=data, imgsz=128, batch=4, device="cpu", plots=False, project=out, name=name)
    results = model.predict(images, imgsz=128, device="cpu", verbose=False)
    assert len(results) > 0 and metrics.box.map50 >= 0
onnx = YOLO(f"{folder}/weights/best.pt").export(format="onnx", imgsz=128)
results = YOLO(onnx, task=task).predict(images, imgsz=128, device="cpu", verbose=False)
assert "size_adaptive" not in sys.modules
print("stock-ok", type(model.model).__name__, len(results))
"""


@pytest.mark.parametrize("cfg, data, task, model_class", [
    ("yolo11n-seg.yaml", "demo-seg", "segment", "SegmentationModel"),
    ("yolo26n-seg.yaml", "demo-seg", "segment", "SegmentationModel"),
    ("yolo11n-pose.yaml", "demo-pose", "pose", "PoseModel"),
    ("yolo26n-pose.yaml", "demo-pose", "pose", "PoseModel"),
    ("yolo11n-obb.yaml", "demo-obb", "obb", "OBBModel"),
    ("yolo26n-obb.yaml", "demo-obb", "obb", "OBBModel"),
])
def test_every_task_trains_with_the_size_loss_and_its_checkpoints_work_in_plain_ultralytics(tmp_path, cfg, data, task,
                                                                                             model_class):
    proc = _run("-m", "size_adaptive", "train", f"model={cfg}", f"data={data}", "epochs=1", f"imgsz={IMGSZ}",
                "batch=4", "device=cpu", "plots=False", f"project={tmp_path}", "name=run", "size_weights=3,2,1")
    folder = tmp_path / "run"
    (row,) = _rows(folder)
    assert float(row["size/mean_fg_weight"]) > 1.0 and float(row["size/pos_per_gt_large"]) > 0  # our loss trained
    if cfg.startswith("yolo26"):
        assert "(one-to-many branch)" in _plain(proc.stdout + proc.stderr)
    assert yaml.safe_load((folder / "args.yaml").read_text())["size_weights"] == [3.0, 2.0, 1.0]
    data_yaml = yaml.safe_load((folder / "args.yaml").read_text())["data"]
    images = Path(data_yaml).parent / "images" / "val"
    proc = _run("-c", TASK_STOCK, str(folder), data_yaml, str(images), str(tmp_path / "stock"), task)
    assert f"stock-ok {model_class} {TINY_DEMO[1]}" in proc.stdout


NO_NETWORK = """
import atexit, runpy, socket, sys

attempts = []

def refuse(what):
    def refused(*args, **kwargs):
        attempts.append(what)
        raise OSError(f"network refused in this test ({what})")
    return refused

socket.getaddrinfo = refuse("getaddrinfo")
socket.create_connection = refuse("create_connection")
socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect_ex")
atexit.register(lambda: print("network attempts:", sorted(set(attempts)), len(attempts)))
sys.argv = ["yolo-sa", *sys.argv[1:]]
runpy.run_module("size_adaptive", run_name="__main__")
"""


def test_demo_run_completes_with_the_network_refused(tmp_path):
    # Without YOLO_OFFLINE: Ultralytics' own online check, font and update lookups meet refused sockets and must
    # neither hang nor fail the run (plots on, as by default).
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
    env["YOLO_SA_DEMO_SIZE"] = ",".join(map(str, TINY_DEMO))
    proc = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, "train", "model=yolo11n.yaml", "data=demo", "epochs=1", f"imgsz={IMGSZ}",
         "batch=4", "device=cpu", f"project={tmp_path}", "name=offline"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "offline" / "weights" / "best.pt").is_file() and len(_rows(tmp_path / "offline")) == 1
    assert "network attempts:" in proc.stdout


@pytest.mark.parametrize("model, data", [("yolo11n.yaml", "demo"), ("yolo11n-pose.yaml", "demo-pose")])
def test_launcher_trains_the_demo_of_the_models_task_and_says_where_the_run_is(tmp_path, model, data):
    env = {**os.environ, "YOLO_SA_DEMO_SIZE": ",".join(map(str, TINY_DEMO)),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["sh", "train_loss_weighted.sh", "EPOCHS=1", "IMGSZ=64", "BATCH=4", "DEVICE=cpu", f"MODEL={model}",
         "plots=False", f"project={tmp_path}", "name=launch", "size_weights=3,2,1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = _plain(proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-3000:]
    assert f"train_loss_weighted.sh: model={model} data={data} epochs=1 imgsz=64 batch=4 device=cpu nbs=4" in out
    assert f"run folder {tmp_path / 'launch'}" in out and (tmp_path / "launch" / "results.csv").is_file()
    args = yaml.safe_load((tmp_path / "launch" / "args.yaml").read_text())
    assert args["nbs"] == 4 and args["warmup_epochs"] == 1 and args["size_weights"] == [3.0, 2.0, 1.0]
    bad = subprocess.run(["sh", "train_loss_weighted.sh", "oops"], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "expected NAME=value arguments, got 'oops'" in bad.stderr


def test_results_columns_stay_aligned_when_only_the_last_epoch_is_validated(tmp_path):
    # val=False: only the final epoch is validated. Its per-size mAP must land under the per-size columns that the
    # header (written after epoch 1) already holds, not shift the row.
    _run("-m", "size_adaptive", "train", "model=yolo11n.yaml", "data=demo", "epochs=2", f"imgsz={IMGSZ}", "batch=4",
         "device=cpu", "plots=False", "val=False", f"project={tmp_path}", "name=noval")
    with open(tmp_path / "noval" / "results.csv") as f:
        header, *rows = list(csv.reader(f))
    assert all(len(r) == len(header) for r in rows) and len(rows) == 2
    assert header.index("metrics/mAP_small(B)") == header.index("metrics/mAP50-95(B)") + 1
    assert header[-len(DIAGNOSTIC_COLUMNS):] == list(DIAGNOSTIC_COLUMNS)
    assert 1.0 < float(rows[-1][header.index("size/mean_fg_weight")]) < 2.0
