"""The built-in demo data: a deterministic synthetic small-object data set in YOLO format, for every task with boxes.

Aerial-style 640x480 images: textured, cluttered backgrounds (gradients, noise, streaks and distractor blobs) with
four classes of objects (``square``, ``disc``, ``triangle``, ``cross``), about 70 % small (side 8-30 px, COCO
"small" in original px), 25 % medium (34-90 px) and 5 % large (100-200 px). Every object is a polygon (square 4
vertices, triangle 3, cross 12, disc an ellipse polygon of up to 32) drawn with ``cv2.fillPoly`` from exactly that
polygon, so the labels of every task are exact.

Keywords (case-insensitive, wherever ``data=`` is accepted; ``DEMO_TASKS`` maps them to Ultralytics' task names),
label rows with coordinates normalised by the image width and height:

=============  =======  ==================================================================================
``demo``       detect   ``cls x y w h``
``demo-seg``   segment  ``cls x1 y1 ... xn yn``: the polygon the shape was drawn from
``demo-obb``   obb      ``cls x1 y1 ... x4 y4``: shapes rotated by a random angle, lying fully inside the
                        image; the corners of the shape's own-frame w x h box, rotated with it, clockwise
``demo-pose``  pose     ``cls x y w h`` then 4 keypoints ``x y 2``: the top, right, bottom and left extreme
                        points of the polygon; ``data.yaml`` adds ``kpt_shape: [4, 3]``,
                        ``flip_idx: [0, 3, 2, 1]`` (a horizontal flip swaps right and left) and ``kpt_names``
=============  =======  ==================================================================================

Units: ``px index`` counts whole pixels (pixel ``(i, j)`` is column ``i``, row ``j``); continuous ``px`` puts that
pixel over ``[i, i + 1) x [j, j + 1)``, so its centre is at ``(i + 0.5, j + 0.5)``. Polygons have integer vertices
in px index, and ``cv2.fillPoly`` fills the pixels on their edges too. Boxes (detect, pose) are the extent of the
drawn pixels: a shape over columns ``x0..x1`` gets ``[x0, x1 + 1)``. Polygon vertices (segment) and keypoints
(pose) are pixel centres, so a segment's box is half a pixel inside the detect box on each side. An OBB's own-frame box
is the unrotated shape's pixel extent, rotated about its centre; the rotated polygon is rounded to the pixel grid
(< 0.71 px), so the drawn pixels' centres lie inside the OBB to within a pixel.

``data=demo`` (or another keyword) generates the data set on first use into a cache folder
(``$YOLO_SA_CACHE_DIR``, else ``$XDG_CACHE_HOME/yolo-size-adaptive``, else ``~/.cache/yolo-size-adaptive``), one
sub-folder per keyword, size and seed (``demo-v2-64-32-seed0``, ``demo-seg-v2-64-32-seed0``, ...), and reuses it
afterwards. ``$YOLO_SA_DEMO_SIZE`` (``"TRAIN,VAL"`` image counts, default ``"64,32"``) sets its size for every task.

Large whole images (``size_adaptive.demo_large``): ``demo-large`` (detect), ``demo-large-seg`` and ``demo-large-obb``,
about 1,600-2,048 px with objects of 4-40 px, for ``yolo-sa tile`` and sliced validation; ``LARGE_TASKS`` maps them
to their tasks, ``$YOLO_SA_DEMO_LARGE_SIZE`` sets their image counts.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

NAMES = ("square", "disc", "triangle", "cross")
WIDTH, HEIGHT = 640, 480
SIZE_MIX = ((0.70, 8, 30), (0.25, 34, 90), (0.05, 100, 200))  # (share, min side, max side) in original px
VERSION = 2  # bump when the generator's output changes, so caches are not reused across versions
DEFAULT_SIZE = (64, 32)
DEMO_TASKS = {"demo": "detect", "demo-seg": "segment", "demo-obb": "obb", "demo-pose": "pose"}  # keyword -> task
DEMO_KEYWORDS = {t: k for k, t in DEMO_TASKS.items()}  # task -> keyword
LARGE_TASKS = {"demo-large": "detect", "demo-large-seg": "segment", "demo-large-obb": "obb"}  # size_adaptive.demo_large
KEYPOINTS = ("top", "right", "bottom", "left")  # pose keypoints: the polygon's extreme points in these directions
FLIP_IDX = (0, 3, 2, 1)  # keypoint order after a horizontal flip: right and left swap
_SCALE = np.array([WIDTH, HEIGHT])  # continuous px -> norm


def cache_root() -> Path:
    """The folder that holds generated demo data sets."""
    if env := os.environ.get("YOLO_SA_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yolo-size-adaptive"


def demo_size() -> tuple[int, int]:
    """(train, val) image counts from ``$YOLO_SA_DEMO_SIZE``, else the default."""
    value = os.environ.get("YOLO_SA_DEMO_SIZE")
    if not value:
        return DEFAULT_SIZE
    try:
        n_train, n_val = (int(x) for x in value.split(","))
    except ValueError:
        raise ValueError(f"YOLO_SA_DEMO_SIZE: expected 'TRAIN,VAL' image counts, e.g. 16,8; got {value!r}") from None
    if n_train < 1 or n_val < 1:
        raise ValueError(f"YOLO_SA_DEMO_SIZE: expected image counts >= 1, e.g. 16,8; got {value!r}")
    return n_train, n_val




def resolve_data(data):
    """Return the demo data set's yaml path for a ``DEMO_TASKS`` or ``LARGE_TASKS`` keyword (``"demo"``,
    ``"demo-large"``, ...), else ``data`` unchanged."""
    key = data.strip().lower() if isinstance(data, str) else None
    if key in DEMO_TASKS:
        return str(demo_data(*demo_size(), task=DEMO_TASKS[key]))
    if key in LARGE_TASKS:
        from .demo_large import demo_large_data, demo_large_size

        return str(demo_large_data(*demo_large_size(), task=LARGE_TASKS[key]))
    return data


def demo_keywords() -> tuple[str, ...]:
    """Every demo keyword that ``data=`` accepts: the 640x480 ones, then the large whole-image ones."""
    return (*DEMO_TASKS, *LARGE_TASKS)


def demo_task(data) -> str | None:
    """The task of a demo keyword's labels (``"demo-large-obb"``: ``"obb"``), ``None`` for anything else."""
    key = data.strip().lower() if isinstance(data, str) else None
    return DEMO_TASKS.get(key) or LARGE_TASKS.get(key)


