"""The statistics and report of yolo-sa compare, on hand-made runs: intervals, verdict, left-out buckets, outputs."""

from __future__ import annotations

import json
import math

import pytest

from size_adaptive.report import markdown, paired_difference, summarise, write_report

SEEDS = (0, 1, 2)


def _run(metrics: dict, **diagnostics) -> dict:
    return {"metrics": metrics, "diagnostics": diagnostics, "args": {"epochs": 3}}


def _runs(small_diffs, large_diffs=(0.0, 0.0, 0.0), large=0.3) -> dict:
    """stock with mAP small 0.02 + a per-seed wobble, and `size` = stock + the given per-seed differences."""
    stock = {s: _run({"mAP50-95": 0.1, "mAP small": 0.02 + 0.001 * s, "mAP large": large}) for s in SEEDS}
    size = {
        s: _run({"mAP50-95": 0.1, "mAP small": 0.02 + 0.001 * s + small_diffs[i],
                 "mAP large": None if large is None else large + large_diffs[i]})
        for i, s in enumerate(SEEDS)
    }
    return {"stock": stock, "size": size}


def test_interval_is_the_hand_computed_t_interval():
    # differences 1, 2, 3: mean 2, sample std sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1, n 3;
    # half-width t(0.975, 2) * std / sqrt(3) = 4.302653 * 1 / 1.7320508 = 2.484138 -> [-0.484138, 4.484138]
    d = paired_difference([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["std"] == pytest.approx(1.0) and d["n"] == 3
    assert d["ci95"] == pytest.approx([2 - 2.484138, 2 + 2.484138], abs=1e-6)


def test_interval_of_two_seeds_uses_twelve_point_seven():
    # differences 0.01, 0.03: mean 0.02, std sqrt(2 * 0.01^2 / 1) = 0.0141421, half-width 12.706205 * 0.0141421
    # / sqrt(2) = 0.12706205
    d = paired_difference([0.01, 0.03])
    assert d["ci95"] == pytest.approx([0.02 - 0.12706205, 0.02 + 0.12706205], abs=1e-7)


def test_one_seed_gives_no_interval():
    d = paired_difference([0.5])
    assert d == {"mean": 0.5, "std": None, "n": 1, "ci95": None}


def test_verdict_names_only_intervals_that_exclude_zero():
    # mAP small differences 0.005, 0.006, 0.007: mean 0.006, std 0.001, half-width 4.302653 * 0.001 / sqrt(3)
    # = 0.0024841 -> [0.0035159, 0.0084841], excludes zero. mAP large differences -0.1, 0, 0.1: mean 0, contains zero.
    report = summarise(_runs([0.005, 0.006, 0.007], [-0.1, 0.0, 0.1]), SEEDS)
    small = report["arms"]["size"]["diff_to_baseline"]["mAP small"]
    assert small["ci95"] == pytest.approx([0.0035159, 0.0084841], abs=1e-6)
    verdict = report["verdict"]
    assert [(v["arm"], v["metric"]) for v in verdict["distinguishable"]] == [("size", "mAP small")]
    assert "size: mAP small +0.0060 (95 % CI +0.0035 to +0.0085) vs stock" in verdict["text"]
    assert "mAP large" not in verdict["text"] and "mAP50-95" not in verdict["text"]
    text = markdown(report)
    assert "size: mAP small +0.0060 (95 % CI +0.0035 to +0.0085) vs stock" in text
    assert "| size | +0.0000 [+0.0000, +0.0000] | +0.0060 [+0.0035, +0.0085] | +0.0000 [-0.2484, +0.2484] |" in text


def test_verdict_says_plainly_when_nothing_is_distinguishable():
    # mAP small differences 0.01, -0.005, 0.004: mean 0.003, the interval holds zero; a difference of about three
    # standard deviations of the mean is not called evidence.
    report = summarise(_runs([0.01, -0.005, 0.004]), SEEDS)
    assert report["verdict"]["distinguishable"] == []
    text = markdown(report)
    assert "No difference to `stock` is distinguishable from seed noise" in text
    assert "two standard deviations" not in text


def test_one_seed_report_has_no_intervals():
    runs = {arm: {0: r[0]} for arm, r in _runs([0.01, 0.01, 0.01]).items()}
    report = summarise(runs, (0,))
    d = report["arms"]["size"]["diff_to_baseline"]["mAP small"]
    assert d["ci95"] is None and d["std"] is None and d["n"] == 1
    text = markdown(report)
    assert "| size | +0.0000 [n/a] | +0.0100 [n/a] |" in text
    assert "With 1 seed there are no confidence intervals" in text
    assert "| stock | 0.1000 ± n/a |" in text


def test_bucket_without_objects_is_left_out_of_table_json_and_chart(tmp_path):
    report = summarise(_runs([0.005, 0.006, 0.007], large=None), SEEDS)
    assert report["metrics"] == ["mAP50-95", "mAP small"] and list(report["left_out"]) == ["mAP large"]
    assert "mAP large" not in report["arms"]["size"]["metrics"]
    assert "mAP large" not in report["arms"]["size"]["diff_to_baseline"]
    text = markdown(report)
    assert "| arm | mAP50-95 | mAP small |" in text and "| mAP large" not in text
    assert "Left out: mAP large (no objects of that size" in text
    write_report(report, tmp_path)  # the chart draws the reported metrics only (no -1 bar)
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["metrics"] == ["mAP50-95", "mAP small"]
    assert all("mAP large" not in saved["arms"][a]["metrics"] for a in ("stock", "size"))


def test_metric_missing_from_a_run_is_not_reported():
    runs = _runs([0.005, 0.006, 0.007])
    del runs["size"][1]["metrics"]["mAP small"]
    assert summarise(runs, SEEDS)["metrics"] == ["mAP50-95", "mAP large"]


def test_json_and_markdown_carry_the_intervals_and_diagnostics(tmp_path):
    runs = _runs([0.005, 0.006, 0.007])
    for s in SEEDS:
        runs["stock"][s]["diagnostics"] = {"size/fg_small": 0.5, "size/unassigned_large": math.nan}
        runs["size"][s]["diagnostics"] = {"size/fg_small": 0.4 + 0.1 * s, "size/mean_fg_weight": 1.7,
                                          "size/unassigned_large": math.nan}
    report = summarise(runs, SEEDS, definitions={"stock": {"trainer": "stock"}, "size": {"trainer": "size"}},
                       common_args={"model": "m.yaml", "data": "d.yaml"}, last_epochs=5)
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "comparison.json").read_text())  # strict JSON: NaN was written as null
    d = saved["arms"]["size"]["diff_to_baseline"]["mAP small"]
    assert set(d) == {"mean", "std", "n", "ci95", "per_seed"} and len(d["ci95"]) == 2 and d["n"] == 3
    assert d["per_seed"] == pytest.approx({"0": 0.005, "1": 0.006, "2": 0.007})
    assert saved["arms"]["size"]["diagnostics"] == pytest.approx(
        {"size/fg_small": 0.5, "size/mean_fg_weight": 1.7, "size/unassigned_large": None})
    assert saved["arms"]["stock"]["diagnostics"]["size/unassigned_large"] is None
    assert "size/mean_fg_weight" not in saved["arms"]["stock"]["diagnostics"]
    text = (tmp_path / "comparison.md").read_text()
    assert "mean [95 % CI]" in text and "last 5 validated epochs" in text
    assert "| stock | 50.0/n/a/n/a | n/a | n/a/n/a/n/a |" in text
    assert "| size | 50.0/n/a/n/a | 1.700 |" in text
    png = (tmp_path / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _csv_run(folder, columns: dict) -> dict:
    """A run folder whose results.csv holds 2 epochs of ``columns`` (column -> value per epoch), read as compare
    reads it."""
    import csv

    from size_adaptive.runs import read_run

    folder.mkdir(parents=True)
    (folder / "args.yaml").write_text("epochs: 2\n")
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "metrics/mAP50-95(B)", *columns])
        writer.writeheader()
        for e in (1, 2):
            writer.writerow({"epoch": e, "metrics/mAP50-95(B)": 0.1 * e, **{k: v * e for k, v in columns.items()}})
    return read_run(folder)


