"""data=demo-large: whole images of 1,600-2,048 px with objects of 4-40 px, a whole-image val set, cached once;
segment and OBB variants; deterministic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from size_adaptive.demo import DEMO_TASKS, LARGE_TASKS, NAMES, demo_keywords, demo_task, resolve_data
from size_adaptive.demo_large import demo_large_data, demo_large_size


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """data=demo-large through the keyword, one train and one val image, in a fresh cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_SA_CACHE_DIR", str(cache))
        mp.setenv("YOLO_SA_DEMO_LARGE_SIZE", "1,1")
        yield cache, resolve_data(" Demo-Large ")


def _rows(folder, split):
    out = []
    for f in sorted((folder / "labels" / split).glob("*.txt")):
        image = cv2.imread(str(folder / "images" / split / f"{f.stem}.jpg"))
        out.append((image.shape[1::-1], [np.array(line.split(), float) for line in f.read_text().splitlines()]))
    return out


def test_the_keyword_generates_once_into_the_cache(large, monkeypatch):
    cache, data = large
    assert data == str(cache / "demo-large-v1-1-1-seed0" / "data.yaml")
    spec = yaml.safe_load(open(data).read())
    assert (spec["train"], spec["val"], spec["names"]) == ("images/train", "images/val", dict(enumerate(NAMES)))
    stamp = (cache / "demo-large-v1-1-1-seed0" / "data.yaml").stat().st_mtime_ns
    monkeypatch.setenv("YOLO_SA_CACHE_DIR", str(cache))
    monkeypatch.setenv("YOLO_SA_DEMO_LARGE_SIZE", "1,1")
    assert resolve_data("demo-large") == data
    assert (cache / "demo-large-v1-1-1-seed0" / "data.yaml").stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_whole_images_of_1600_to_2048_px_with_objects_of_4_to_40_px(large):
    cache, data = large
    folder = cache / "demo-large-v1-1-1-seed0"
    for split in ("train", "val"):  # the val split holds whole images too
        ((width, height), rows), = _rows(folder, split)
        assert 1600 <= width <= 2048 and 1600 <= height <= 2048
        boxes = np.stack(rows)
        assert boxes.shape[1] == 5 and 50 <= len(boxes) <= 140 and set(boxes[:, 0].astype(int)) == {0, 1, 2, 3}
        wh = boxes[:, 3:5] * (width, height)  # px
        assert wh.min() >= 4 - 1e-3 and wh.max() <= 40 + 1e-3
        sides = np.sqrt(wh.prod(1))
        assert (sides < 8).mean() > 0.15 and (sides >= 16).mean() > 0.2  # spread over the AI-TOD bins
        xyxy = np.concatenate((boxes[:, 1:3] - boxes[:, 3:5] / 2, boxes[:, 1:3] + boxes[:, 3:5] / 2), 1)
        assert xyxy.min() >= -1e-6 and xyxy.max() <= 1 + 1e-6  # inside the image, to the labels' 6 decimals
        xyxy *= (width, height, width, height)
        lo, hi = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2]), np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
        overlap = np.clip(hi - lo, 0, None).prod(-1)
        np.fill_diagonal(overlap, 0)
        assert overlap.max() < 1e-6  # no object hides another


def test_most_objects_shrink_below_stride_8_at_imgsz_640(large):
    cache, _ = large
    ((width, height), rows), = _rows(cache / "demo-large-v1-1-1-seed0", "train")
    boxes = np.stack(rows)
    sides = np.sqrt((boxes[:, 3] * width) * (boxes[:, 4] * height)) * 640 / max(width, height)
    assert (sides < 8).mean() > 0.6


@pytest.mark.parametrize("task", ["segment", "obb"])
def test_segment_and_obb_variants(tmp_path, task):
    data = demo_large_data(1, 1, root=tmp_path, task=task, sides=(500, 600))
    assert data.parent.name == f"{ {'segment': 'demo-large-seg', 'obb': 'demo-large-obb'}[task]}-v1-1-1-500x600px-seed0"
    ((width, height), rows), = _rows(data.parent, "train")
    assert 500 <= width <= 600 and 500 <= height <= 600 and len(rows) > 20
    points = [r[1:].reshape(-1, 2) for r in rows]
    assert all(len(p) >= 3 for p in points) and min(p.min() for p in points) >= 0 and max(p.max() for p in points) <= 1
    if task == "obb":
        corners = np.stack(points) * (width, height)  # (n, 4, 2) px
        edge = corners[:, 1] - corners[:, 0]
        assert np.degrees(np.arctan2(edge[:, 1], edge[:, 0])).std() > 30  # rotated, not axis-aligned
        sides = [np.linalg.norm(corners[:, k] - corners[:, 0], axis=1) for k in (1, 3)]
        assert np.min(sides) >= 4 - 1e-3 and np.max(sides) <= 40 + 1e-3
    else:
        assert any(len(p) != 4 for p in points)  # triangles, discs, crosses: polygons, not boxes


def test_same_seed_same_bytes_and_another_seed_other_images(tmp_path):
    a, b = (demo_large_data(1, 1, root=tmp_path / r, sides=(300, 400)) for r in ("a", "b"))
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file() and p.name != "data.yaml")
    assert len(files) == 4 and all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    other = demo_large_data(1, 1, seed=1, root=tmp_path / "a", sides=(300, 400))
    assert (other.parent / files[0]).read_bytes() != (a.parent / files[0]).read_bytes()


def test_keywords_tasks_and_size_from_the_environment(monkeypatch):
    assert demo_keywords() == (*DEMO_TASKS, "demo-large", "demo-large-seg", "demo-large-obb")
    assert {k: demo_task(k) for k in LARGE_TASKS} == {"demo-large": "detect", "demo-large-seg": "segment",
                                                      "demo-large-obb": "obb"}
    assert demo_task("demo-seg") == "segment" and demo_task("demo-large-pose") is None and demo_task(None) is None
    monkeypatch.delenv("YOLO_SA_DEMO_LARGE_SIZE", raising=False)
    assert demo_large_size() == (16, 8)
    monkeypatch.setenv("YOLO_SA_DEMO_LARGE_SIZE", "3,0")
    with pytest.raises(ValueError, match=r"^YOLO_SA_DEMO_LARGE_SIZE: expected image counts >= 1"):
        demo_large_size()
    with pytest.raises(ValueError, match=r"^task: expected one of 'detect', 'segment', 'obb'; got 'pose'"):
        demo_large_data(1, 1, task="pose")