def demo_data(
    n_train: int = DEFAULT_SIZE[0], n_val: int = DEFAULT_SIZE[1], seed: int = 0, root=None, task: str = "detect"
) -> Path:
    """Generate the demo data set once (atomically) and return its ``data.yaml``.

    Args:
        n_train, n_val: number of training and validation images.
        seed: generator seed; the same arguments always give the same images and labels.
        root: parent folder; ``cache_root()`` when omitted.
        task: the labels to write: ``"detect"``, ``"segment"``, ``"obb"`` (rotated shapes) or ``"pose"``.
    """
    keyword = _keyword(task)
    root = Path(root) if root else cache_root()

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, str]:
        image, objects = make_image(rng, rotate=task == "obb")
        return image, "".join(label_row(o, task) + "\n" for o in objects)

    folder = root / f"{keyword}-v{VERSION}-{n_train}-{n_val}-seed{seed}"
    return write_generated(folder, keyword, n_train, n_val, seed, draw, data_yaml(folder, task))


def write_generated(folder: Path, keyword: str, n_train: int, n_val: int, seed: int,
                    draw: Callable[[np.random.Generator], tuple[np.ndarray, str]], yaml_text: str) -> Path:
    """Write a generated data set into ``folder`` once, atomically (a temporary folder renamed at the end), and return
    its ``data.yaml``; an existing one is reused. Image ``i`` of a split comes from ``draw`` with the generator
    ``[seed, offset + i]`` (offset 0 for train, 1,000,000 for val) and returns the BGR image and its label text."""
    yaml_file = folder / "data.yaml"
    if yaml_file.exists():
        return yaml_file
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    print(f"size_adaptive: generating {keyword} data ({n_train} train, {n_val} val images) in {folder} ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    try:
        for split, n, offset in (("train", n_train, 0), ("val", n_val, 1_000_000)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(n):
                image, rows = draw(np.random.default_rng([seed, offset + i]))
                cv2.imwrite(str(tmp / "images" / split / f"{i:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                (tmp / "labels" / split / f"{i:06d}.txt").write_text(rows)
        (tmp / "data.yaml").write_text(yaml_text)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not yaml_file.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return yaml_file


def _keyword(task: str) -> str:
    if task not in DEMO_KEYWORDS:
        raise ValueError(f"task: expected one of {', '.join(map(repr, DEMO_KEYWORDS))}; got {task!r}")
    return DEMO_KEYWORDS[task]


def data_yaml(folder: Path, task: str) -> str:
    """The ``data.yaml`` text of a demo data set in ``folder``; pose adds the keypoint keys."""
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
    text = f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}"
    if task == "pose":
        kpt_names = "".join(f"  {i}: [{', '.join(KEYPOINTS)}]\n" for i in range(len(NAMES)))
        text += f"kpt_shape: [{len(KEYPOINTS)}, 3]\nflip_idx: {list(FLIP_IDX)}\nkpt_names:\n{kpt_names}"
    return text


class DemoObject(NamedTuple):
    """One drawn shape (units in the module docstring)."""

    cls: int
    polygon: np.ndarray  # (n, 2) int32 px index (x, y): the vertices cv2.fillPoly drew
    corners: np.ndarray  # (4, 2) float64 px: its own-frame w x h box, rotated with it, clockwise from top-left


def make_image(rng: np.random.Generator, rotate: bool = False) -> tuple[np.ndarray, list[DemoObject]]:
    """Draw one cluttered image and its objects, rotated by random angles if ``rotate``; return (BGR uint8, objects)."""
    image = _background(rng)
    objects = []
    for _ in range(int(rng.integers(6, 21))):
        share = rng.random()
        _, lo, hi = next(m for m, c in zip(SIZE_MIX, np.cumsum([m[0] for m in SIZE_MIX])) if share < c)
        side = int(rng.integers(lo, hi + 1))
        w, h = side, max(4, int(side * rng.uniform(0.6, 1.0)))
        if rng.random() < 0.5:
            w, h = h, w
        angle = rng.uniform(0, math.pi) if rotate else 0.0  # radians, clockwise on screen
        cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
        ex, ey = (w * cos + h * sin) / 2, (w * sin + h * cos) / 2  # half extent of the rotated box, px
        x0 = int(rng.integers(0, WIDTH - math.ceil(2 * ex)))
        y0 = int(rng.integers(0, HEIGHT - math.ceil(2 * ey)))
        cls = int(rng.integers(len(NAMES)))
        obj = place(cls, w, h, angle, (x0 + ex, y0 + ey))
        cv2.fillPoly(image, [obj.polygon], tuple(int(c) for c in rng.integers(40, 256, 3)))
        objects.append(obj)
    return image, objects


def shape_polygon(cls: int, w: int, h: int) -> np.ndarray:
    """The unrotated shape of class ``cls`` over columns 0..w-1 and rows 0..h-1: (n, 2) float64 px index."""
    x1, y1 = w - 1, h - 1
    if cls == 0:  # square (a rectangle)
        return np.array([(0, 0), (x1, 0), (x1, y1), (0, y1)], float)
    if cls == 1:  # disc: an ellipse polygon; n % 4 == 0 keeps its 4 extreme points as vertices
        t = np.linspace(0, 2 * math.pi, 4 * min(8, max(2, max(w, h) // 8)), endpoint=False)
        return np.stack((x1 / 2 * (1 + np.cos(t)), y1 / 2 * (1 + np.sin(t))), 1)
    if cls == 2:  # triangle
        return np.array([(x1 // 2, 0), (x1, y1), (0, y1)], float)
    t = max(2, min(w, h) // 3)  # cross: two bars over columns a..b and rows c..d
    a, b, c, d = (x1 - t) // 2, (x1 + t) // 2, (y1 - t) // 2, (y1 + t) // 2
    xy = [(a, 0), (b, 0), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (0, d), (0, c), (a, c)]
    return np.array(xy, float)


def place(cls: int, w: int, h: int, angle: float, center: tuple[float, float]) -> DemoObject:
    """The shape of class ``cls`` and own-frame size w x h px, rotated by ``angle`` (radians) about ``center`` (px)."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    half = np.array([w, h]) / 2
    local = shape_polygon(cls, w, h) + 0.5 - half  # (n, 2) px relative to the own-frame box centre
    polygon = np.rint(local @ rotation.T + center - 0.5).astype(np.int32)  # back to px index, on the pixel grid
    polygon = polygon[np.any(polygon != np.roll(polygon, 1, 0), 1)]  # drop repeated vertices
    corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * half @ rotation.T + center  # (4, 2) px
    return DemoObject(cls, polygon, corners)


def box(polygon: np.ndarray) -> np.ndarray:
    """The extent of the pixels cv2.fillPoly draws from ``polygon`` (n, 2) px index: (4,) ``x y w h`` px."""
    lo, hi = polygon.min(0), polygon.max(0) + 1
    return np.concatenate(((lo + hi) / 2, hi - lo))


def keypoints(polygon: np.ndarray) -> np.ndarray:
    """The top, right, bottom, left extreme points of ``polygon`` (n, 2) px index: (4, 2) px, pixel centres.

    Where several vertices share an extreme, the point is their mid-point (the middle of a square's top edge).
    """
    x, y = polygon[:, 0], polygon[:, 1]
    top, bottom = (x[y == y.min()].mean(), y.min()), (x[y == y.max()].mean(), y.max())
    left, right = (x.min(), y[x == x.min()].mean()), (x.max(), y[x == x.max()].mean())
    return np.array([top, right, bottom, left], float) + 0.5


def label_row(obj: DemoObject, task: str, scale=_SCALE) -> str:
    """The YOLO label line of ``obj`` for ``task`` (format in the module docstring), coordinates in norm: px divided
    by ``scale`` (the image's width and height, px)."""
    scale = np.asarray(scale)
    if task == "segment":
        values = (obj.polygon + 0.5) / scale
    elif task == "obb":
        values = obj.corners / scale
    else:
        values = box(obj.polygon) / np.tile(scale, 2)
    row = f"{obj.cls} " + " ".join(f"{v:.6f}" for v in np.ravel(values))
    if task == "pose":  # each keypoint visible (v = 2)
        row += "".join(f" {x:.6f} {y:.6f} 2" for x, y in keypoints(obj.polygon) / scale)
    return row


def _background(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT, clutter=(10, 30)) -> np.ndarray:
    """A textured, cluttered ``height`` x ``width`` BGR uint8 background with ``clutter`` (low, high) blobs/streaks."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 160, 3).astype(np.float32)
    slope = rng.uniform(-0.08, 0.08, (2, 3)).astype(np.float32)
    image = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    image += rng.normal(0, 12, (height, width, 3)).astype(np.float32)  # texture
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(*clutter))):  # clutter: streaks and irregular blobs, not labelled
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            p, q = rng.integers(0, (width, height), (2, 2))
            cv2.line(image, tuple(int(v) for v in p), tuple(int(v) for v in q), color, int(rng.integers(1, 4)))
        else:
            center = tuple(int(v) for v in rng.integers(0, (width, height)))
            axes = tuple(int(v) for v in rng.integers(2, 14, 2))
            cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    return image
