"""Sliced prediction on whole large images: SAHI's windows and merge around Ultralytics' batched forward pass.

``predict_image`` runs a model slice by slice on one whole image and merges the slices (and, with ``slice_whole``, one
pass on the whole image resized to ``imgsz``) into detections in the image's own pixels; ``predict`` does it for a
source of images and saves them as ``yolo predict`` does. ``size_adaptive.sliced_val`` evaluates it on a data set.

What comes from where:
    windows   SAHI 0.12's ``get_slice_bboxes`` (square slices of ``slice`` px, ``overlap`` of a slice, the last row
              and column moved back inside the image), cropped one batch at a time: nothing but the window list is
              held for the whole image, so the memory beyond the image and its detections is one batch of slices.
    forward   Ultralytics' own ``predict`` on a list of slice arrays: one forward pass per batch of ``batch`` slices
              (8 on a GPU, 1 on CPU, where batching is no faster), with its letterbox, NMS (``iou``, ``max_det`` per
              slice) and ``retina_masks`` (masks at slice px).
    merge     SAHI's array-level ``batched_nms`` / ``batched_greedy_nmm`` / ``batched_nmm`` decide which detections
              match and merge (``match_metric`` IOU or IOS on the boxes, ``match_threshold``), with SAHI's rule for
              the default: GREEDYNMM with IOS 0.5, switched to NMS with IOU below a confidence of 0.1 (SAHI's
              ``LOW_MODEL_CONFIDENCE``), where merging would swell true boxes with low-score ones.

Glue written here, because SAHI lacks it:
    - SAHI's own Ultralytics wrapper (``UltralyticsDetectionModel``, 0.12.8) passes neither ``iou`` nor ``max_det``,
      and resizes Ultralytics' masks of the letterboxed network input, padding and all, straight to the slice: they
      are misplaced wherever the letterbox pads (the whole-image pass of a non-square image). Here the forward pass
      is Ultralytics' own with ``retina_masks`` (masks at slice px); the detections stay arrays (boxes, scores,
      classes, mask crops) instead of one ``ObjectPrediction`` with polygon masks each, and only the merge groups are
      combined, as SAHI's ``_apply_merge`` combines them (box union, highest score and its class, mask union).
    - Oriented boxes: SAHI merges them as their axis-aligned boxes, with NMS only (supervision #1679 notes the same
      in its merge). ``rotated_nms`` suppresses by the exact IoU or IOS of the rotated boxes (shapely polygons, the
      pairs found with an STR tree), class by class.
    - Pose: SAHI's merge has no keypoints; pose models are refused by name.

A single pass (one slice covers the image, no whole-image pass) is returned as Ultralytics gives it, unmerged. After
the merge, the detections of an image are cut to the ``max_det`` best (``WHOLE_IMAGE_MAX_DET`` = 500 by default, as
VisDrone's protocol: a whole aerial image holds hundreds of objects). Every key is checked by ``sliced_settings``
before anything runs; a ``ValueError`` starts with the key's name.

Shapes and units (px: the whole image's pixels unless said otherwise):
    boxes   (n, 4) xyxy px, float64; for OBB the rotated box's enclosing axis-aligned box
    rboxes  (n, 5) xywhr px and radians (OBB only)
    masks   n crops (segment only): a bool array (h, w) of the mask inside its box, and the crop's top-left (x, y) px
    windows [x0, y0, x1, y1] px of each slice
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sliced_io import (
    check_readable,
    output_dir,
    plot,
    read_image,
    segment_lines,
    source_files,
    to_results,
)
from .sliced_merge import Detections, merge

WHOLE_IMAGE_MAX_DET = 500  # detections per image (and per forward pass) unless max_det is given; VisDrone's cap
DEFAULT_OVERLAP = 0.2
DEFAULT_BATCH = None  # slices per forward pass: GPU_BATCH on a GPU, 1 on CPU (``default_batch``)
GPU_BATCH = 8
POSTPROCESS = ("GREEDYNMM", "NMM", "NMS")
MATCH_METRICS = ("IOU", "IOS")
TASKS = ("detect", "segment", "obb")


def _whole(key: str, value, minimum: int, what: str) -> int:
    """A whole number >= ``minimum`` from an int or a string ('640'); 640.0 passes, 640.5, True and 'abc' do not."""
    number = None
    if ((isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value))
            or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))
            or (isinstance(value, float) and value.is_integer())):
        number = int(value)
    if number is None or number < minimum:
        raise ValueError(f"{key}: expected {what}; got {key}={value!r}")
    return number


def _number(key: str, value, what: str, low: float, high: float, low_open: bool = False,
            high_open: bool = False) -> float:
    """A float in the interval from ``low`` to ``high`` (ends open as told) from a number or a string ('0.2')."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    inside = (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not inside:  # NaN fails both comparisons
        raise ValueError(f"{key}: expected {what}; got {key}={value!r}")
    return number


