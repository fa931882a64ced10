"""yolo-sa compare at toy size: user-defined arms, progress, tables with 95 % intervals, diagnostics per arm, chart,
JSON, reuse; the stock arm trains exactly as plain Ultralytics; bad arms are refused before anything trains."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_DEMO

from size_adaptive.arms import load_arms
from size_adaptive.compare import (
    check_args,
    compare,
    parse_last_epochs,
    parse_seeds,
)
from size_adaptive.runs import read_run
from size_adaptive.diagnostics import ASSIGNMENT_COLUMNS, FG_COLUMNS

REPO = Path(__file__).resolve().parents[1]
ARMS, SEEDS, EPOCHS = ("stock", "size", "uniform", "box_dfl"), (0, 1), 2
ARMS_YAML = """\
stock:
  trainer: stock
size:
uniform:
box_dfl:
  size_terms: box,dfl
"""
METRICS = ("mAP50-95", "mAP50", "mAP small", "mAP medium", "mAP large")
ENV = {**os.environ, "YOLO_SA_DEMO_SIZE": ",".join(map(str, TINY_DEMO))}
TRAIN = {"epochs": EPOCHS, "imgsz": 64, "batch": 4, "device": "cpu", "plots": False}


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _compare(folder: Path, arms: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "size_adaptive", "compare", "model=yolo11n.yaml", "data=demo",
         *(f"{k}={v}" for k, v in TRAIN.items()), f"seeds={len(SEEDS)}", f"arms={arms}",
         f"project={folder.parent}", f"name={folder.name}"],
        check=False, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _plain(proc.stdout + proc.stderr)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    arms = root / "arms.yaml"
    arms.write_text(ARMS_YAML)
    folder = root / "toy"
    return folder, _compare(folder, arms), arms


@pytest.fixture(scope="module")
def report(comparison):
    return json.loads((comparison[0] / "comparison.json").read_text())


def test_progress_is_shown_per_run(comparison):
    _, log, _ = comparison
    n = len(ARMS) * len(SEEDS)
    for i, (seed, arm) in enumerate(((s, a) for s in SEEDS for a in ARMS), 1):
        assert f"compare: [{i}/{n}] {arm} seed {seed}: training ..." in log
        assert re.search(rf"compare: \[{i}/{n}\] {arm} seed {seed}: done in \d+ s, mAP50-95 \d\.\d{{4}}, ", log)


def test_tables_hold_every_arm_with_intervals_to_the_first_arm(comparison):
    folder, _, _ = comparison
    table = (folder / "comparison.md").read_text()
    for arm in ARMS:
        assert re.search(rf"^\| {arm} \| \d\.\d{{4}} ± \d\.\d{{4}} \|", table, re.MULTILINE)
    assert "Paired difference to `stock`" in table and "mean [95 % CI]" in table
    for arm in ARMS[1:]:
        assert re.search(rf"^\| {arm} \| [+-]\d\.\d{{4}} \[[+-]\d\.\d{{4}}, [+-]\d\.\d{{4}}\] \|", table, re.MULTILINE)
    assert "| box_dfl | size | size_terms=box,dfl |" in table
    assert "last 5 validated epochs" in table and "two standard deviations" not in table
    png = (folder / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_json_holds_every_run_its_args_and_the_differences_with_ci95(comparison, report):
    assert report["seeds"] == list(SEEDS) and list(report["arms"]) == list(ARMS) and report["baseline"] == "stock"
    assert report["metrics"] == list(METRICS) and report["last_epochs"] == 5
    for arm in ARMS:
        entry = report["arms"][arm]
        assert sorted(entry["runs"]) == [str(s) for s in SEEDS]
        for seed, run in entry["runs"].items():
            assert run["args"]["seed"] == int(seed) and run["args"]["epochs"] == EPOCHS  # resolved settings
            assert run["epochs"] == [1, 2]  # fewer epochs than last_epochs: all of them
            rows = _rows(Path(run["folder"]) / "results.csv")
            mean = statistics.fmean(float(r["metrics/mAP50(B)"]) for r in rows)
            assert run["metrics"]["mAP50"] == pytest.approx(mean)
        if arm != "stock":
            for k in METRICS:
                d = entry["diff_to_baseline"][k]
                assert d["n"] == len(SEEDS) and len(d["ci95"]) == 2 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
                per_seed = [entry["runs"][str(s)]["metrics"][k] - report["arms"]["stock"]["runs"][str(s)]["metrics"][k]
                            for s in SEEDS]
                assert d["mean"] == pytest.approx(statistics.fmean(per_seed), abs=1e-12)
    assert report["arms"]["box_dfl"]["runs"]["0"]["args"]["size_terms"] == ["box", "dfl"]
    assert report["arms"]["size"]["runs"]["0"]["args"]["size_terms"] == ["cls", "box", "dfl"]
    assert "size_weights" not in report["arms"]["stock"]["runs"]["0"]["args"]  # Ultralytics' own trainer
    assert {a: report["arms"][a]["definition"]["trainer"] for a in ARMS} == {
        "stock": "stock", "size": "size", "uniform": "size", "box_dfl": "size"}


def test_diagnostics_per_arm_include_the_stock_arm(comparison, report):
    folder, _, _ = comparison
    stock = report["arms"]["stock"]["diagnostics"]
    assert set(stock) == {*FG_COLUMNS, *ASSIGNMENT_COLUMNS}  # observed: no fg weight
    per_seed = [_rows(folder / f"stock-seed{s}" / "size_diagnostics.csv") for s in SEEDS]
    expected = statistics.fmean(statistics.fmean(float(r["size/pos_per_gt_medium"]) for r in rows) for rows in per_seed)
    assert stock["size/pos_per_gt_medium"] == pytest.approx(expected, rel=1e-9)
    assert 0 < stock["size/pos_per_gt_medium"] and 0 <= stock["size/unassigned_small"] <= 1
    for arm in ARMS[1:]:
        size = report["arms"][arm]["diagnostics"]
        assert set(size) == {*FG_COLUMNS, "size/mean_fg_weight", *ASSIGNMENT_COLUMNS}
        assert sum(size[c] for c in FG_COLUMNS) == pytest.approx(1.0, abs=1e-4)
    table = (folder / "comparison.md").read_text()
    assert re.search(r"^\| stock \| [\d.]+/[\d.]+/[\d.]+ \| n/a \| ", table, re.MULTILINE)
    assert re.search(r"^\| size \| [\d.]+/[\d.]+/[\d.]+ \| 1\.\d{3} \| ", table, re.MULTILINE)


def test_uniform_constant_is_the_size_arms_recorded_mean_weight(comparison, report):
    folder, _, _ = comparison
    for seed in SEEDS:
        rows = _rows(folder / f"size-seed{seed}" / "results.csv")
        mean_weight = statistics.fmean(float(r["size/mean_fg_weight"]) for r in rows)
        args = yaml.safe_load((folder / f"uniform-seed{seed}" / "args.yaml").read_text())
        assert args["size_weights"] == pytest.approx([mean_weight] * 3, rel=1e-12) and args["size_norm"] is False
        assert report["arms"]["uniform"]["uniform_weight"][str(seed)] == pytest.approx(mean_weight, rel=1e-12)
        assert 1.0 < mean_weight < 2.0


def test_stock_arm_trains_exactly_as_plain_ultralytics(comparison, tmp_path):
    folder, _, _ = comparison
    recorded = yaml.safe_load((folder / "stock-seed0" / "args.yaml").read_text())
    args = {**TRAIN, "data": recorded["data"], "save_json": True, "seed": 0, "project": str(tmp_path), "name": "plain"}
    code = f"from ultralytics import YOLO; YOLO('yolo11n.yaml').train(**{args!r})"
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plain, observed = _rows(tmp_path / "plain" / "results.csv"), _rows(folder / "stock-seed0" / "results.csv")
    assert (folder / "stock-seed0" / "size_diagnostics.csv").exists()  # the stock arm was observed ...
    assert not (tmp_path / "plain" / "size_diagnostics.csv").exists()
    columns = [c for c in plain[0] if c != "time"]
    assert [c for c in observed[0] if c != "time"] == columns and len(plain) == len(observed) == EPOCHS
    assert [[r[c] for c in columns] for r in observed] == [[r[c] for c in columns] for r in plain]  # ... unchanged
    # Not a tautology: the size arm of the same seed trains differently from the same start.
    sized = _rows(folder / "size-seed0" / "results.csv")
    assert [r["train/cls_loss"] for r in sized] != [r["train/cls_loss"] for r in plain]


def test_folder_with_runs_of_other_settings_is_refused_before_training(comparison, monkeypatch):
    folder, _, arms = comparison
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", ",".join(map(str, TINY_DEMO)))
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="holds a run with other settings"):
        compare(model="yolo11n.yaml", data="demo", seeds=len(SEEDS), arms=str(arms), project=folder.parent,
                name=folder.name, **{**TRAIN, "epochs": EPOCHS + 1})
    assert sorted(p.name for p in folder.iterdir()) == before


def test_finished_runs_are_reused(comparison):
    folder, _, arms = comparison
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/results.csv")}
    log = _compare(folder, arms)
    assert log.count("finished earlier, reused") == len(ARMS) * len(SEEDS) and "training ..." not in log
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/results.csv")} == stamps


def test_unfinished_run_is_trained_again(comparison):
    folder, _, arms = comparison
    before = _rows(folder / "box_dfl-seed1" / "results.csv")
    for w in (folder / "box_dfl-seed1" / "weights").iterdir():
        w.unlink()
    log = _compare(folder, arms)
    assert "box_dfl seed 1: unfinished run" in log and log.count("training ...") == 1
    after = _rows(folder / "box_dfl-seed1" / "results.csv")
    assert [r["train/box_loss"] for r in after] == [r["train/box_loss"] for r in before]  # same seed, same run


def _write_run(folder: Path, rows: list[dict], diagnostics: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "args.yaml").write_text("epochs: 4\n")
    for name, table in (("results.csv", rows), ("size_diagnostics.csv", diagnostics)):
        if table:
            with open(folder / name, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)
    return folder


def test_run_numbers_are_means_over_the_last_epochs_without_minus_one_buckets(tmp_path):
    rows = [{"epoch": e, "metrics/mAP50-95(B)": 0.1 * e, "metrics/mAP50(B)": 0.2 * e, "metrics/mAP_small(B)": 0.01 * e,
             "metrics/mAP_large(B)": -1, "size/fg_small": 0.1 * e, "size/mean_fg_weight": 1.5,
             "size/unassigned_large": "nan" if e < 4 else 0.5} for e in (1, 2, 3, 4)]
    run = read_run(_write_run(tmp_path / "size-seed0", rows), last_epochs=2)
    assert run["epochs"] == [3, 4]
    # -1: no large objects in the validation set (None, not averaged); no medium column: absent
    assert run["metrics"].pop("mAP large") is None
    assert run["metrics"] == pytest.approx({"mAP50-95": 0.35, "mAP50": 0.7, "mAP small": 0.035}, abs=1e-12)
    assert run["diagnostics"]["size/fg_small"] == pytest.approx(0.35)
    assert run["diagnostics"]["size/unassigned_large"] == pytest.approx(0.5)  # a NaN epoch is skipped
    assert run["mean_fg_weight"] == 1.5
    assert read_run(tmp_path / "size-seed0", last_epochs=10)["epochs"] == [1, 2, 3, 4]


def test_stock_run_diagnostics_come_from_size_diagnostics_csv_for_the_same_epochs(tmp_path):
    rows = [{"epoch": e, "metrics/mAP50-95(B)": 0.1, "metrics/mAP50(B)": 0.2} for e in (1, 2, 3)]
    diag = [{"epoch": e, "size/fg_small": 0.1 * e, "size/pos_per_gt_small": "nan"} for e in (1, 2, 3)]
    run = read_run(_write_run(tmp_path / "stock-seed0", rows, diag), last_epochs=2)
    assert run["diagnostics"]["size/fg_small"] == pytest.approx(0.25)
    assert math.isnan(run["diagnostics"]["size/pos_per_gt_small"])
    assert run["mean_fg_weight"] is None


@pytest.mark.parametrize("value, expected", [
    ("stock,size", ["stock", "size"]), ("size,uniform", ["stock", "size", "uniform"]),
    (("size_norm", "stock"), ["stock", "size_norm"]),
])
def test_built_in_arm_lists_always_start_with_stock(value, expected):
    assert list(load_arms(value)) == expected


def test_arms_file_order_is_kept_and_its_first_arm_is_the_baseline(tmp_path):
    path = tmp_path / "arms.yaml"
    path.write_text("size:\nstock:\nwide:\n  trainer: stock\n  imgsz: 96\n")
    plan = check_args(arms=str(path), size_weights=[3, 2, 1])
    assert [(a.name, a.trainer, a.builtin) for a in plan.arms] == [
        ("size", "size", True), ("stock", "stock", True), ("wide", "stock", False)]
    assert plan.run_args(plan.arms[0])["size_weights"] == [3.0, 2.0, 1.0]  # shared size keys reach size arms
    assert "size_weights" not in plan.run_args(plan.arms[2]) and plan.run_args(plan.arms[2])["imgsz"] == 96


def test_arm_size_keys_win_over_the_shared_ones():
    plan = check_args(arms={"stock": None, "mine": {"size_norm": True}}, size_weights="3,2,1", size_terms="box")
    args = plan.run_args(plan.arms[1])
    assert args["size_weights"] == [3.0, 2.0, 1.0] and args["size_terms"] == ["box"] and args["size_norm"] is True
    plan = check_args(arms={"stock": None, "mine": {"size_terms": "cls"}}, size_terms="box")
    assert plan.run_args(plan.arms[1])["size_terms"] == ["cls"]


def test_uniform_trains_after_the_size_run_it_needs():
    plan = check_args(arms={"uniform": None, "stock": None, "size": None})
    assert [a.name for a in plan.order()] == ["stock", "size", "uniform"]
    assert plan.arms[0].name == "uniform"  # still the baseline of the report


def test_study_file_defines_the_planned_arms():
    plan = check_args(arms=str(REPO / "cfg" / "study.yaml"), model="yolo11n.yaml", data="demo", epochs=40, imgsz=256,
                      batch=16, nbs=16, warmup_epochs=1, plots=False, seeds=3)
    arms = {a.name: a for a in plan.arms}
    assert list(arms) == ["stock", "size", "size_norm", "box_dfl", "inverted_norm"]
    assert arms["stock"].trainer == "stock" and arms["size"].builtin
    assert arms["size_norm"].size["size_norm"] is True and arms["box_dfl"].size["size_terms"] == ["box", "dfl"]
    assert arms["inverted_norm"].size["size_weights"] == [1.0, 1.5, 2.0] and arms["inverted_norm"].size["size_norm"]
    assert "arms=cfg/study.yaml" in (REPO / "cfg" / "study.yaml").read_text()


@pytest.mark.parametrize("value, expected", [(3, (0, 1, 2)), ("4,7", (4, 7)), ((1,), (1,))])
def test_seeds(value, expected):
    assert parse_seeds(value) == expected


@pytest.mark.parametrize("value", [0, "a", "1,1", -2])
def test_bad_seeds_are_refused(value):
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds(value)


@pytest.mark.parametrize("value", [0, -1, 2.5, "5", True])
def test_bad_last_epochs_are_refused(value):
    with pytest.raises(ValueError, match="last_epochs: expected a whole number of epochs >= 1"):
        parse_last_epochs(value)


# (id, arms file text or None for a missing file, fragments of the message)
REFUSED = [
    ("unknown key", "stock:\nfast:\n  lr00: 0.02\n", ["arm 'fast'", "key 'lr00'", "Similar keys: lr0=0.01"]),
    ("unknown size key", "stock:\nw:\n  size_wieghts: [1, 1, 1]\n", ["arm 'w'", "key 'size_wieghts'", "size_weights"]),
    ("bad size value", "stock:\nw:\n  size_weights: [1, 2]\n",
     ["arm 'w'", "key 'size_weights'", "expected 3", "got [1, 2]"]),
    ("bad size term", "stock:\nw:\n  size_terms: box,iou\n", ["arm 'w'", "key 'size_terms'", "'iou' is not a term"]),
    ("bad Ultralytics type", "stock:\nfast:\n  lr0: quick\n", ["arm 'fast'", "key 'lr0'", "got 'quick'", "float"]),
    ("bad Ultralytics range", "stock:\nshort:\n  epochs: 0\n", ["arm 'short'", "key 'epochs'", "got 0", ">= 1"]),
    ("bad trainer", "stock:\nx:\n  trainer: yolo\n",
     ["arm 'x'", "key 'trainer'", "['stock', 'size']", "trainer='yolo'"]),
    ("size keys on stock", "stock:\np2:\n  trainer: stock\n  size_norm: true\n",
     ["arm 'p2'", "key 'size_norm'", "trainer: stock", "got size_norm=True"]),
    *((f"per-run {k}", f"stock:\nx:\n  {k}: {v}\n", ["arm 'x'", f"key '{k}'", "compare sets it for each run", "got"])
      for k, v in (("seed", 3), ("project", "p"), ("name", "n"), ("exist_ok", "true"), ("resume", "true"))),
    ("own data not found", "stock:\nx:\n  data: nosuch.yaml\n", ["arm 'x'", "data:", "'nosuch.yaml' (not found)"]),
    ("bad slice", "stock:\nx:\n  slice: -1\n", ["arm 'x'", "key 'slice'", "whole number of px", "got slice=-1"]),
    ("no validation", "stock:\nx:\n  val: false\n", ["arm 'x'", "key 'val'", "expected True", "got val=False"]),
    ("empty file", "", ["arms: expected a YAML mapping", "empty file"]),
    ("empty mapping", "{}\n", ["arms: expected at least 2 arms", "empty mapping"]),
    ("list of arms", "- stock\n- size\n", ["arms: expected a mapping of arm names", "got list"]),
    ("arm not a mapping", "stock: [1, 2]\nsize:\n", ["arm 'stock'", "expected a mapping of training keys", "[1, 2]"]),
    ("not YAML", "stock: [\n", ["arms: cannot read", "expected a readable YAML file"]),
    ("missing file", None, ["arms: cannot read", "No such file"]),
    ("one arm", "stock:\n", ["arms: expected at least 2 arms", "got ['stock']"]),
    ("unsafe name", "stock:\n'a/b':\n  lr0: 0.02\n", ["arm 'a/b'", "letters, digits", "got 'a/b'"]),
    ("dot name", "stock:\n'..':\n", ["arm '..'", "letters, digits"]),
    ("uniform without size", "stock:\nuniform:\n", ["arm 'uniform'", "'size' arm", "got arms ['stock', 'uniform']"]),
]


def _arms_file(tmp_path: Path, text: str | None) -> Path:
    path = tmp_path / "arms.yaml"
    if text is not None:
        path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragments", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_arms_are_refused_by_the_cli_before_anything_is_created(tmp_path, capsys, text, fragments):
    from size_adaptive.cli import main

    arms, project = _arms_file(tmp_path, text), tmp_path / "project"
    project.mkdir()
    assert main(["compare", f"arms={arms}", f"project={project}", "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolo-sa: error: ") and all(f in err for f in fragments), err
    assert not any(project.iterdir())


@pytest.mark.parametrize("text, fragments", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_arms_are_refused_by_compare_before_anything_is_created(tmp_path, text, fragments):
    arms, project = _arms_file(tmp_path, text), tmp_path / "project"
    project.mkdir()
    try:  # a mapping as a dict, everything else as the file
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = None
    for given in ([value] if isinstance(value, dict) else []) + [str(arms)]:
        with pytest.raises(ValueError) as e:
            compare(model="yolo11n.yaml", data="demo", seeds=2, arms=given, project=project, name="cmp", epochs=1)
        assert all(f in str(e.value) for f in fragments), str(e.value)
    assert not any(project.iterdir())


def test_compare_refuses_bad_shared_arguments_before_training(tmp_path, capsys):
    from size_adaptive.cli import main

    assert main(["compare", "arms=stock,fancy", f"project={tmp_path}"]) == 2
    assert "arms: expected a comma-separated subset" in capsys.readouterr().err
    assert main(["compare", "arms=size,sise", f"project={tmp_path}"]) == 2
    assert "Did you mean 'size'?" in capsys.readouterr().err
    assert main(["compare", "seedz=3", f"project={tmp_path}"]) == 2
    assert "'seedz' is not a valid YOLO argument" in capsys.readouterr().err
    assert main(["compare", "size_weights=1,2", f"project={tmp_path}"]) == 2
    assert "size_weights: expected 3" in capsys.readouterr().err
    assert main(["compare", "val=False", f"project={tmp_path}"]) == 2
    assert "val: expected True" in capsys.readouterr().err
    assert main(["compare", "seed=3", f"project={tmp_path}"]) == 2
    assert "seed: set by 'compare' for each run" in capsys.readouterr().err
    assert main(["compare", "last_epochs=0", f"project={tmp_path}"]) == 2
    assert "last_epochs: expected" in capsys.readouterr().err
    assert main(["compare", "lr0=fast", f"project={tmp_path}"]) == 2
    assert "lr0: expected a value that Ultralytics accepts" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"lr00: expected an Ultralytics training key .* Similar keys: lr0=0.01"):
        compare(arms="stock,size", project=tmp_path, lr00=0.02)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("model, data, mask_metric", [("yolo11n-seg.yaml", "demo-seg", "mask mAP50-95"),
                                                      ("yolo26n-pose.yaml", "demo-pose", "pose mAP50-95"),
                                                      ("yolo11n-obb.yaml", "demo-obb", None)])
def test_compare_runs_per_task(tmp_path, model, data, mask_metric):
    # A stock and a size arm of a segment, pose or OBB model, one seed: the size run trained with the task's size
    # loss, the stock run recorded its assignment, the report carries the task's own mAP and mAP per size.
    report = compare(model=model, data=data, seeds=1, arms="stock,size", project=tmp_path, name="task",
                     **{**TRAIN, "epochs": 1})
    assert list(report["arms"]) == ["stock", "size"] and "mAP50-95" in report["metrics"]
    if mask_metric:
        assert mask_metric in report["metrics"]
    # Per-size mAP for every task, the stock arm included (its validator is patched too); mask mAP per size for segment
    sizes = [f"mAP {size}" for size in ("small", "medium", "large")]
    assert set(sizes) <= set(report["metrics"])
    assert ({f"mask {m}" for m in sizes} <= set(report["metrics"])) == (data == "demo-seg")
    for arm in ("stock", "size"):
        assert all(report["arms"][arm]["runs"]["0"]["metrics"].get(m) is not None for m in sizes)
    size_run = report["arms"]["size"]["runs"]["0"]
    stock_args = yaml.safe_load((tmp_path / "task" / "stock-seed0" / "args.yaml").read_text())
    assert size_run["args"]["task"] == stock_args["task"]
    assert report["arms"]["size"]["diagnostics"]["size/mean_fg_weight"] > 1.0
    assert report["arms"]["stock"]["diagnostics"]["size/pos_per_gt_large"] > 0  # observed stock assignment
    assert (tmp_path / "task" / "stock-seed0" / "size_diagnostics.csv").is_file()


@pytest.mark.parametrize("arms", ["stock,size", {"stock": None, "seg": {"model": "yolo11n-seg.yaml"}}])
def test_demo_data_of_another_task_is_refused_before_anything_trains(tmp_path, arms):
    model = "yolo11n-seg.yaml" if isinstance(arms, str) else "yolo11n.yaml"
    with pytest.raises(ValueError, match="data: expected the demo data of a segment model, data=demo-seg"):
        compare(model=model, data="demo", seeds=1, arms=arms, project=tmp_path, name="x", **TRAIN)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("arms", ["stock,size", {"stock": None, "cls": {"model": "yolo11n-cls.yaml"}}])
def test_a_model_without_boxes_is_refused_naming_its_task(tmp_path, capsys, arms):
    from size_adaptive.cli import main

    model = "yolo11n-cls.yaml" if isinstance(arms, str) else "yolo11n.yaml"
    with pytest.raises(ValueError, match=r"task: the size-adaptive loss trains detect, segment, pose, obb models .*"
                                         r"got a classify model \(yolo11n-cls.yaml\)"):
        compare(model=model, data="demo", seeds=1, arms=arms, project=tmp_path, name="x", **TRAIN)
    if isinstance(arms, str):  # the command line: one usage-error line, no KeyError
        assert main(["compare", f"model={model}", "data=demo", f"arms={arms}", f"project={tmp_path}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("yolo-sa: error: task:") and "got a classify model" in err and "KeyError" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text, fragments", [
    ("a:\n  lr0: 0.02\nb:\na:\n  lr0: 0.03\n",
     ["arms: arm 'a' is given twice", "(lines 1 and 4)", "expected each arm name once", "second 'a' at line 4"]),
    ("stock:\nfast:\n  lr0: 0.02\n  mosaic: 0.5\n  lr0: 0.03\n",
     ["arms: key 'lr0' is given twice", "(lines 3 and 5)", "expected each key of an arm once"]),
])
def test_a_name_given_twice_in_an_arms_file_is_refused_with_its_lines(tmp_path, capsys, text, fragments):
    # PyYAML's safe_load keeps the last of two equal keys silently: the first arm 'a' would vanish.
    from size_adaptive.cli import main

    arms = _arms_file(tmp_path, text)
    assert yaml.safe_load(text)  # what plain PyYAML makes of it: no error
    with pytest.raises(ValueError) as e:
        load_arms(str(arms))
    assert all(f in str(e.value) for f in fragments), str(e.value)
    assert main(["compare", f"arms={arms}", f"project={tmp_path / 'project'}"]) == 2
    err = capsys.readouterr().err
    assert all(f in err for f in fragments) and not (tmp_path / "project").exists()


def _recorded_run(folder: Path, plan, arm_name: str, seed: int = 0, **trained_with) -> Path:
    """A finished run folder whose args.yaml is what the trainer records for the arm's run args plus
    ``trained_with`` (the arm as it was), with what the trainer resolves itself filled in as it would be."""
    from size_adaptive.runs import resolved_settings

    arm = plan.arm(arm_name)
    args = resolved_settings({**plan.run_args(arm), "seed": seed, **trained_with}, arm.trainer)
    args.update(save_dir=str(folder), workers=0, device="cpu", project=str(folder.parent), name=folder.name)
    if arm.trainer == "size":  # BaseTrainer's auto optimizer, then the thresholds: recorded by the size trainer
        args.update(optimizer="AdamW", lr0=0.000714, warmup_bias_lr=0.0, size_input_thresholds=[6.4, 19.2])
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "last.pt").write_bytes(b"checkpoint")
    (folder / "args.yaml").write_text(yaml.safe_dump(args))
    (folder / "results.csv").write_text("epoch,metrics/mAP50-95(B)\n" + "".join(
        f"{e},0.1\n" for e in range(1, args["epochs"] + 1)))
    return folder


def test_reuse_takes_a_run_recorded_with_exactly_the_arms_resolved_settings(tmp_path):
    from size_adaptive.runs import finished as _finished

    plan = check_args(model="yolo11n.yaml", arms={"stock": None, "box": {"size_terms": "box", "mosaic": 0.5}},
                      **TRAIN)
    for arm in plan.arms:
        run = _recorded_run(tmp_path / f"{arm.name}-seed0", plan, arm.name)
        assert _finished(run, {**plan.run_args(arm), "seed": 0}, arm.trainer)


@pytest.mark.parametrize("arm, trained_with, key, recorded, requested", [
    ("box", {"mosaic": 0.5}, "mosaic", 0.5, 1.0),  # a stock key removed from the arm since
    ("box", {"size_norm": True}, "size_norm", True, False),  # a size key removed from the arm since
    ("stock", {"optimizer": "SGD", "lr0": 0.02}, "lr0", 0.02, 0.01),  # (lr0 counts when the optimizer is not auto)
    ("stock", {"imgsz": 96}, "imgsz", 96, 64),  # a shared key changed on the command line
])
def test_reuse_refuses_a_run_trained_with_a_key_no_longer_in_its_arm_naming_the_key(tmp_path, arm, trained_with, key,
                                                                                   recorded, requested):
    from size_adaptive.runs import finished as _finished

    arms = {"stock": None, "box": {"size_terms": "box"}}
    plan = check_args(model="yolo11n.yaml", arms=arms, **TRAIN)
    if "optimizer" in trained_with:  # the arm trained with optimizer SGD and lr0 0.02, and now only with SGD
        plan = check_args(model="yolo11n.yaml", arms={**arms, "stock": {"trainer": "stock", "optimizer": "SGD"}},
                          **TRAIN)
    run = _recorded_run(tmp_path / f"{arm}-seed0", plan, arm, **trained_with)
    with pytest.raises(ValueError, match="holds a run with other settings") as e:
        _finished(run, {**plan.run_args(plan.arm(arm)), "seed": 0}, plan.arm(arm).trainer)
    assert f"{key}: recorded {recorded!r}, requested {requested!r}" in str(e.value)
    assert str(e.value).count("recorded") == 1  # only that key


def test_a_key_the_run_predates_counts_with_its_default(tmp_path):
    # A run trained before a key existed (here: size_terms, Ultralytics' cutmix) had that key's default behaviour.
    from size_adaptive.runs import finished as _finished

    plan = check_args(model="yolo11n.yaml", arms={"stock": None, "size": None}, **TRAIN)
    run = _recorded_run(tmp_path / "size-seed0", plan, "size")
    args = yaml.safe_load((run / "args.yaml").read_text())
    (run / "args.yaml").write_text(yaml.safe_dump({k: v for k, v in args.items() if k not in ("size_terms", "cutmix")}))
    assert _finished(run, {**plan.run_args(plan.arm("size")), "seed": 0}, "size")


def test_arms_across_resolutions_are_judged_on_the_same_whole_images(tmp_path, monkeypatch):
    # One whole-image arm at imgsz 64 and one trained on 320 px tiles of the same data, judged slice by slice: both
    # runs get 'whole ...' metrics from the same whole val images, paired like the per-epoch ones.
    from size_adaptive.tile import run as tile

    monkeypatch.setenv("YOLO_SA_DEMO_LARGE_SIZE", "1,1")
    tiles = tile(data="demo-large", tile=320, overlap=0.1, out=str(tmp_path / "tiles"))
    arms = {"whole": {"trainer": "stock"},
            "tiles": {"trainer": "stock", "data": str(Path(tiles["out"]) / "data.yaml"), "slice": 320}}
    report = compare(model="yolo11n.yaml", data="demo-large", seeds=[0], arms=arms, project=tmp_path, name="res",
                     **{**TRAIN, "epochs": 1})
    for arm in arms:
        assert {"whole mAP50-95", "whole mAP50"} <= set(report["arms"][arm]["metrics"])
        record = json.loads((tmp_path / "res" / f"{arm}-seed0" / "whole_image_metrics.json").read_text())
        assert record["settings"]["slice"] == arms[arm].get("slice", 0)
        assert record["settings"]["slice_whole"] is bool(arms[arm].get("slice"))
    assert "whole mAP50-95" in report["arms"]["tiles"]["diff_to_baseline"]
    with pytest.raises(ValueError, match="same whole images"):  # tiles of demo-large against the small demo
        check_args(model="yolo11n.yaml", data="demo", seeds=1, arms={"stock": None, "tiles": arms["tiles"]})
