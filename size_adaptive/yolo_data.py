"""Reading a YOLO dataset without decoding its pixels: the data yaml (nothing downloaded), the image lists, the label
rows, the image sizes from the file headers, and the objects' sizes; and the key checks of the data commands. Shared
by ``yolo-sa tile`` and ``yolo-sa advise``.

The layout is Ultralytics' (8.4.190): a split is a folder of images (searched recursively), an image file or a ``.txt``
list of image paths (``./`` relative to the list); an image's labels are found by ``img2label_paths`` (the last
``images`` folder becomes ``labels``, the suffix ``.txt``); a missing label file means no objects.

Label rows, coordinates normalised by the image width and height (norm):

    ``cls x y w h``                 a box (detect; also the first 5 values of a pose row)
    ``cls x1 y1 ... xn yn``         a polygon, n >= 3 (segment; OBB: n = 4, the rotated box's corners in order)

Object size: ``side = sqrt(area)`` px, the area as per-size mAP counts it (``size_adaptive.per_size``): w·h of a box,
the polygon's area (shoelace; a segment's mask pixel count, to within its outline) and w·h of a rotated box (its
4-point polygon's area). COCO's sizes: small ``side < 32``, medium ``32 <= side < 96``, large ``side >= 96``.

Every refusal is a ``ValueError`` that starts with ``data:`` and names the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .demo import demo_keywords, resolve_data

SIDE_BINS = (8, 16, 32, 64)  # AI-TOD's bins of the object side, px: < 8, 8-16, 16-32, 32-64, >= 64
SIDE_LABELS = ("<8", "8-16", "16-32", "32-64", ">=64")
COCO_BINS = (32, 96)  # COCO's small / medium / large edges, as sides (area 32², 96²), px
COCO_LABELS = ("small", "medium", "large")
TASKS = ("detect", "segment", "obb")


def load_data(data, splits: Sequence[str] = ("train", "val"), box_tasks_only: bool = False) -> dict:
    """The data yaml as Ultralytics' ``check_det_dataset`` parses it (paths resolved), refusing what it would download.

    Args:
        data: a dataset yaml path or a demo keyword (``size_adaptive.demo.resolve_data``).
        splits: the splits that must be there (``"train"``, ``"val"``), each as existing paths.
        box_tasks_only: refuse a pose dataset (``kpt_shape``) by name.

    Returns:
        Ultralytics' data dict, plus ``yaml_file`` (the resolved yaml path, str).
    """
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import YAML

    keywords = ", ".join(demo_keywords())
    expected = f"a local dataset yaml or a demo keyword ({keywords})"
    if data is None or not str(data).strip():
        raise ValueError(f"data: expected {expected}; got nothing")
    if "://" in str(data):
        raise ValueError(f"data: expected {expected} (nothing is downloaded); got {str(data)!r}")
    resolved = resolve_data(str(data).strip() if isinstance(data, str) else data)
    path = Path(resolved)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"data: expected {expected}; got {str(data)!r}")
    if not path.is_file():
        from ultralytics.utils.checks import check_yaml

        found = check_yaml(str(path), hard=False)  # a yaml that Ultralytics ships (its images must exist locally)
        if not found:
            raise ValueError(f"data: expected {expected}; got {str(data)!r} (not found)")
        path = Path(found)
    raw = YAML.load(path)
    if not isinstance(raw, dict):
        raise ValueError(f"data: expected a dataset yaml (a mapping with train, val and names); got {str(path)!r}")
    if box_tasks_only and raw.get("kpt_shape") is not None:
        raise ValueError(f"data: expected a detect, segment or OBB dataset; got a pose dataset ('kpt_shape' in "
                         f"{path}): keypoints cannot be tiled")
    for split in splits:
        if not raw.get(split) and not (split == "val" and raw.get("validation")):
            raise ValueError(f"data: expected a dataset yaml with a '{split}' set; got {str(path)!r} without one")
    try:  # autodownload=False: a missing val set raises instead of running the yaml's download script
        info = check_det_dataset(str(path), autodownload=False)
    except (FileNotFoundError, SyntaxError, TypeError, ValueError) as e:
        raise ValueError(f"data: expected a dataset yaml whose images exist (nothing is downloaded); got "
                         f"{str(path)!r}: {_first_line(e)}") from None
    for split in splits:
        for p in split_paths(info, split):
            if not Path(p).exists():
                raise ValueError(f"data: expected the '{split}' images of {path} at {p}; got no such path (nothing "
                                 f"is downloaded)")
    info["yaml_file"] = str(path.resolve())
    return info


def _first_line(e: Exception) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0].replace("❌", "").strip() if lines else type(e).__name__


def split_paths(info: dict, split: str) -> list[str]:
    """The resolved path(s) of a split of ``load_data``'s dict ([] when absent)."""
    value = info.get(split)
    if not value:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def image_files(paths: Iterable[str], split: str = "") -> list[Path]:
    """The image files of a split, sorted, as Ultralytics' ``BaseDataset.get_img_files`` (8.4.190) lists them: a
    folder recursively, a ``.txt`` list (``./`` relative to it) or an image file; suffixes in ``IMG_FORMATS``."""
    from ultralytics.data.utils import IMG_FORMATS

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.suffix.lower() == ".txt":
            parent = str(p.parent) + os.sep
            lines = p.read_text(encoding="utf-8-sig").strip().splitlines()
            files += [x.replace("./", parent, 1) if x.startswith("./") else x for x in lines]
        else:
            files.append(str(p))
    images = [Path(f) for f in sorted(f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)]
    if not images:
        raise ValueError(f"data: expected images in the '{split}' set; got none in {', '.join(map(str, paths))}")
    return images