def _flag(key: str, value) -> bool:
    """True or False from a bool or a string ('True', 'false', '1', '0')."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (str, int)) and str(value).strip().lower() in {"true", "1", "false", "0"}:
        return str(value).strip().lower() in {"true", "1"}
    raise ValueError(f"{key}: expected True or False; got {key}={value!r}")


def _choice(key: str, value, choices) -> str:
    if isinstance(value, str) and value.strip().upper() in choices:
        return value.strip().upper()
    raise ValueError(f"{key}: expected one of {', '.join(choices)}; got {key}={value!r}")


@dataclass(frozen=True)
class SlicedSettings:
    """The checked keys of a sliced prediction or validation (units in the comments)."""

    slice: int  # px, side of the square slices
    overlap: float = DEFAULT_OVERLAP  # fraction of a slice shared with its neighbour
    slice_whole: bool = True  # also merge one pass on the whole image, resized to imgsz
    batch: int = 1  # slices per forward pass
    imgsz: int | None = None  # px, network input of every pass; None: the model's own (its training imgsz)
    conf: float = 0.25
    iou: float = 0.7  # Ultralytics' NMS within a pass
    max_det: int = WHOLE_IMAGE_MAX_DET  # per pass and per merged image
    postprocess: str = "GREEDYNMM"  # SAHI's merge: GREEDYNMM, NMM or NMS (OBB: always rotated NMS)
    match_metric: str = "IOS"  # IOU or IOS (intersection over the smaller box)
    match_threshold: float = 0.5
    class_agnostic: bool = False
    device: str | None = None


def sliced_settings(slice, overlap=DEFAULT_OVERLAP, slice_whole=True, batch=DEFAULT_BATCH, imgsz=None, conf=0.25,
                    iou=0.7, max_det=None, postprocess=None, match_metric=None, match_threshold=0.5,
                    class_agnostic=False, device=None, mode: str = "prediction") -> SlicedSettings:
    """Check every key (strings from the command line or typed values) and return them typed.

    ``slice=0`` is refused: it means the whole-image path, which the caller runs instead. ``postprocess`` and
    ``match_metric`` left at None follow SAHI's ``get_sliced_prediction`` (0.12): GREEDYNMM with IOS, and NMS with
    IOU when ``conf`` < 0.1.

    Raises:
        ValueError: the first bad key, as "key: expected ...; got key=value".
    """
    from sahi.predict import LOW_MODEL_CONFIDENCE

    whole = "whole-image validation" if mode == "validation" else "unsliced prediction"
    size = _whole("slice", slice, 0, "a whole number of px >= 0")
    if size == 0:
        raise ValueError(f"slice: expected a whole number of px >= 1 for sliced {mode} (slice=0 is the {whole}); got "
                         f"slice={slice!r}")
    conf = _number("conf", conf, "a confidence in [0, 1]", 0, 1)
    low = conf < LOW_MODEL_CONFIDENCE
    return SlicedSettings(
        slice=size,
        overlap=_number("overlap", overlap, "a fraction of the slice in [0, 1)", 0, 1, high_open=True),
        slice_whole=_flag("slice_whole", slice_whole),
        batch=default_batch(device) if batch is None else _whole("batch", batch, 1, "a whole number of slices per "
                                                                                      "forward pass >= 1"),
        imgsz=None if imgsz is None else _whole("imgsz", imgsz, 32, "a whole number of px >= 32"),
        conf=conf,
        iou=_number("iou", iou, "an IoU in (0, 1]", 0, 1, low_open=True),
        max_det=WHOLE_IMAGE_MAX_DET if max_det is None else _whole("max_det", max_det, 1, "a whole number >= 1"),
        postprocess=_choice("postprocess", postprocess or ("NMS" if low else "GREEDYNMM"), POSTPROCESS),
        match_metric=_choice("match_metric", match_metric or ("IOU" if low and not postprocess else "IOS"),
                             MATCH_METRICS),
        match_threshold=_number("match_threshold", match_threshold, "an overlap in (0, 1]", 0, 1, low_open=True),
        class_agnostic=_flag("class_agnostic", class_agnostic),
        device=None if device is None else str(device),
    )


def default_batch(device=None) -> int:
    """Slices per forward pass when ``batch`` is not given: ``GPU_BATCH`` where the model runs on a GPU (Ultralytics'
    ``select_device``: CUDA when there is one and ``device`` does not say cpu), else 1. On CPU a batch of slices is
    no faster than one slice at a time (scripts/bench_sliced.py) and holds more memory."""
    import torch

    on_cpu = str(device).strip().lower() == "cpu" if device is not None else not torch.cuda.is_available()
    return 1 if on_cpu else GPU_BATCH


def slice_windows(height: int, width: int, size: int, overlap: float) -> list[list[int]]:
    """The slices of an image of ``height`` x ``width`` px: SAHI's ``get_slice_bboxes`` with square ``size`` px
    slices and ``overlap`` (a fraction of ``size``); one window [0, 0, width, height] when ``size`` covers the image."""
    from sahi.slicing import get_slice_bboxes

    return get_slice_bboxes(image_height=height, image_width=width, slice_height=size, slice_width=size,
                            overlap_height_ratio=overlap, overlap_width_ratio=overlap, auto_slice_resolution=False)


def from_result(result, shift: tuple[int, int], task: str) -> Detections:
    """One pass's Ultralytics ``Results`` as detections in the whole image's px, moved by ``shift`` (x, y) px.

    Boxes (and mask crops) are clipped to the slice, as Ultralytics clips them; boxes without area are dropped, as
    SAHI drops them. Masks are ``retina_masks`` (slice px), kept as their box's crop.
    """
    dx, dy = shift
    if task == "obb":
        obb = result.obb
        rboxes = obb.xywhr.cpu().numpy().astype(np.float64)
        rboxes[:, :2] += (dx, dy)
        boxes = obb.xyxy.cpu().numpy().astype(np.float64) + (dx, dy, dx, dy)
        return Detections(boxes, obb.conf.cpu().numpy().astype(np.float64), obb.cls.cpu().numpy().astype(np.int64),
                          rboxes=rboxes)
    data = result.boxes.data.cpu().numpy().astype(np.float64)  # (n, 6) xyxy conf cls, slice px
    h, w = result.orig_shape
    data[:, [0, 2]] = data[:, [0, 2]].clip(0, w)
    data[:, [1, 3]] = data[:, [1, 3]].clip(0, h)
    valid = (data[:, 2] > data[:, 0]) & (data[:, 3] > data[:, 1])
    masks = None
    if task == "segment":
        masks = []
        bits = result.masks.data if result.masks is not None else None  # (n, h, w) at slice px
        for i in np.flatnonzero(valid):
            x0, y0 = int(data[i, 0]), int(data[i, 1])  # floor: the box's pixels, outward
            x1, y1 = math.ceil(data[i, 2]), math.ceil(data[i, 3])
            masks.append((bits[i, y0:y1, x0:x1].cpu().numpy() > 0, x0 + dx, y0 + dy))
    data = data[valid]
    return Detections(data[:, :4] + (dx, dy, dx, dy), data[:, 4], data[:, 5].astype(np.int64), masks=masks)


def empty(task: str) -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64),
                      np.zeros((0, 5)) if task == "obb" else None, [] if task == "segment" else None)


def model_task(model) -> str:
    """The task of an Ultralytics model; pose and the tasks without boxes are refused by name."""
    task = getattr(model, "task", None)
    if task == "pose":
        raise ValueError("model: expected a detect, segment or OBB model; got a pose model: SAHI's merge of slices has "
                         "no keypoints, so sliced prediction and validation do not support pose")
    if task not in TASKS:
        raise ValueError(f"model: expected a detect, segment or OBB model; got a {task} model")
    return task


def load_model(model):
    """An Ultralytics ``YOLO`` from a path (which must exist) or the model itself."""
    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise ValueError(f"model: expected an existing model file (best.pt); got model={str(model)!r}")
        from ultralytics import YOLO

        return YOLO(str(model))
    return model


def forward(model, images: list[np.ndarray], settings: SlicedSettings) -> list:
    """Ultralytics' ``Model.predict`` (8.4.190) on a list of BGR arrays in one batch: its letterbox to ``imgsz``
    (``rect``: same-shaped slices keep their aspect), NMS with ``iou`` and ``max_det``, masks at the arrays' px."""
    kwargs = {"conf": settings.conf, "iou": settings.iou, "max_det": settings.max_det, "verbose": False,
              "save": False, "retina_masks": True}
    if settings.imgsz is not None:
        kwargs["imgsz"] = settings.imgsz
    if settings.device is not None:
        kwargs["device"] = settings.device
    return model.predict(images, **kwargs)


