"""The built-in demo data: a deterministic synthetic small-object detection data set in YOLO format.

Aerial-style 640x480 images: textured, cluttered backgrounds (gradients, noise, streaks and distractor blobs) with
four classes of objects (``square``, ``disc``, ``triangle``, ``cross``), about 70 % small (side 8-30 px, COCO
"small" in original px), 25 % medium (34-90 px) and 5 % large (100-200 px).

``data=demo`` selects it. It is generated on first use into a cache folder (``$YOLO_SA_CACHE_DIR``, else
``$XDG_CACHE_HOME/yolo-size-adaptive``, else ``~/.cache/yolo-size-adaptive``), one sub-folder per size and seed, and
reused afterwards. ``$YOLO_SA_DEMO_SIZE`` (``"TRAIN,VAL"`` image counts, default ``"64,32"``) sets its size.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

NAMES = ("square", "disc", "triangle", "cross")
WIDTH, HEIGHT = 640, 480
SIZE_MIX = ((0.70, 8, 30), (0.25, 34, 90), (0.05, 100, 200))  # (share, min side, max side) in original px
VERSION = 1  # bump when the generator's output changes, so caches are not reused across versions
DEFAULT_SIZE = (64, 32)


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
    """Return the demo data set's yaml path for ``"demo"``, else ``data`` unchanged."""
    if isinstance(data, str) and data.strip().lower() == "demo":
        return str(demo_data(*demo_size()))
    return data


def demo_data(n_train: int = DEFAULT_SIZE[0], n_val: int = DEFAULT_SIZE[1], seed: int = 0, root=None) -> Path:
    """Generate the demo data set once (atomically) and return its ``data.yaml``.

    Args:
        n_train, n_val: number of training and validation images.
        seed: generator seed; the same arguments always give the same images and labels.
        root: parent folder; ``cache_root()`` when omitted.
    """
    root = Path(root) if root else cache_root()
    folder = root / f"demo-v{VERSION}-{n_train}-{n_val}-seed{seed}"
    yaml_file = folder / "data.yaml"
    if yaml_file.exists():
        return yaml_file
    root.mkdir(parents=True, exist_ok=True)
    print(f"size_adaptive: generating demo data ({n_train} train, {n_val} val images) in {folder} ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    try:
        for split, n, offset in (("train", n_train, 0), ("val", n_val, 1_000_000)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(n):
                image, labels = make_image(np.random.default_rng([seed, offset + i]))
                cv2.imwrite(str(tmp / "images" / split / f"{i:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                rows = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
                (tmp / "labels" / split / f"{i:06d}.txt").write_text(rows)
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
        (tmp / "data.yaml").write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}")
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not yaml_file.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return yaml_file


def make_image(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """Draw one cluttered image and its objects; return (BGR uint8 image, YOLO labels ``cls x y w h`` normalised)."""
    image = _background(rng)
    labels = []
    for _ in range(int(rng.integers(6, 21))):
        share = rng.random()
        _, lo, hi = next(m for m, c in zip(SIZE_MIX, np.cumsum([m[0] for m in SIZE_MIX])) if share < c)
        side = int(rng.integers(lo, hi + 1))
        w, h = side, max(4, int(side * rng.uniform(0.6, 1.0)))
        if rng.random() < 0.5:
            w, h = h, w
        x0, y0 = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        cls = int(rng.integers(len(NAMES)))
        _draw(image, cls, x0, y0, w, h, tuple(int(c) for c in rng.integers(40, 256, 3)))
        labels.append((cls, (x0 + w / 2) / WIDTH, (y0 + h / 2) / HEIGHT, w / WIDTH, h / HEIGHT))
    return image, labels


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = rng.uniform(40, 160, 3).astype(np.float32)
    slope = rng.uniform(-0.08, 0.08, (2, 3)).astype(np.float32)
    image = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    image += rng.normal(0, 12, (HEIGHT, WIDTH, 3)).astype(np.float32)  # texture
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(10, 30))):  # clutter: streaks and irregular blobs, not labelled
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            p, q = rng.integers(0, (WIDTH, HEIGHT), (2, 2))
            cv2.line(image, tuple(int(v) for v in p), tuple(int(v) for v in q), color, int(rng.integers(1, 4)))
        else:
            center = tuple(int(v) for v in rng.integers(0, (WIDTH, HEIGHT)))
            axes = tuple(int(v) for v in rng.integers(2, 14, 2))
            cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    return image


def _draw(image: np.ndarray, cls: int, x0: int, y0: int, w: int, h: int, color: tuple[int, int, int]) -> None:
    x1, y1 = x0 + w - 1, y0 + h - 1
    if cls == 0:  # square
        cv2.rectangle(image, (x0, y0), (x1, y1), color, -1)
    elif cls == 1:  # disc
        cv2.ellipse(image, (((x0 + x1) / 2, (y0 + y1) / 2), (w - 1, h - 1), 0.0), color, -1)
    elif cls == 2:  # triangle
        cv2.fillPoly(image, [np.array([[(x0 + x1) // 2, y0], [x1, y1], [x0, y1]], np.int32)], color)
    else:  # cross
        t = max(2, min(w, h) // 3)
        cv2.rectangle(image, (x0, (y0 + y1 - t) // 2), (x1, (y0 + y1 + t) // 2), color, -1)
        cv2.rectangle(image, ((x0 + x1 - t) // 2, y0), ((x0 + x1 + t) // 2, y1), color, -1)
