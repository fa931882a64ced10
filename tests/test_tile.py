"""yolo-sa tile: windows, clipping and visibility of boxes, polygons and rotated boxes, the summary's window map,
reproducibility, the output folder rules and every refusal before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
import yaml

from size_adaptive import clip
from size_adaptive.tile import run


def make_dataset(root: Path, splits: dict, names=("a", "b"), ext=".png", extra: dict | None = None) -> Path:
    """A YOLO dataset under ``root``: ``splits`` maps a split to ``[(stem, (width, height), label text)]``; images
    are flat grey (or a gradient when ``ext`` is .png, so that crops can be compared). Returns the data.yaml."""
    for split, images in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for stem, (w, h), text in images:
            yy, xx = np.mgrid[0:h, 0:w]
            image = np.stack(((xx * 7 + yy * 3) % 251, (xx + yy * 11) % 253, (xx * yy) % 241), -1).astype(np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{stem}{ext}"), image)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    spec.update(extra or {})
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def tile_lines(out: Path, split: str, name: str) -> list[str]:
    return (out / "labels" / split / f"{name}.txt").read_text().splitlines()


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def box_row(cls, x0, y0, x1, y1, w, h) -> str:
    """A YOLO box row from xyxy px in a w x h image."""
    return f"{cls} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}"


def poly_row(cls, points, w, h) -> str:
    return f"{cls} " + " ".join(f"{x / w} {y / h}" for x, y in points)


def parse(line: str) -> tuple[int, np.ndarray]:
    values = line.split()
    return int(values[0]), np.array(values[1:], float)


# ---------------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("w, h, tile, overlap", [(1800, 1700, 640, 0.2), (2000, 640, 512, 0.5), (1000, 1000, 300, 0.0),
                                                 (641, 1281, 640, 0.25)])
def test_the_window_grid_covers_the_image_with_the_requested_overlap(w, h, tile, overlap):
    wins = clip.windows(w, h, tile, overlap)
    gap = round(overlap * tile)
    assert (wins[:, 2] - wins[:, 0] == tile).all() and (wins[:, 3] - wins[:, 1] == tile).all()  # image >= tile
    assert (wins[:, :2] >= 0).all() and (wins[:, 2] <= w).all() and (wins[:, 3] <= h).all()
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in wins:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    for axis, side in ((0, w), (1, h)):
        starts = np.unique(wins[:, axis])
        steps = np.diff(starts)
        assert (steps[:-1] == tile - gap).all()  # a regular grid ...
        assert 0 < steps[-1] <= tile - gap and starts[-1] + tile == side  # ... whose last window is flush
        assert len(starts) == 1 + int(np.ceil((side - tile) / (tile - gap)))  # and no more windows than that


def test_images_smaller_than_the_tile_give_one_unpadded_window():
    assert clip.windows(300, 200, 640, 0.2).tolist() == [[0, 0, 300, 200]]
    assert clip.windows(300, 1000, 640, 0.2).tolist() == [[0, 0, 300, 640], [0, 360, 300, 1000]]  # 1000 - 640 = 360


# ------------------------------------------------------------------------------------------------- clipping


def test_boxes_crossing_a_tile_border_are_clipped_and_kept_by_their_visible_share(tmp_path):
    # 1000 x 500 px, tile 500, overlap 0: windows [0, 500) and [500, 1000) on one row
    rows = [box_row(0, 450, 100, 550, 140, 1000, 500),  # 50 % | 50 %: below 0.6 in both -> lost
            box_row(1, 470, 200, 570, 240, 1000, 500),  # 30 % | 70 %: kept on the right only, x 500..570
            box_row(0, 100, 300, 140, 330, 1000, 500),  # inside the left tile
            box_row(1, 380, 10, 580, 20, 1000, 500)]  # 60 % | 40 %: kept on the left (exactly min_visible)
    data = make_dataset(tmp_path / "d", {"train": [("im", (1000, 500), "\n".join(rows))],
                                         "val": [("v", (1000, 500), "")]})
    s = run(data=str(data), tile=500, overlap=0, min_visible=0.6, background=0, out=str(tmp_path / "t"))
    out = tmp_path / "t"
    # right tile: box 1 clipped to x 0..70 of the tile, y 200..240 -> centre (35, 220), size (70, 40) / 500
    assert tile_lines(out, "train", "im_500_0") == ["1 0.070000 0.440000 0.140000 0.080000"]
    # left tile: box 2 as given (120, 315, 40, 30) / 500, box 3 clipped to x 380..500 -> centre 440, width 120
    assert tile_lines(out, "train", "im_0_0") == ["0 0.240000 0.630000 0.080000 0.060000",
                                                  "1 0.880000 0.030000 0.240000 0.020000"]
    train = s["splits"]["train"]
    assert (train["objects"], train["boxes"], train["lost"], train["in_several"]) == (4, 3, 1, 0)
    assert train["dropped"] == 4  # box 0 twice, box 1 on the left, box 3 (40 %) on the right
    # sides sqrt(w h) in tile px: 70 x 40 -> 52.9, 40 x 30 -> 34.6, 120 x 10 -> 34.6
    assert train["sizes_tile_px"]["ai_tod"] == {"<8": 0, "8-16": 0, "16-32": 0, "32-64": 3, ">=64": 0}
    assert train["sizes_tile_px"]["coco"] == {"small": 0, "medium": 3, "large": 0}


def test_a_box_in_the_overlap_is_kept_in_both_tiles(tmp_path):
    # 900 x 500, tile 500, overlap 0.2 (gap 100): windows x [0, 500) and [400, 900)
    data = make_dataset(tmp_path / "d", {"train": [("im", (900, 500), box_row(0, 420, 50, 480, 90, 900, 500))],
                                         "val": [("v", (900, 500), "")]})
    s = run(data=str(data), tile=500, overlap=0.2, background=0, out=str(tmp_path / "t"))
    source = cv2.imread(str(tmp_path / "d" / "images" / "train" / "im.png"))
    right = cv2.imread(str(tmp_path / "t" / "images" / "train" / "im_400_0.png"))
    assert np.array_equal(right, source[0:500, 400:900])  # PNG sources give PNG tiles, pixel for pixel
    assert tile_lines(tmp_path / "t", "train", "im_0_0") == ["0 0.900000 0.140000 0.120000 0.080000"]
    assert tile_lines(tmp_path / "t", "train", "im_400_0") == ["0 0.100000 0.140000 0.120000 0.080000"]
    assert s["splits"]["train"]["in_several"] == 1 and s["splits"]["train"]["boxes"] == 2


def test_polygons_are_clipped_exactly_and_kept_by_area(tmp_path):
    # 1000 x 500, tile 500, overlap 0. Triangle (400,100) (600,100) (400,300): area 20000, 15000 left of x=500
    triangle = [(400, 100), (600, 100), (400, 300)]
    # a U open to the right: body [420, 460] x [200, 320] (4800 px²), arms [460, 540] x [200, 240] and [280, 320]
    # (2 x 3200); x = 500 cuts off both arms' ends, [500, 540] x 40 each: right share 3200 / 11200, in two parts
    u_shape = [(420, 200), (540, 200), (540, 240), (460, 240), (460, 280), (540, 280), (540, 320), (420, 320)]
    rows = [poly_row(0, triangle, 1000, 500), poly_row(1, u_shape, 1000, 500)]
    data = make_dataset(tmp_path / "d", {"train": [("im", (1000, 500), "\n".join(rows))],
                                         "val": [("v", (1000, 500), "")]})
    s = run(data=str(data), tile=500, overlap=0, min_visible=0.25, background=0, out=str(tmp_path / "t"))
    left = [parse(x) for x in tile_lines(tmp_path / "t", "train", "im_0_0")]
    right = [parse(x) for x in tile_lines(tmp_path / "t", "train", "im_500_0")]
    assert [c for c, _ in left] == [0, 1] and [c for c, _ in right] == [0, 1]  # 0.75 | 0.25, 8000/11200 | 3200/11200
    tri_left = left[0][1].reshape(-1, 2) * 500
    assert {tuple(p) for p in np.round(tri_left, 3)} == {(400, 100), (500, 100), (500, 200), (400, 300)}
    assert shapely.Polygon(tri_left).area == pytest.approx(15000, abs=0.01)
    tri_right = right[0][1].reshape(-1, 2) * 500  # tile px of the right tile: x - 500
    assert {tuple(p) for p in np.round(tri_right, 3)} == {(0, 100), (100, 100), (0, 200)}
    u_right = shapely.Polygon(right[1][1].reshape(-1, 2) * 500)  # two arms joined by a zero-width bridge: one row
    assert u_right.area == pytest.approx(3200, abs=0.01)
    assert u_right.bounds == pytest.approx((0, 200, 40, 320), abs=1e-3)
    assert s["splits"]["train"]["in_several"] == 2 and s["splits"]["train"]["lost"] == 0


@pytest.mark.parametrize("min_visible, kept_left", [(0.5, True), (0.6, False)])
def test_rotated_boxes_keep_their_angle_when_clipped(tmp_path, min_visible, kept_left):
    # 960 x 480, tile 480, overlap 0: the border at x = 480. A rectangle at 45 deg: c0 (450, 200), u = c1 - c0 =
    # (100, 100), v = c3 - c0 = (-50, 50). Point c0 + a u + b v has x = 450 + 100 a - 50 b <= 480 <=> a <= 0.3 + 0.5 b:
    # visible left share = integral_0^1 (0.3 + 0.5 b) db = 0.55, with a in [0, 0.8]; right share 0.45.
    corners = [(450, 200), (550, 300), (500, 350), (400, 250)]
    data = make_dataset(tmp_path / "d", {"train": [("im", (960, 480), poly_row(0, corners, 960, 480))],
                                         "val": [("v", (960, 480), "")]})
    s = run(data=str(data), tile=480, overlap=0, min_visible=min_visible, background=0, out=str(tmp_path / "t"))
    assert s["settings"]["task"] == "obb"  # every row a 4-point rectangle
    left = tmp_path / "t" / "labels" / "train" / "im_0_0.txt"
    if not kept_left:
        assert not left.exists() and s["splits"]["train"]["lost"] == 1 and s["splits"]["train"]["dropped"] == 2
        return
    # the own-frame box a in [0, 0.8], b in [0, 1]: (450, 200) (530, 280) (480, 330) (400, 250), / 480
    assert left.read_text() == "0 0.937500 0.416667 1.104167 0.583333 1.000000 0.687500 0.833333 0.520833\n"
    assert s["splits"]["train"]["dropped"] == 1  # 0.45 on the right


def test_task_segment_clips_four_point_rows_as_polygons(tmp_path):
    corners = [(450, 200), (550, 300), (500, 350), (400, 250)]  # as above: the visible part is a pentagon
    data = make_dataset(tmp_path / "d", {"train": [("im", (960, 480), poly_row(0, corners, 960, 480))],
                                         "val": [("v", (960, 480), "")]})
    s = run(data=str(data), tile=480, overlap=0, min_visible=0.5, background=0, out=str(tmp_path / "t"), task="segment")
    _, values = parse(tile_lines(tmp_path / "t", "train", "im_0_0")[0])
    polygon = values.reshape(-1, 2) * 480
    assert s["settings"]["task"] == "segment"
    # edges c0-c1 and c2-c3 cross x = 480 at (480, 230) and (480, 330): the visible quadrilateral, 0.55 x 10000 px²
    assert {tuple(p) for p in np.round(polygon, 2)} == {(450, 200), (480, 230), (480, 330), (400, 250)}
    assert shapely.Polygon(polygon).area == pytest.approx(5500, rel=1e-5)


# ------------------------------------------------------------------------------------ summary, output, reruns


@pytest.fixture(scope="module")
def large_yaml(tmp_path_factory):
    """demo-large at a smaller image size (two train images, one val), generated once for this module."""
    from size_adaptive.demo_large import demo_large_data

    return demo_large_data(2, 1, root=tmp_path_factory.mktemp("large"), sides=(900, 1100))


@pytest.fixture(scope="module")
def large_tiles(large_yaml, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles") / "t"
    return out, run(data=str(large_yaml), tile=320, overlap=0.25, min_visible=0.6, background=0.5, out=str(out))


def test_summary_windows_map_every_tile_label_back_to_its_source_box(large_tiles):
    out, summary = large_tiles
    assert {"images/train", "images/val"} == {str(Path(t["tile"]).parent) for t in summary["tiles"]}
    matched = 0
    for t in summary["tiles"]:
        x0, y0, x1, y1 = t["window"]
        source = Path(t["source"])
        whole = cv2.imread(str(source))
        height, width = whole.shape[:2]
        rows = np.loadtxt(str(source).replace("/images/", "/labels/").replace(".jpg", ".txt"), ndmin=2)
        xy, wh = rows[:, 1:3] * (width, height), rows[:, 3:5] * (width, height)
        src = np.concatenate((xy - wh / 2, xy + wh / 2), 1)  # (n, 4) xyxy source px
        expected = np.concatenate((np.maximum(src[:, :2], (x0, y0)), np.minimum(src[:, 2:], (x1, y1))), 1)
        tile_image = cv2.imread(str(out / t["tile"]))
        assert tile_image.shape[:2] == (y1 - y0, x1 - x0)
        def diff(dx, dy):  # mean |tile - source crop shifted by (dx, dy) px|, over the tile's inner part
            crop = whole[y0 + 1 + dy:y1 - 1 + dy, x0 + 1 + dx:x1 - 1 + dx].astype(int)
            return np.abs(tile_image[1:-1, 1:-1].astype(int) - crop).mean()

        here, shifted = diff(0, 0), min(diff(dx, dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)) if
                                         x0 + dx >= 0 and y0 + dy >= 0 and x1 + dx <= width and y1 + dy <= height)
        assert here < 0.5 * shifted  # the window's pixels (up to one more JPEG generation), not its neighbours'
        label = Path(str(out / t["tile"]).replace("/images/", "/labels/")).with_suffix(".txt")
        for line in label.read_text().splitlines():
            _, (cx, cy, w, h) = parse(line)
            back = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * np.tile((x1 - x0, y1 - y0), 2)
            back += (x0, y0, x0, y0)  # tile px -> source px
            assert np.abs(expected - back).max(1).min() < 2e-3  # px: a source box, clipped to the window
            matched += 1
    assert matched == summary["splits"]["train"]["boxes"] + summary["splits"]["val"]["boxes"] > 100


def test_summary_counts_and_writes_the_data_yaml_with_the_whole_val_set(large_tiles, large_yaml):
    out, summary = large_tiles
    spec = yaml.safe_load((out / "data.yaml").read_text())
    assert spec["val_whole"] == str(large_yaml.parent / "images" / "val")
    assert (spec["train"], spec["val"], spec["path"]) == ("images/train", "images/val", str(out))
    assert spec["names"] == yaml.safe_load(large_yaml.read_text())["names"]
    on_disk = json.loads((out / "tile_summary.json").read_text())
    assert on_disk["splits"] == summary["splits"] and on_disk["tiles"] == summary["tiles"]
    for split, st in summary["splits"].items():
        labels = sorted((out / "labels" / split).glob("*.txt"))
        assert st["tiles"] == len(labels) == len(list((out / "images" / split).iterdir()))
        assert st["boxes"] == sum(len(f.read_text().splitlines()) for f in labels)
        assert st["background_tiles"] == sum(not f.read_text() for f in labels)
        assert sum(st["sizes_tile_px"]["ai_tod"].values()) == sum(st["sizes_tile_px"]["coco"].values()) == st["boxes"]
        assert st["in_several"] > 0 and st["tiles"] <= st["windows"]


def test_the_tiles_load_through_ultralytics_without_corrupt_labels(large_tiles):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out, summary = large_tiles
    data = check_det_dataset(str(out / "data.yaml"))
    dataset = YOLODataset(img_path=data["train"], data=data, task="detect", imgsz=320, augment=False)
    assert len(dataset.labels) == summary["splits"]["train"]["tiles"]
    assert sum(len(lb["cls"]) for lb in dataset.labels) == summary["splits"]["train"]["boxes"]


def test_obb_tiles_load_through_ultralytics_without_corrupt_labels(tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from size_adaptive.demo_large import demo_large_data

    source = demo_large_data(1, 1, root=tmp_path / "src", task="obb", sides=(500, 600))
    s = run(data=str(source), tile=256, overlap=0.2, background=0, out=str(tmp_path / "t"))
    assert s["settings"]["task"] == "obb" and s["splits"]["train"]["dropped"] > 0
    data = check_det_dataset(str(tmp_path / "t" / "data.yaml"))
    dataset = YOLODataset(img_path=data["train"], data=data, task="obb", imgsz=256, augment=False)
    assert sum(len(lb["cls"]) for lb in dataset.labels) == s["splits"]["train"]["boxes"]  # none dropped as corrupt


def test_two_runs_write_byte_identical_labels_and_the_same_tiles(large_yaml, large_tiles, tmp_path):
    out, summary = large_tiles
    again = run(data=str(large_yaml), tile=320, overlap=0.25, min_visible=0.6, background=0.5, out=str(tmp_path / "b"))
    files = sorted(p.relative_to(out) for p in (out / "labels").rglob("*.txt"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b" / "labels").rglob("*.txt"))
    assert all((out / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert again["tiles"] == summary["tiles"] and again["splits"] == summary["splits"]


def test_background_keeps_the_requested_share_of_empty_tiles(tmp_path):
    # 2000 x 500, tile 500, overlap 0: 4 windows per image, one box in the first: 3 empty windows per image
    images = [(f"im{i}", (2000, 500), box_row(0, 10, 10, 50, 50, 2000, 500)) for i in range(10)]
    data = make_dataset(tmp_path / "d", {"train": images, "val": images[:1]})
    kept, chosen = {}, {}
    for share in (0, 0.5, 1, "0.50"):
        s = run(data=str(data), background=share, tile=500, overlap=0, out=str(tmp_path / f"t{share}"))
        kept[share] = s["splits"]["train"]["background_tiles"]
        chosen[share] = [t["tile"] for t in s["tiles"]]
        assert s["splits"]["train"]["tiles"] == 10 + kept[share]
    assert kept == {0: 0, 0.5: 15, 1: 30, "0.50": 15}
    assert chosen[0.5] == chosen["0.50"]  # the same empty tiles: a fixed seed
    assert len({t.split("_")[0] for t in chosen[0.5] if not t.endswith("_0_0.png")}) > 3  # drawn across the images


def test_a_matching_previous_tiling_is_reused_and_a_foreign_folder_refused(large_yaml, large_tiles):
    out, summary = large_tiles
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = run(data=str(large_yaml), tile="320", overlap="0.25", min_visible="0.6", background="0.5", out=str(out))
    assert again["reused"] and again["tiles"] == summary["tiles"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written
    with pytest.raises(ValueError, match=r"^out: .*tile=320 \(now 256\)"):
        run(data=str(large_yaml), tile=256, overlap=0.25, min_visible=0.6, background=0.5, out=str(out))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_folder_with_other_files_is_refused_and_an_empty_one_used(large_yaml, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"^out: expected a new or empty folder.*notes\.txt"):
        run(data=str(large_yaml), tile=320, out=str(tmp_path / "busy"))
    assert snapshot(tmp_path / "busy") == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert not run(data=str(large_yaml), tile=512, out=str(tmp_path / "empty"))["reused"]
    assert (tmp_path / "empty" / "data.yaml").is_file()


def test_the_default_out_is_named_after_the_data_in_the_working_directory(large_yaml, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = run(data=str(large_yaml), tile=512)
    assert s["out"] == str(tmp_path / "data_tiles512") and (tmp_path / "data_tiles512" / "data.yaml").is_file()


# ----------------------------------------------------------------------------------------------- refusals


@pytest.fixture
def small_yaml(tmp_path):
    return make_dataset(tmp_path / "d", {"train": [("im", (200, 100), box_row(0, 10, 10, 50, 50, 200, 100))],
                                         "val": [("v", (200, 100), "")]})


@pytest.mark.parametrize("keys, message", [
    ({"tile": 0}, "tile: expected a whole number of px > 0; got tile=0"),
    ({"tile": "-64"}, "tile: expected a whole number of px > 0; got tile='-64'"),
    ({"tile": "abc"}, "tile: expected a whole number of px > 0; got tile='abc'"),
    ({"tile": 2.5}, "tile: expected a whole number of px > 0; got tile=2.5"),
    ({"overlap": "1"}, "overlap: expected a fraction of the tile in [0, 1); got overlap='1'"),
    ({"overlap": -0.1}, "overlap: expected a fraction of the tile in [0, 1); got overlap=-0.1"),
    ({"overlap": "x"}, "overlap: expected a fraction of the tile in [0, 1); got overlap='x'"),
    ({"min_visible": 0}, "min_visible: expected the share of an object's area inside a tile in (0, 1]; got "
                         "min_visible=0"),
    ({"min_visible": "1.5"}, "min_visible: expected the share of an object's area inside a tile in (0, 1]; got"),
    ({"background": 2}, "background: expected the share of empty tiles kept in [0, 1]; got background=2"),
    ({"overlapp": 0.3}, "overlapp: expected one of the keys of 'yolo-sa tile' (data, tile, overlap, min_visible, "
                        "background, out, task); got overlapp=0.3 (did you mean 'overlap'?)"),
    ({"task": "pose"}, "task: expected detect, segment or obb; got task='pose' (keypoints cannot be tiled)"),
    ({"data": None}, "data: expected a dataset yaml or a demo keyword"),
    ({"data": "nowhere.yaml"}, "data: expected a local dataset yaml or a demo keyword"),
    ({"data": "https://example.com/d.yaml"}, "data: expected a local dataset yaml"),
])
def test_bad_keys_are_refused_by_name_before_anything_is_written(small_yaml, tmp_path, keys, message):
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as e:
        run(**{"data": str(small_yaml), "out": str(tmp_path / "t"), **keys})
    assert str(e.value).startswith(message)
    assert snapshot(tmp_path) == before


def test_bad_data_is_refused_by_name_before_anything_is_written(tmp_path):
    no_val = make_dataset(tmp_path / "a", {"train": [("im", (200, 100), "")]})
    text = yaml.safe_load(no_val.read_text())
    del text["val"]
    no_val.write_text(yaml.safe_dump(text))
    pose = make_dataset(tmp_path / "b", {"train": [("im", (200, 100), "")], "val": [("v", (200, 100), "")]},
                        extra={"kpt_shape": [4, 3]})
    missing = make_dataset(tmp_path / "c", {"train": [("im", (200, 100), "")], "val": [("v", (200, 100), "")]},
                           extra={"val": "images/elsewhere", "download": "https://example.com/c.zip"})
    corrupt = make_dataset(tmp_path / "e", {"train": [("im", (200, 100), "")], "val": [("v", (200, 100), "")]})
    (tmp_path / "e" / "images" / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    bad_row = make_dataset(tmp_path / "f", {"train": [("im", (200, 100), "0 0.5 0.5 0.1\n")],
                                            "val": [("v", (200, 100), "")]})
    cases = {no_val: "data: expected a dataset yaml with a 'val' set; got",
             pose: "data: expected a detect, segment or OBB dataset; got a pose dataset",
             missing: "data: expected a dataset yaml whose images exist (nothing is downloaded)",
             corrupt: f"data: expected readable images; got {tmp_path / 'e' / 'images' / 'train' / 'broken.png'}",
             bad_row: f"data: expected label rows of 5 values (a box) or 1 + 2n, n >= 3 (a polygon); got 4 values in "
                      f"{tmp_path / 'f' / 'labels' / 'train' / 'im.txt'}:1"}
    before = snapshot(tmp_path)
    for data, message in cases.items():
        with pytest.raises(ValueError) as e:
            run(data=str(data), out=str(tmp_path / "t"))
        assert str(e.value).startswith(message), str(e.value)
    assert snapshot(tmp_path) == before


def test_an_image_that_fails_to_decode_leaves_nothing_behind(small_yaml, tmp_path, monkeypatch):
    import ultralytics.utils.patches

    monkeypatch.setattr(ultralytics.utils.patches, "imread", lambda *a, **k: None)  # decodes to nothing
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"^data: expected readable images; got .*im\.png, which does not decode"):
        run(data=str(small_yaml), out=str(tmp_path / "new" / "t"))
    assert snapshot(tmp_path) == before  # no out, no temporary folder, no parent made for it


def test_out_inside_the_source_images_is_refused(small_yaml, tmp_path):
    with pytest.raises(ValueError, match=r"^out: expected a folder outside the source images"):
        run(data=str(small_yaml), out=str(tmp_path / "d" / "images" / "train" / "tiles"))
    assert not (tmp_path / "d" / "images" / "train" / "tiles").exists()


def test_the_cli_prints_one_error_line_and_exits_2_before_writing(small_yaml, tmp_path):
    before = snapshot(tmp_path)
    r = subprocess.run([sys.executable, "-m", "size_adaptive", "tile", f"data={small_yaml}", "tile=abc",
                        f"out={tmp_path / 't'}"], capture_output=True, text=True, cwd=tmp_path, env=os.environ)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["yolo-sa: error: tile: expected a whole number of px > 0; got tile='abc'"]
    assert "Traceback" not in r.stdout + r.stderr and snapshot(tmp_path) == before
