"""yolo-sa advise: object sides at native resolution and after Ultralytics' resize, the share below the finest
stride, the recommendation rule and the compare commands it prints, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from size_adaptive.advise import commands, finest_stride, levers, p2_model, run
from size_adaptive.yolo_data import histogram, row_area, size_histograms


def make_dataset(root: Path, splits: dict) -> Path:
    """``splits``: split -> [(stem, (width, height), [xyxy px boxes])]; flat images; returns the data.yaml."""
    for split, images in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, (w, h), boxes in images:
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), np.zeros((h, w), np.uint8))
            rows = [f"0 {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}"
                    for x0, y0, x1, y1 in boxes]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(rows))
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "thing"}}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def boxes_of_sides(sides_wh, x=100, y=100):
    """Boxes of the given (w, h) px, one beside the other."""
    out, left = [], x
    for w, h in sides_wh:
        out.append((left, y, left + w, y + h))
        left += w + 10
    return out


def test_bins_are_closed_below_and_open_above():
    sides = [0.5, 7.99, 8, 15.99, 16, 31.99, 32, 63.99, 64, 500]
    assert histogram(sides, (8, 16, 32, 64), ("a", "b", "c", "d", "e")) == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}
    assert size_histograms([31.99, 32, 95.99, 96])["coco"] == {"small": 1, "medium": 2, "large": 1}


def test_object_areas_follow_per_size_map():
    assert row_area(np.array([0, 0.5, 0.5, 0.1, 0.2]), 1000, 500) == pytest.approx(100 * 100)  # w h of the box
    triangle = np.array([0, 0.1, 0.1, 0.14, 0.1, 0.1, 0.18])  # (100, 50) (140, 50) (100, 90) px in 1000 x 500
    assert row_area(triangle, 1000, 500) == pytest.approx(40 * 40 / 2)  # the polygon's area, not its box's
    rotated = np.array([0, 0.45, 0.4, 0.55, 0.6, 0.5, 0.7, 0.4, 0.5])  # a 45 deg rectangle, sides 141.4 x 70.7 px
    assert row_area(rotated, 1000, 500) == pytest.approx(2**0.5 * 100 * 2**0.5 * 50)


@pytest.fixture
def hand_built(tmp_path):
    # train: one 2000 x 1000 image (resize 640 / 2000 = 0.32) with boxes of sides sqrt(w h) 10, 40, 110, 6, 10 px;
    # val: one 640 x 480 image (resize 1) with one 8 x 8 box, exactly at the stride
    train = boxes_of_sides([(10, 10), (40, 40), (110, 110), (6, 6), (20, 5)])
    return make_dataset(tmp_path / "d", {"train": [("a", (2000, 1000), train)],
                                         "val": [("b", (640, 480), [(300, 200, 308, 208)])]})


def test_histograms_and_the_share_below_the_stride_on_hand_built_labels(hand_built, capsys):
    r = run(data=str(hand_built), imgsz=640)
    assert r["images"] == {"train": 1, "val": 1} and r["objects"] == {"train": 5, "val": 1}
    # native sides 10, 40, 110, 6, 10, 8
    assert r["native"]["ai_tod"] == {"<8": 1, "8-16": 3, "16-32": 0, "32-64": 1, ">=64": 1}
    assert r["native"]["coco"] == {"small": 4, "medium": 1, "large": 1}
    # resized: x 0.32 -> 3.2, 12.8, 35.2, 1.92, 3.2; the 640 px image stays: 8
    assert r["resized"]["ai_tod"] == {"<8": 3, "8-16": 2, "16-32": 0, "32-64": 1, ">=64": 0}
    assert r["resized"]["coco"] == {"small": 5, "medium": 1, "large": 0}
    assert r["below_stride"] == pytest.approx(3 / 6)  # 3.2, 1.92, 3.2 < 8; the 8 px box is not below
    printed = capsys.readouterr().out
    assert "below the finest stride (8 px) after the resize: 50.0% of 6 objects" in printed
    assert "rule: lost(lever)" in printed


def test_the_finest_stride_comes_from_the_model():
    assert finest_stride(None) == 8
    assert finest_stride("yolo11n.yaml") == 8
    assert finest_stride("yolo11n-p2.yaml") == 4


def test_a_p2_model_counts_objects_against_stride_4(hand_built):
    # imgsz 1024: x 0.512 -> 5.12, 20.48, 56.32, 3.07, 5.12; the 640 px image is enlarged x 1.6: 12.8
    stock = run(data=str(hand_built), imgsz="1024")
    p2 = run(data=str(hand_built), imgsz="1024", model="yolo11n-p2.yaml")
    assert stock["below_stride"] == pytest.approx(3 / 6) and p2["below_stride"] == pytest.approx(1 / 6)
    assert p2["stride"] == 4 and "p2" not in p2["options"] and "tile+p2" not in p2["options"]


# ------------------------------------------------------------------------------------------------- the rule


def _advice(side, long, imgsz=640, stride=8, n=10):
    sides, longs = np.full(n, float(side)), np.full(n, float(long))
    return levers(sides, longs, longs, imgsz, stride)


def test_no_lever_when_few_objects_fall_below_the_stride():
    a = _advice(side=40, long=2000)  # 40 x 0.32 = 12.8 px >= 8
    assert (a["lever"], a["lost"]) == ("none", 0.0)


def test_a_p2_head_when_images_are_no_larger_than_imgsz():
    a = _advice(side=6, long=640)  # 6 px at stride 8: lost; at stride 4: kept; no larger image to raise or tile
    assert set(a["options"]) == {"p2"} and (a["lever"], a["add_p2"]) == ("p2", False)


def test_tiles_when_only_native_resolution_lifts_the_objects_above_the_stride():
    a = _advice(side=12, long=4000)  # resized 1.92 px; imgsz 1280: 3.84; P2: 1.92 < 4; tiles: 12 >= 8
    assert a["options"]["p2"]["lost"] == a["options"]["imgsz"]["lost"] == a["options"]["imgsz+p2"]["lost"] == 1.0
    assert (a["lever"], a["value"], a["add_p2"]) == ("tile", 640, False)  # tile + P2 is as good but costs more


def test_the_cheapest_of_equally_good_levers_wins():
    a = _advice(side=10, long=1000)  # resized 6.4: P2 (>= 4), imgsz 1024 (10.24 >= 8) and tiles (10) all keep all
    assert a["options"]["imgsz"] == {"value": 1024, "lost": 0.0} and a["options"]["tile"]["lost"] == 0.0
    assert a["lever"] == "p2"


def test_tile_and_p2_together_when_objects_are_below_the_stride_even_at_native_resolution():
    a = _advice(side=6, long=3000)  # native 6 px < 8: only tiles at stride 4 keep them
    assert (a["lever"], a["value"], a["add_p2"]) == ("tile", 640, True)


def test_no_lever_when_none_helps():
    a = _advice(side=1, long=2000)  # 1 px objects are below every stride at every lever
    assert a["lost"] == 1.0 and a["lever"] == "none"


def test_the_printed_commands_compare_the_lever_against_stock():
    advice = {"lever": "tile", "value": 640, "add_p2": True}
    tile = commands("aerial.yaml", 640, None, advice, "aerial_tiles640/data.yaml")
    assert tile[0] == "yolo-sa tile data=aerial.yaml tile=640 overlap=0.2"
    assert tile[2] == ("yolo-sa compare model=yolo11n.yaml data=aerial.yaml imgsz=640 seeds=3 arms=arms_tiles640.yaml "
                       "name=tiles640")
    arms_text = tile[1].split("'")[1].replace("\\n", "\n")  # printf '...' > arms_tiles640.yaml
    assert yaml.safe_load(arms_text) == {
        "stock": None,  # the built-in stock arm, the baseline
        "tiles640": {"trainer": "stock", "data": "aerial_tiles640/data.yaml", "slice": 640},
        "tiles640_p2": {"trainer": "stock", "data": "aerial_tiles640/data.yaml", "slice": 640,
                        "model": "yolo11n-p2.yaml"}}
    p2 = commands("demo", 320, "yolo12s.yaml", {"lever": "p2", "value": None, "add_p2": False}, "")
    assert yaml.safe_load(p2[0].split("'")[1].replace("\\n", "\n"))["p2"] == {"trainer": "stock",
                                                                               "model": "yolo12s-p2.yaml"}
    assert commands("demo", 320, None, {"lever": "none", "value": None, "add_p2": False}, "") == []
    assert p2_model("path/to/yolo11m.yaml") == "yolo11m-p2.yaml" and p2_model("custom.yaml") == "yolo11n-p2.yaml"


def test_advise_on_demo_large_recommends_tiles_with_its_command(tmp_path, monkeypatch):
    from size_adaptive.demo_large import demo_large_data

    data = demo_large_data(1, 1, root=tmp_path, sides=(1600, 1700))
    r = run(data=str(data))
    assert r["lever"] == "tile" and r["value"] == 640 and r["below_stride"] > 0.5
    assert r["commands"][0] == f"yolo-sa tile data={data} tile=640 overlap=0.2"


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("keys, message", [
    ({"imgsz": 0}, "imgsz: expected a whole number of px > 0; got imgsz=0"),
    ({"imgsz": "abc"}, "imgsz: expected a whole number of px > 0; got imgsz='abc'"),
    ({"imgs": 320}, "imgs: expected one of the keys of 'yolo-sa advise' (data, imgsz, model); got imgs=320 (did you "
                    "mean 'imgsz'?)"),
    ({"model": "nowhere.yaml"}, "model: expected a model yaml or .pt file whose finest stride to use"),
    ({"data": None}, "data: expected a dataset yaml or a demo keyword"),
    ({"data": "nowhere.yaml"}, "data: expected a local dataset yaml or a demo keyword"),
])
def test_bad_keys_are_refused_by_name(hand_built, tmp_path, keys, message):
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError) as e:
        run(**{"data": str(hand_built), **keys})
    assert str(e.value).startswith(message)
    assert sorted(tmp_path.rglob("*")) == before


def test_an_unreadable_image_is_named(hand_built):
    broken = hand_built.parent / "images" / "val" / "c.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ValueError, match=rf"^data: expected readable images; got {broken}, which cannot be read"):
        run(data=str(hand_built))


def test_the_cli_prints_one_error_line_and_exits_2(hand_built, tmp_path):
    r = subprocess.run([sys.executable, "-m", "size_adaptive", "advise", f"data={hand_built}", "imgsz=-1"],
                       capture_output=True, text=True, cwd=tmp_path, env=os.environ)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == ["yolo-sa: error: imgsz: expected a whole number of px > 0; got imgsz='-1'"]
