"""The built-in demo data: deterministic, YOLO format for every task with boxes, mostly small objects, cached once."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from size_adaptive.demo import (
    DEMO_TASKS,
    FLIP_IDX,
    NAMES,
    box,
    demo_data,
    demo_size,
    keypoints,
    label_row,
    make_image,
    place,
    resolve_data,
)

TASKS = tuple(DEMO_TASKS.values())
SIZES = [(9, 7), (40, 30), (150, 120)]  # own-frame w, h px: small, medium, large


def _labels(folder, split):
    """All label rows of a split, each a float array (rows differ in length for segments)."""
    files = sorted((folder / "labels" / split).glob("*.txt"))
    return [np.array(line.split(), float) for f in files for line in f.read_text().splitlines()]


def _drawn(obj):
    """The pixels ``obj`` covers on a blank 640x480 canvas: (480, 640) bool."""
    canvas = np.zeros((480, 640), np.uint8)
    cv2.fillPoly(canvas, [obj.polygon], 255)
    return canvas > 0


def _points(row, task):
    """The points of one label row, in continuous px: (n, 2)."""
    values = np.array(row.split()[1:], float)
    values = values[4:].reshape(-1, 3)[:, :2] if task == "pose" else values.reshape(-1, 2)
    return values * (640, 480)


def _centered(cls, w, h, angle=0.0):
    return place(cls, w, h, angle, (320.0, 240.0))


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_gives_the_same_data_set_for_every_task(tmp_path, task):
    a, b = demo_data(3, 2, root=tmp_path / "a", task=task), demo_data(3, 2, root=tmp_path / "b", task=task)
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file() and p.name != "data.yaml")
    assert len(files) == 10  # 5 images, 5 label files
    assert all((a.parent / rel).read_bytes() == (b.parent / rel).read_bytes() for rel in files)
    other = demo_data(3, 2, seed=1, root=tmp_path / "a", task=task)
    for rel in ("labels/train/000000.txt", "images/train/000000.jpg"):
        assert (other.parent / rel).read_bytes() != (a.parent / rel).read_bytes()


def test_each_task_has_its_own_folder_and_the_axis_aligned_tasks_share_their_images(tmp_path):
    folders = {t: demo_data(2, 1, root=tmp_path, task=t).parent for t in TASKS}
    assert {t: f.name for t, f in folders.items()} == {
        "detect": "demo-v2-2-1-seed0",
        "segment": "demo-seg-v2-2-1-seed0",
        "obb": "demo-obb-v2-2-1-seed0",
        "pose": "demo-pose-v2-2-1-seed0",
    }
    image = "images/train/000001.jpg"
    read = {t: (f / image).read_bytes() for t, f in folders.items()}
    assert read["detect"] == read["segment"] == read["pose"] != read["obb"]  # only obb rotates its shapes


def test_yolo_format_with_several_classes_and_mostly_small_objects(tmp_path):
    data = demo_data(16, 4, root=tmp_path)
    spec = yaml.safe_load(data.read_text())
    assert spec["names"] == dict(enumerate(NAMES)) and spec["train"] == "images/train"
    assert "kpt_shape" not in spec
    labels = np.stack(_labels(data.parent, "train"))
    assert labels.shape[1] == 5 and np.all((labels[:, 1:] > 0) & (labels[:, 1:] <= 1))
    assert set(labels[:, 0].astype(int)) == set(range(len(NAMES)))


@pytest.mark.parametrize("task", TASKS)
def test_the_size_mix_is_kept_for_every_task(tmp_path, task):
    data = demo_data(16, 4, root=tmp_path, task=task)
    rows = _labels(data.parent, "train")
    assert {int(r[0]) for r in rows} == set(range(len(NAMES)))
    if task == "obb":  # rotated w * h from the corners (x1 y1 ... x4 y4)
        xy = np.stack([r[1:] for r in rows]).reshape(-1, 4, 2) * (640, 480)
        area = np.linalg.norm(xy[:, 1] - xy[:, 0], axis=1) * np.linalg.norm(xy[:, 2] - xy[:, 1], axis=1)
    elif task == "segment":  # the polygon's box
        xy = [r[1:].reshape(-1, 2) * (640, 480) for r in rows]
        area = np.array([np.prod(p.max(0) - p.min(0)) for p in xy])
    else:
        area = np.array([r[3] * 640 * r[4] * 480 for r in rows])  # original px²
    small, large = np.mean(area < 32**2), np.mean(area >= 96**2)
    assert 0.5 < small < 0.9 and 0 < large < 0.15  # mostly small, some medium and large (COCO areas)


@pytest.mark.parametrize("task", TASKS)
def test_labels_load_through_ultralytics_dataset_code_for_their_task(tmp_path, task):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file

    folder = demo_data(3, 1, root=tmp_path, task=task).parent
    data = check_det_dataset(str(folder / "data.yaml"))
    dataset = YOLODataset(img_path=data["train"], data=data, task=task, imgsz=160, augment=False)
    rows = [len(f.read_text().splitlines()) for f in sorted((folder / "labels/train").glob("*.txt"))]
    nf, nm, ne, nc, total = load_dataset_cache_file(folder / "labels/train.cache")["results"]
    assert (nf, nm, ne, nc, total) == (3, 0, 0, 0, 3)  # found, missing, empty, corrupt, total
    assert [len(lb["cls"]) for lb in dataset.labels] == rows  # every row kept
    sample = dataset[0]
    n = len(sample["cls"])
    assert n == rows[0]
    if task == "segment":
        assert all(len(s) >= 3 for lb in dataset.labels for s in lb["segments"])
        assert sample["masks"].shape[-2:] == (40, 40)  # imgsz 160 / mask_ratio 4
    elif task == "obb":
        assert all(s.shape == (4, 2) for lb in dataset.labels for s in lb["segments"])
        assert sample["bboxes"].shape == (n, 5)  # x y w h angle
    elif task == "pose":
        assert data["kpt_shape"] == [4, 3] and data["flip_idx"] == list(FLIP_IDX)
        assert all(lb["keypoints"].shape == (len(lb["cls"]), 4, 3) for lb in dataset.labels)
        assert sample["keypoints"].shape == (n, 4, 3) and bool((sample["keypoints"][..., 2] == 2).all())
    else:
        assert sample["bboxes"].shape == (n, 4) and not any(len(lb["segments"]) for lb in dataset.labels)


@pytest.mark.parametrize("cls", range(len(NAMES)))
@pytest.mark.parametrize("w, h", SIZES)
def test_each_label_box_is_the_extent_of_its_drawn_shape(cls, w, h):
    obj = place(cls, w, h, 0.0, (100 + w / 2, 50 + h / 2))  # own-frame box [100, 100 + w) x [50, 50 + h)
    ys, xs = np.nonzero(_drawn(obj))
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (100, 50, 100 + w - 1, 50 + h - 1)
    assert box(obj.polygon).tolist() == [100 + w / 2, 50 + h / 2, w, h]
    x, y, bw, bh = np.array(label_row(obj, "detect").split()[1:], float) * (640, 480, 640, 480)
    assert np.allclose((x, y, bw, bh), (100 + w / 2, 50 + h / 2, w, h), atol=1e-3)


@pytest.mark.parametrize("cls", range(len(NAMES)))
@pytest.mark.parametrize("w, h", SIZES)
@pytest.mark.parametrize("angle", [0.0, 0.6, 2.2])
def test_the_seg_polygon_covers_the_drawn_pixels(cls, w, h, angle):
    obj = _centered(cls, w, h, angle)
    polygon = _points(label_row(obj, "segment"), "segment") - 0.5  # pixel centres -> px index
    label_mask = np.zeros((480, 640), np.uint8)
    cv2.fillPoly(label_mask, [np.rint(polygon * 256).astype(np.int32)], 255, shift=8)  # sub-pixel vertices
    drawn, label_mask = _drawn(obj), label_mask > 0
    assert (drawn & label_mask).sum() / (drawn | label_mask).sum() > 0.95
    vertices = np.rint(polygon).astype(int)
    assert np.allclose(polygon, vertices, atol=1e-3) and drawn[vertices[:, 1], vertices[:, 0]].all()  # pixel centres


def test_the_seg_polygon_outlines_the_topmost_shape_of_a_generated_image():
    for seed in range(4):
        image, objects = make_image(np.random.default_rng(seed))
        mask = np.zeros((480, 640), np.uint8)
        polygon = _points(label_row(objects[-1], "segment"), "segment") - 0.5
        cv2.fillPoly(mask, [np.rint(polygon).astype(np.int32)], 255)
        inside = image[mask > 0]
        assert (inside == inside[0]).all()  # one flat colour: the shape, nothing of the noisy background
        ring = image[(cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0) & (mask == 0)]
        assert (ring == inside[0]).all(1).mean() < 0.5  # and it ends where the polygon ends


@pytest.mark.parametrize("cls", range(len(NAMES)))
@pytest.mark.parametrize("w, h", SIZES)
@pytest.mark.parametrize("angle", [0.0, 0.6, 2.2])
def test_obb_corners_enclose_the_rotated_shape_with_its_own_side_lengths(cls, w, h, angle):
    obj = _centered(cls, w, h, angle)
    corners = _points(label_row(obj, "obb"), "obb")  # (4, 2) px
    sides = np.linalg.norm(np.roll(corners, -1, 0) - corners, axis=1)
    assert np.allclose(sides, (w, h, w, h), atol=2e-3)
    ys, xs = np.nonzero(_drawn(obj))
    centres = np.stack((xs, ys), 1) + 0.5
    contour = corners.astype(np.float32).reshape(-1, 1, 2)
    dist = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in centres])
    assert dist.min() > -0.75  # every drawn pixel inside the box, to within a pixel (grid rounding)
    for p, q in zip(corners, np.roll(corners, -1, 0)):  # and the shape reaches each side: the box is tight
        normal = np.array([q[1] - p[1], p[0] - q[0]]) / np.linalg.norm(q - p)
        assert np.abs((centres - p) @ normal).min() < 1.5


def test_obb_shapes_are_rotated_and_lie_fully_inside_the_image(tmp_path):
    data = demo_data(8, 2, root=tmp_path, task="obb")
    corners = np.stack([r[1:] for r in _labels(data.parent, "train")]).reshape(-1, 4, 2)
    assert corners.min() >= 0 and corners.max() <= 1
    edge = corners[:, 1] - corners[:, 0]  # the own-frame top edge
    angle = np.degrees(np.arctan2(edge[:, 1] * 480, edge[:, 0] * 640)) % 180
    assert angle.std() > 30  # spread over the half circle, not axis-aligned


@pytest.mark.parametrize("cls", range(len(NAMES)))
@pytest.mark.parametrize("w, h", SIZES)
def test_pose_keypoints_are_drawn_extreme_points_of_their_shape(cls, w, h):
    obj = _centered(cls, w, h)
    row = label_row(obj, "pose")
    assert len(row.split()) == 5 + 4 * 3 and row.split()[7::3] == ["2"] * 4  # cls box, 4 x (x y v=2)
    kpts = _points(row, "pose")  # (4, 2) px: top, right, bottom, left
    drawn = _drawn(obj)
    assert all(drawn[int(y), int(x)] for x, y in kpts)  # on a drawn pixel
    ys, xs = np.nonzero(drawn)
    (_, top), (right, _), (_, bottom), (left, _) = kpts - 0.5  # px index
    assert (top, right, bottom, left) == pytest.approx((ys.min(), xs.max(), ys.max(), xs.min()), abs=1e-3)


@pytest.mark.parametrize("cls", range(len(NAMES)))
def test_flip_idx_maps_keypoints_to_those_of_the_mirrored_shape(cls):
    obj = place(cls, 41, 30, 0.0, (100.5, 60.0))
    mirrored = obj.polygon * (-1, 1) + (639, 0)  # px index: column i -> 639 - i
    flipped = keypoints(obj.polygon) * (-1, 1) + (640, 0)  # continuous px: x -> 640 - x
    assert np.allclose(keypoints(mirrored), flipped[list(FLIP_IDX)])


def test_pose_yaml_carries_the_keypoint_keys(tmp_path):
    spec = yaml.safe_load(demo_data(2, 1, root=tmp_path, task="pose").read_text())
    assert spec["kpt_shape"] == [4, 3] and spec["flip_idx"] == [0, 3, 2, 1]
    assert spec["kpt_names"] == {i: ["top", "right", "bottom", "left"] for i in range(len(NAMES))}


@pytest.mark.parametrize("rotate", [False, True])
def test_images_are_640x480_with_6_to_20_objects(rotate):
    image, objects = make_image(np.random.default_rng(7), rotate=rotate)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8 and 6 <= len(objects) <= 20
    assert all(o.polygon.dtype == np.int32 and o.polygon.min() >= 0 for o in objects)
    assert all((o.polygon.max(0) < (640, 480)).all() for o in objects)


def test_generated_once_then_reused(tmp_path):
    data = demo_data(2, 1, root=tmp_path)
    stamp = data.stat().st_mtime_ns
    assert demo_data(2, 1, root=tmp_path) == data and data.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_demo_size_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_SA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "3,2")
    assert demo_size() == (3, 2)
    assert resolve_data("demo") == str(tmp_path / "demo-v2-3-2-seed0" / "data.yaml")
    assert resolve_data("coco8.yaml") == "coco8.yaml"
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "many")
    with pytest.raises(ValueError, match="YOLO_SA_DEMO_SIZE"):
        demo_size()


@pytest.mark.parametrize("keyword", ["demo-seg", " Demo-OBB ", "DEMO-POSE"])
def test_resolve_data_maps_each_keyword_to_its_task(monkeypatch, tmp_path, keyword):
    monkeypatch.setenv("YOLO_SA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", "2,1")
    key = keyword.strip().lower()
    assert resolve_data(keyword) == str(tmp_path / f"{key}-v2-2-1-seed0" / "data.yaml")
    assert DEMO_TASKS[key] in {"segment", "obb", "pose"}
    assert resolve_data("demo-depth") == "demo-depth" and resolve_data(None) is None


def test_a_bad_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"task: expected one of 'detect', 'segment', 'obb', 'pose'; got 'seg'"):
        demo_data(2, 1, root=tmp_path, task="seg")
    assert not list(tmp_path.iterdir())  # refused before anything is written
