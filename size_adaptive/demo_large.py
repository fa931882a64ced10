"""Built-in large whole images: ``data=demo-large`` (detect), ``demo-large-seg`` (segment), ``demo-large-obb`` (obb).

Aerial-style frames far larger than ``imgsz``: each image's width and height are drawn in ``IMAGE_SIDES``
(1,600-2,048 px), over the demo's textured, cluttered background (``size_adaptive.demo``), with 60-140 objects of the
demo's four shapes whose own-frame long side is log-uniform in ``OBJECT_SIDES`` (4-40 px: about 30 % each of
4-8, 8-16 and 16-32 px, 10 % 32-40 px; at ``imgsz=640`` most of them shrink below a stride of 8). Objects do not
overlap (a 2 px margin) and lie fully inside the image; ``demo-large-obb`` rotates them by random angles. Labels
follow the demo's formats (``size_adaptive.demo``), normalised by each image's own width and height. The val split
is the whole-image val set: ``yolo-sa tile`` names it ``val_whole`` in the tiled ``data.yaml``. There is no pose
variant (``yolo-sa tile`` refuses keypoints).

Generated once (atomically) into the demo cache, ``<keyword>-v1-<train>-<val>-seed0``; ``$YOLO_SA_DEMO_LARGE_SIZE``
(``"TRAIN,VAL"`` image counts, default ``"16,8"``) sets the size. About 1 MB of JPEG per image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from .demo import LARGE_TASKS, NAMES, _background, box, cache_root, data_yaml, label_row, place, write_generated

VERSION = 1  # bump when the generator's output changes, so caches are not reused across versions
DEFAULT_SIZE = (16, 8)
IMAGE_SIDES = (1600, 2048)  # width and height of each image, px, drawn uniformly in this range
OBJECT_SIDES = (4, 40)  # own-frame long side of each object, px, log-uniform in this range
OBJECTS = (60, 141)  # objects per image: integers in [low, high)
MARGIN = 2  # px kept free between objects' boxes
LARGE_KEYWORDS = {t: k for k, t in LARGE_TASKS.items()}  # task -> keyword


def demo_large_size() -> tuple[int, int]:
    """(train, val) image counts from ``$YOLO_SA_DEMO_LARGE_SIZE``, else the default."""
    value = os.environ.get("YOLO_SA_DEMO_LARGE_SIZE")
    if not value:
        return DEFAULT_SIZE
    try:
        n_train, n_val = (int(x) for x in value.split(","))
    except ValueError:
        raise ValueError(f"YOLO_SA_DEMO_LARGE_SIZE: expected 'TRAIN,VAL' image counts, e.g. 4,2; got "
                         f"{value!r}") from None
    if n_train < 1 or n_val < 1:
        raise ValueError(f"YOLO_SA_DEMO_LARGE_SIZE: expected image counts >= 1, e.g. 4,2; got {value!r}")
    return n_train, n_val


def demo_large_data(n_train: int = DEFAULT_SIZE[0], n_val: int = DEFAULT_SIZE[1], seed: int = 0, root=None,
                    task: str = "detect", sides: tuple[int, int] = IMAGE_SIDES) -> Path:
    """Generate the large demo data set once (atomically) and return its ``data.yaml``.

    Args:
        n_train, n_val: number of training and (whole-image) validation images.
        seed: generator seed; the same arguments always give the same images and labels.
        root: parent folder; ``cache_root()`` when omitted.
        task: ``"detect"``, ``"segment"`` or ``"obb"`` (rotated shapes).
        sides: (low, high) px of each image's width and height; other than the default, the folder name says so.
    """
    if task not in LARGE_KEYWORDS:
        raise ValueError(f"task: expected one of {', '.join(map(repr, LARGE_KEYWORDS))}; got {task!r}")
    keyword = LARGE_KEYWORDS[task]
    root = Path(root) if root else cache_root()
    size_tag = "" if tuple(sides) == IMAGE_SIDES else f"-{sides[0]}x{sides[1]}px"

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, str]:
        image, objects = make_large_image(rng, task == "obb", sides)
        scale = image.shape[1::-1]  # (width, height) px
        return image, "".join(label_row(o, task, scale) + "\n" for o in objects)

    folder = root / f"{keyword}-v{VERSION}-{n_train}-{n_val}{size_tag}-seed{seed}"
    return write_generated(folder, keyword, n_train, n_val, seed, draw, data_yaml(folder, task))


def make_large_image(rng: np.random.Generator, rotate: bool = False, sides: tuple[int, int] = IMAGE_SIDES):
    """Draw one large image and its objects; return (BGR uint8 (height, width, 3), list of ``DemoObject``)."""
    width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
    area_scale = width * height / (640 * 480)  # the demo's clutter density
    image = _background(rng, width, height, clutter=(int(10 * area_scale), int(30 * area_scale)))
    objects, taken = [], np.zeros((0, 4))  # taken: (k, 4) xyxy px of the placed objects' pixel extents
    for _ in range(int(rng.integers(*OBJECTS))):
        side = math.exp(rng.uniform(math.log(OBJECT_SIDES[0]), math.log(OBJECT_SIDES[1])))
        w, h = round(side), max(4, round(side * rng.uniform(0.6, 1.0)))
        if rng.random() < 0.5:
            w, h = h, w
        angle = rng.uniform(0, math.pi) if rotate else 0.0
        cls = int(rng.integers(len(NAMES)))
        color = tuple(int(c) for c in rng.integers(40, 256, 3))
        cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
        ex, ey = (w * cos + h * sin) / 2, (w * sin + h * cos) / 2  # half extent of the rotated box, px
        for _ in range(20):  # a free spot, else the object is left out
            x0 = int(rng.integers(0, width - math.ceil(2 * ex)))
            y0 = int(rng.integers(0, height - math.ceil(2 * ey)))
            obj = place(cls, w, h, angle, (x0 + ex, y0 + ey))
            xc, yc, bw, bh = box(obj.polygon)
            extent = np.array([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2])
            clear = (taken[:, :2] - MARGIN >= extent[2:]).any(1) | (extent[:2] >= taken[:, 2:] + MARGIN).any(1)
            if clear.all() and extent[0] >= 0 and extent[1] >= 0 and extent[2] <= width and extent[3] <= height:
                break
        else:
            continue
        cv2.fillPoly(image, [obj.polygon], color)
        objects.append(obj)
        taken = np.vstack((taken, extent))
    return image, objects
