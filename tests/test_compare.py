"""yolo-sa compare at toy size: every arm and seed in the table, chart and JSON; the uniform constant; reuse."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_DEMO
from size_adaptive.compare import markdown, parse_arms, parse_seeds

REPO = Path(__file__).resolve().parents[1]
ARMS, SEEDS = ("stock", "size", "uniform", "size_norm"), (0, 1)


def _compare(folder: Path) -> str:
    env = {**os.environ, "YOLO_SA_DEMO_SIZE": ",".join(map(str, TINY_DEMO))}
    proc = subprocess.run(
        [sys.executable, "-m", "size_adaptive", "compare", "model=yolo11n.yaml", "data=demo", "epochs=1", "imgsz=64",
         "batch=4", "device=cpu", "plots=False", f"seeds={len(SEEDS)}", f"arms={','.join(ARMS)}",
         f"project={folder.parent}", f"name={folder.name}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare") / "toy"
    return folder, _compare(folder)


def test_progress_is_shown_per_run(comparison):
    _, log = comparison
    n = len(ARMS) * len(SEEDS)
    for i, (seed, arm) in enumerate(((s, a) for s in SEEDS for a in ARMS), 1):
        assert f"compare: [{i}/{n}] {arm} seed {seed}: training ..." in log
        assert re.search(rf"compare: \[{i}/{n}\] {arm} seed {seed}: done in \d+ s, mAP50-95 ", log)


def test_table_chart_and_json_hold_every_arm_and_seed(comparison):
    folder, _ = comparison
    table = (folder / "comparison.md").read_text()
    for arm in ARMS:
        assert re.search(rf"^\| {arm} \| \d\.\d{{4}} ± \d\.\d{{4}} \|", table, re.M)
    assert "Paired difference to `stock`" in table
    report = json.loads((folder / "comparison.json").read_text())
    assert report["seeds"] == list(SEEDS) and list(report["arms"]) == list(ARMS)
    for arm in ARMS:
        runs = report["arms"][arm]["runs"]
        assert sorted(runs) == [str(s) for s in SEEDS]
        for seed, run in runs.items():
            assert run["args"]["seed"] == int(seed) and run["args"]["epochs"] == 1  # resolved settings of the run
        if arm != "stock":
            assert set(report["arms"][arm]["diff_to_stock"]) == {"mAP50-95", "mAP50", "mAP small", "mAP medium", "mAP large"}
    assert report["arms"]["size_norm"]["runs"]["0"]["args"]["size_norm"] is True
    assert "size_weights" not in report["arms"]["stock"]["runs"]["0"]["args"]  # Ultralytics' own trainer
    png = (folder / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_uniform_constant_is_the_size_arms_recorded_mean_weight(comparison):
    folder, _ = comparison
    for seed in SEEDS:
        with open(folder / f"size-seed{seed}" / "results.csv") as f:
            mean_weight = statistics.fmean(float(r["size/mean_fg_weight"]) for r in csv.DictReader(f))
        args = yaml.safe_load((folder / f"uniform-seed{seed}" / "args.yaml").read_text())
        assert args["size_weights"] == pytest.approx([mean_weight] * 3, rel=1e-12) and args["size_norm"] is False
        assert 1.0 < mean_weight < 2.0


def test_finished_runs_are_reused(comparison):
    folder, _ = comparison
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/results.csv")}
    log = _compare(folder)
    assert log.count("finished earlier, reused") == len(ARMS) * len(SEEDS) and "training ..." not in log
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*-seed*/results.csv")} == stamps


@pytest.mark.parametrize("value, expected", [("stock,size", ("stock", "size")), ("size,uniform", ("stock", "size", "uniform"))])
def test_arms_always_include_stock(value, expected):
    assert parse_arms(value) == expected


@pytest.mark.parametrize("value", ["stock,fancy", "uniform", ""])
def test_bad_arms_are_refused(value):
    with pytest.raises(ValueError, match="arms"):
        parse_arms(value)


@pytest.mark.parametrize("value, expected", [(3, (0, 1, 2)), ("4,7", (4, 7)), ((1,), (1,))])
def test_seeds(value, expected):
    assert parse_seeds(value) == expected


@pytest.mark.parametrize("value", [0, "a", "1,1", -2])
def test_bad_seeds_are_refused(value):
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds(value)


def test_markdown_flags_differences_within_noise():
    ms = lambda m, s: {"mean": m, "std": s, "n": 3}  # noqa: E731
    metrics = {k: ms(0.2, 0.01) for k in ("mAP50-95", "mAP50", "mAP small", "mAP medium", "mAP large")}
    report = {
        "seeds": [0, 1, 2], "common_args": {"model": "m.yaml", "data": "d.yaml", "epochs": 1, "imgsz": 64},
        "size_settings": {}, "arms": {
            "stock": {"metrics": metrics},
            "size": {"metrics": metrics, "diff_to_stock": {**{k: ms(0.05, 0.01) for k in metrics}, "mAP large": ms(0.01, 0.02)}},
        },
    }
    text = markdown(report)
    assert "Within about two standard deviations of zero here: size mAP large." in text
    assert "| size | +0.0500 ± 0.0100 |" in text


def test_compare_refuses_bad_arguments_before_training(tmp_path, capsys):
    from size_adaptive.cli import main

    assert main(["compare", "arms=stock,fancy", f"project={tmp_path}"]) == 2
    assert "arms: expected" in capsys.readouterr().err
    assert main(["compare", "seedz=3", f"project={tmp_path}"]) == 2
    assert "'seedz' is not a valid YOLO argument" in capsys.readouterr().err
    assert main(["compare", "size_weights=1,2", f"project={tmp_path}"]) == 2
    assert main(["compare", "val=False", f"project={tmp_path}"]) == 2
    assert "val: expected True" in capsys.readouterr().err
    assert main(["compare", "seed=3", f"project={tmp_path}"]) == 2
    assert "seed: set by 'compare' for each run" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
