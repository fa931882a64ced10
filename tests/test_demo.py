"""The built-in demo data: deterministic, YOLO format, mostly small objects, cached once."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from size_adaptive.demo import NAMES, _draw, demo_data, demo_size, make_image, resolve_data


def _labels(folder, split):
    rows = [line.split() for f in sorted((folder / "labels" / split).glob("*.txt")) for line in f.read_text().splitlines()]
    return np.array(rows, dtype=float)


def test_same_seed_gives_the_same_data_set(tmp_path):
    a, b = demo_data(3, 2, root=tmp_path / "a"), demo_data(3, 2, root=tmp_path / "b")
    for rel in ("images/train/000002.jpg", "labels/train/000002.txt", "labels/val/000001.txt"):
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes()
    other = demo_data(3, 2, seed=1, root=tmp_path / "a")
    assert (other.parent / "labels/train/000000.txt").read_text() != (a.parent / "labels/train/000000.txt").read_text()


def test_yolo_format_with_several_classes_and_mostly_small_objects(tmp_path):
    data = demo_data(16, 4, root=tmp_path)
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == dict(enumerate(NAMES)) and spec["train"] == "images/train"
    labels = _labels(data.parent, "train")
    assert labels.shape[1] == 5 and np.all((labels[:, 1:] > 0) & (labels[:, 1:] <= 1))
    assert set(labels[:, 0].astype(int)) == set(range(len(NAMES)))
    area = labels[:, 3] * 640 * labels[:, 4] * 480  # original px²
    small, large = np.mean(area < 32**2), np.mean(area >= 96**2)
    assert 0.5 < small < 0.9 and 0 < large < 0.15  # mostly small, some medium and large (COCO areas)


@pytest.mark.parametrize("cls", range(len(NAMES)))
@pytest.mark.parametrize("w, h", [(9, 7), (40, 30), (150, 120)])
def test_each_label_box_is_the_extent_of_its_drawn_shape(cls, w, h):
    canvas = np.zeros((480, 640, 3), np.uint8)
    _draw(canvas, cls, 100, 50, w, h, (255, 255, 255))
    ys, xs = np.nonzero(canvas[..., 0])
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (100, 50, 100 + w - 1, 50 + h - 1)


def test_images_are_640x480_with_6_to_20_objects():
    image, labels = make_image(np.random.default_rng(7))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8 and 6 <= len(labels) <= 20


def test_generated_once_then_reused(tmp_path):
    data = demo_data(2, 1, root=tmp_path)
    stamp = data.stat().st_mtime_ns
    assert demo_data(2, 1, root=tmp_path) == data and data.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_demo_size_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_SA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "3,2")
    assert demo_size() == (3, 2)
    assert resolve_data("demo") == str(tmp_path / "demo-v1-3-2-seed0" / "data.yaml")
    assert resolve_data("coco8.yaml") == "coco8.yaml"
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "many")
    with pytest.raises(ValueError, match="YOLO_SA_DEMO_SIZE"):
        demo_size()
