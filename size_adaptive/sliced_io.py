"""Files of sliced prediction and validation: reading and checking images, listing a source, the run's folder, and
writing detections as ``yolo predict`` writes them (``size_adaptive.sliced``).

Shapes (px, the whole image): boxes (n, 4) xyxy; rboxes (n, 5) xywhr; mask crops (bool (h, w), x, y).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sliced_merge import Detections


def read_image(file, key: str = "source") -> np.ndarray:
    """(H, W, 3) BGR uint8 of an image file, EXIF orientation applied (Ultralytics' ``imread``, as its loaders read
    images); a ``ValueError`` naming ``key`` and the file when it cannot be decoded."""
    from ultralytics.utils.patches import imread

    try:
        image = imread(str(file))
    except Exception:  # noqa: BLE001 (OpenCV raises several kinds for broken files)
        image = None
    if image is None or image.size == 0:
        raise ValueError(f"{key}: expected readable images; got {file}, which cannot be read (unreadable or corrupt)")
    return image


def check_readable(files, key: str = "source") -> None:
    """Refuse an image that PIL cannot open and verify (a file that is not an image, a broken header or checksum)
    before anything is written; a ``ValueError`` naming ``key`` and the file."""
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 (PIL raises many kinds for unreadable files)
            raise ValueError(f"{key}: expected readable images; got {file}, which cannot be read ({e})") from None


def source_files(source) -> list[Path]:
    """The image files of ``source`` as Ultralytics' ``LoadImagesAndVideos`` (8.4.190) lists them: a file, a folder,
    a glob, a ``.txt`` list or a list of these; videos, streams and URLs are refused."""
    from ultralytics.data.loaders import LoadImagesAndVideos

    expected = "an image, a folder or glob of images, a .txt list of images, or a list of these"
    if source is None or "://" in str(source):
        raise ValueError(f"source: expected {expected}; got source={source!r}")
    try:
        loader = LoadImagesAndVideos(source if isinstance(source, (list, tuple)) else str(source))
    except (FileNotFoundError, OSError, ValueError) as e:
        raise ValueError(f"source: expected {expected}; got source={source!r} ({str(e).splitlines()[0]})") from None
    videos = [f for f, v in zip(loader.files, loader.video_flag) if v]
    if getattr(loader, "cap", None) is not None:
        loader.cap.release()
    if videos:
        raise ValueError(f"source: expected images (sliced prediction does not read videos); got {videos[0]}")
    return [Path(f) for f in loader.files]


def output_dir(task: str, mode: str, project=None, name=None, save_dir=None) -> Path:
    """The folder a run will write, as Ultralytics' ``get_save_dir`` (8.4.190) names it (``runs/<task>/<mode>``,
    numbered, never an existing one); a given ``save_dir`` must be new or empty. Nothing is created here."""
    from types import SimpleNamespace

    from ultralytics.cfg import get_save_dir

    if save_dir:
        path = Path(save_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"save_dir: expected a new or empty folder (nothing is overwritten); got {str(path)!r}")
        return path.resolve()
    return get_save_dir(SimpleNamespace(project=project, name=name, task=task, mode=mode, exist_ok=False))


def to_results(image: np.ndarray, path, names: dict, detections: Detections, task: str):
    """Ultralytics ``Results`` of the boxes (detect, segment) or rotated boxes (OBB) of one image, for its plotting
    and ``save_txt``."""
    import torch
    from ultralytics.engine.results import Results

    d = detections
    tail = np.stack([d.scores, d.cls.astype(np.float64)], 1)  # (n, 2) conf, cls
    if task == "obb":
        return Results(image, str(path), names, obb=torch.from_numpy(np.concatenate([d.rboxes, tail], 1)).float())
    return Results(image, str(path), names, boxes=torch.from_numpy(np.concatenate([d.boxes, tail], 1)).float())


def segment_lines(detections: Detections, height: int, width: int, save_conf: bool) -> list[str]:
    """YOLO segment label rows ``cls x1 y1 ... [conf]`` (norm of the whole image) of the mask crops, each outline
    traced by Ultralytics' ``masks2segments`` and written as ``Results.save_txt`` (8.4.190) writes them."""
    from ultralytics.utils import ops

    lines = []
    for (crop, x, y), score, cls in zip(detections.masks, detections.scores, detections.cls):
        points = ops.masks2segments(crop[None].astype(np.uint8))[0]  # (k, 2) crop px
        if len(points) < 3:
            continue
        row = (int(cls), *((points + (x, y)) / (width, height)).reshape(-1), *((float(score),) if save_conf else ()))
        lines.append(("%g " * len(row)).rstrip() % row)
    return lines


def plot(image: np.ndarray, path, names: dict, detections: Detections, task: str, **plot_args) -> np.ndarray:
    """The image with its detections drawn by Ultralytics' ``Results.plot``; masks are blended in first."""
    from ultralytics.utils.plotting import colors

    canvas = image
    if detections.masks:
        canvas = image.copy()
        for (crop, x, y), cls in zip(detections.masks, detections.cls):
            region = canvas[y:y + crop.shape[0], x:x + crop.shape[1]]
            region[crop] = (0.5 * region[crop] + 0.5 * np.array(colors(int(cls), True))).astype(np.uint8)
    return to_results(image, path, names, detections, task).plot(img=canvas, **plot_args)