def label_files(images: Sequence[Path]) -> list[Path]:
    """The label file of each image (``img2label_paths``); it need not exist."""
    from ultralytics.data.utils import img2label_paths

    return [Path(p) for p in img2label_paths([str(i) for i in images])]


def read_label_bytes(file: Path) -> bytes:
    """The bytes of one label file; ``b""`` for a missing one (an image without objects)."""
    try:
        return file.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as e:
        raise ValueError(f"data: expected readable label files; got {file} ({e})") from None


def read_labels(file: Path, nkpt_values: int = 0) -> list[np.ndarray]:
    """The rows of one label file (``parse_labels``); [] for a missing file."""
    return parse_labels(read_label_bytes(file), file, nkpt_values)


def parse_labels(data: bytes, file: Path, nkpt_values: int = 0) -> list[np.ndarray]:
    """The rows of a label file's bytes, each a float64 array ``(cls, coords...)`` in norm.

    Args:
        data: the file's bytes (UTF-8, with or without a byte-order mark).
        file: its path, for the error message.
        nkpt_values: a pose dataset's keypoint values per row (``nkpt * ndim``); those rows are cut to their box.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"data: expected UTF-8 label files; got {file} ({e})") from None
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, v[:5] if nkpt_values and len(v) == 5 + nkpt_values else v) for n, v in lines if v]
    for n, values in lines:
        if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
            raise ValueError(f"data: expected label rows of 5 values (a box) or 1 + 2n, n >= 3 (a polygon); got "
                             f"{len(values)} values in {file}:{n}")
    try:
        if lines and all(len(v) == 5 for _, v in lines):  # boxes: one conversion for the whole file
            return list(np.array([v for _, v in lines], dtype=np.float64))
        return [np.array(v, dtype=np.float64) for _, v in lines]
    except ValueError:
        n, values = next((n, v) for n, v in lines if not _numbers(v))
        raise ValueError(f"data: expected label rows of numbers ('cls x y w h' or 'cls x1 y1 ... xn yn'); got "
                         f"{' '.join(values)!r} in {file}:{n}") from None


def _numbers(values: list[str]) -> bool:
    try:
        np.array(values, dtype=np.float64)
        return True
    except ValueError:
        return False


def image_size(file: Path, verify: bool = False) -> tuple[int, int]:
    """(width, height) px of an image from its header, EXIF orientation applied (Ultralytics' ``exif_size``), without
    decoding its pixels; ``verify`` also runs PIL's structural check (PNG checksums, for example)."""
    from PIL import Image
    from ultralytics.data.utils import exif_size

    try:
        with Image.open(file) as im:
            if verify:
                im.verify()  # first, as Ultralytics' check_image: it must follow open
            size = exif_size(im)
    except Exception as e:  # PIL raises many types for unreadable files
        raise ValueError(f"data: expected readable images; got {file}, which cannot be read ({e})") from None
    return int(size[0]), int(size[1])


def polygon_area(points: np.ndarray) -> float:
    """The area of a polygon (n, 2) by the shoelace formula, in the squared unit of ``points``."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def row_area(row: np.ndarray, width: int, height: int) -> float:
    """The area in px² of one label row of an image of ``width`` x ``height`` px (see the module docstring)."""
    if len(row) == 5:
        return float(row[3] * width * row[4] * height)
    return polygon_area(row[1:].reshape(-1, 2) * (width, height))


def row_areas(rows: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """``row_area`` of every row: (n,) px², boxes at once."""
    if rows and all(len(r) == 5 for r in rows):
        boxes = np.stack(rows)
        return boxes[:, 3] * width * boxes[:, 4] * height
    return np.array([row_area(r, width, height) for r in rows], float)


def infer_task(rows: Iterable[tuple[np.ndarray, tuple[int, int]]]) -> str:
    """The task of a dataset's label rows, given as ``(row, (width, height))`` pairs: ``detect`` when every row is a
    box; ``obb`` when every row is 4 points that make a rectangle in px (to 1 %); else ``segment``. A dataset of
    rectangles only reads as OBB: give ``task=segment`` to ``tile`` for it."""
    kinds = set()
    for row, size in rows:
        if len(row) == 5:
            kinds.add("box")
        elif len(row) == 9 and _is_rectangle(row[1:].reshape(4, 2) * size):
            kinds.add("rect")
        else:
            return "segment"
    return "obb" if kinds == {"rect"} else "detect" if kinds <= {"box"} else "segment"


def _is_rectangle(c: np.ndarray, tol: float = 0.01) -> bool:
    """Whether 4 points (4, 2) px in order make a rectangle: opposite sides equal and the first corner square."""
    u, v = c[1] - c[0], c[3] - c[0]
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return False
    return bool(np.linalg.norm(c[0] + c[2] - c[1] - c[3]) <= tol * (nu + nv) and abs(u @ v) <= tol * nu * nv)


def histogram(sides: np.ndarray, edges: Sequence[float], labels: Sequence[str]) -> dict[str, int]:
    """Counts of ``sides`` (px) per bin: ``[-inf, e0), [e0, e1), ..., [e_last, inf)``, keyed by ``labels``."""
    counts = np.bincount(np.searchsorted(np.asarray(edges, float), np.asarray(sides, float), side="right"),
                         minlength=len(labels))
    return {k: int(v) for k, v in zip(labels, counts)}


def size_histograms(sides: np.ndarray) -> dict[str, dict[str, int]]:
    """AI-TOD's (``ai_tod``) and COCO's (``coco``) histograms of object sides in px."""
    return {"ai_tod": histogram(sides, SIDE_BINS, SIDE_LABELS), "coco": histogram(sides, COCO_BINS, COCO_LABELS)}


def check_keys(command: str, given: dict, allowed: Sequence[str]) -> None:
    """Refuse a key that ``command`` does not take, naming it, the keys it takes and the closest one."""
    import difflib

    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{key}: expected one of the keys of 'yolo-sa {command}' ({', '.join(allowed)}); got "
                             f"{key}={given[key]!r}{hint}")


def whole_number(key: str, value, minimum: int = 1, unit: str = "px") -> int:
    """``value`` (an int or its text) as an int >= ``minimum``; a ``ValueError`` naming ``key`` otherwise."""
    number = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                f = float(value.strip())
                number = int(f) if f.is_integer() else None
            except ValueError:
                pass
    if number is None or number < minimum:
        raise ValueError(f"{key}: expected a whole number of {unit} >= {minimum}; got {key}={value!r}"
                         if minimum != 1 else f"{key}: expected a whole number of {unit} > 0; got {key}={value!r}")
    return number


def fraction(key: str, value, low: float, high: float, low_open: bool, high_open: bool, what: str) -> float:
    """``value`` (a number or its text) as a float in the interval; a ``ValueError`` naming ``key`` otherwise.

    ``what`` says what the number is (``"a fraction of the tile"``); the interval is written as in the docs:
    ``[0, 1)``, ``(0, 1]``."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    number = None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if (number is None or not np.isfinite(number) or number < low or number > high
            or (low_open and number == low) or (high_open and number == high)):
        raise ValueError(f"{key}: expected {what} in {interval}; got {key}={value!r}")
    return number