def predict_image(model, image: np.ndarray, settings: SlicedSettings, task: str | None = None) -> Detections:
    """The merged detections of a whole image: its slices in batches of ``settings.batch``, then (with
    ``slice_whole``, when there is more than one slice) one pass on the whole image.

    Args:
        model: an Ultralytics ``YOLO`` (detect, segment or OBB).
        image: (H, W, 3) BGR uint8, as ``cv2.imread`` reads it.
        settings: from ``sliced_settings``.
        task: the model's task when known (``model_task``).

    Returns:
        At most ``settings.max_det`` detections in the image's px, in descending order of score.
    """
    task = task or model_task(model)
    height, width = image.shape[:2]
    windows = slice_windows(height, width, settings.slice, settings.overlap)
    parts = []
    for start in range(0, len(windows), settings.batch):
        chunk = windows[start:start + settings.batch]
        crops = [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in chunk]  # this batch's copies only
        results = forward(model, crops, settings)
        parts += [from_result(r, (w[0], w[1]), task) for r, w in zip(results, chunk)]
        del crops, results
    if settings.slice_whole and len(windows) > 1:
        parts.append(from_result(forward(model, [image], settings)[0], (0, 0), task))
    detections = Detections.concat(parts) if parts else empty(task)
    if len(parts) > 1:
        detections = merge(detections, settings.postprocess, settings.match_metric, settings.match_threshold,
                           settings.class_agnostic)
    return detections.best(settings.max_det)