def test_compare_reports_the_tiny_bins_where_every_run_logged_them(tmp_path):
    # Every stock and size run logged size_bins=aitod's columns: the report has mAP very tiny and tiny beside small
    # (means over the 2 epochs: 1.5 x the value) and five-bin diagnostics. Where one run lacks them, they are left out.
    aitod = {"metrics/mAP_very_tiny(B)": 0.01, "metrics/mAP_tiny(B)": 0.02, "metrics/mAP_small(B)": 0.04,
             "size/fg_very_tiny": 0.1, "size/fg_tiny": 0.2, "size/fg_small": 0.4, "size/fg_medium": 0.3,
             "size/fg_large": 0.1}
    runs = {arm: {s: _csv_run(tmp_path / f"{arm}-{s}", aitod) for s in SEEDS} for arm in ("stock", "size")}
    assert list(runs["size"][0]["metrics"]) == ["mAP50-95", "mAP very tiny", "mAP tiny", "mAP small"]
    report = summarise(runs, SEEDS)
    assert report["metrics"] == ["mAP50-95", "mAP very tiny", "mAP tiny", "mAP small"]
    assert report["arms"]["size"]["metrics"]["mAP tiny"]["mean"] == pytest.approx(0.03)
    text = markdown(report)
    assert "| arm | mAP50-95 | mAP very tiny | mAP tiny | mAP small |" in text
    assert "Assignment diagnostics (very tiny/tiny/small/medium/large;" in text
    assert "| stock | 15.0/30.0/60.0/45.0/15.0 |" in text  # positives %, mean of 1x and 2x the shares
    coco = {k: v for k, v in aitod.items() if "tiny" not in k}
    runs["stock"][0] = _csv_run(tmp_path / "coco-run", coco)
    report = summarise(runs, SEEDS)
    assert report["metrics"] == ["mAP50-95", "mAP small"] and "tiny" not in "".join(report["metrics"])