def predict(model, source, slice, overlap=DEFAULT_OVERLAP, slice_whole=True, batch=DEFAULT_BATCH, imgsz=None,
            conf=0.25, iou=0.7, max_det=None, save=True, save_txt=False, save_conf=False, project=None, name=None,
            save_dir=None, show_labels=True, show_conf=True, line_width=None, device=None, postprocess=None,
            match_metric=None, match_threshold=0.5, class_agnostic=False) -> dict:
    """Sliced prediction on every image of ``source``, saved as ``yolo predict`` saves it.

    Writes ``<save_dir>/<image name>`` (the image with its detections, ``save``) and ``<save_dir>/labels/<stem>.txt``
    (``save_txt``: YOLO rows in norm of the whole image, ``save_conf`` appends the score; no file for an image
    without detections, as Ultralytics). Images are predicted one at a time (``predict_image``): the memory beyond
    the image and its detections is one batch of slices. Every key and every image's header is checked first; a
    ``ValueError`` naming the key comes before anything is written.

    Returns:
        ``{"save_dir": Path, "images": int, "detections": int}``.
    """
    from ultralytics.utils import LOGGER, TQDM

    settings = sliced_settings(slice, overlap, slice_whole, batch, imgsz, conf, iou, max_det, postprocess,
                               match_metric, match_threshold, class_agnostic, device, mode="prediction")
    save, save_txt, save_conf = _flag("save", save), _flag("save_txt", save_txt), _flag("save_conf", save_conf)
    plot_args = {"labels": _flag("show_labels", show_labels), "conf": _flag("show_conf", show_conf),
                 "line_width": None if line_width is None else _whole("line_width", line_width, 1, "px >= 1")}
    model = load_model(model)
    task = model_task(model)
    files = source_files(source)
    check_readable(files, "source")
    out = output_dir(task, "predict", project, name, save_dir)
    total = 0
    for file in TQDM(files, desc=f"sliced predict ({settings.slice} px slices)"):
        image = read_image(file, "source")
        detections = predict_image(model, image, settings, task)
        total += len(detections)
        out.mkdir(parents=True, exist_ok=True)
        if save_txt and len(detections):
            label_file = out / "labels" / f"{file.stem}.txt"
            label_file.parent.mkdir(exist_ok=True)
            if task == "segment":
                lines = segment_lines(detections, *image.shape[:2], save_conf)
                if lines:
                    label_file.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
            else:
                to_results(image, file, model.names, detections, task).save_txt(label_file, save_conf)
        if save:
            import cv2

            cv2.imwrite(str(out / file.name), plot(image, file, model.names, detections, task, **plot_args))
    LOGGER.info(f"{len(files)} images, {total} detections ({settings.slice} px slices, overlap {settings.overlap}, "
                f"whole-image pass {'on' if settings.slice_whole else 'off'}); results saved to {out}")
    return {"save_dir": out, "images": len(files), "detections": total}
