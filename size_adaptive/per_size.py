"""COCO mAP50-95 per object size (small, medium, large; with ``size_bins=aitod`` also very tiny and tiny) with
faster-coco-eval, for boxes, masks and rotated boxes.

This module does not import Ultralytics: it takes COCO-style ground truth and detections in original-image pixels and
returns the per-size AP that faster-coco-eval's ``COCOeval_faster`` computes (COCO's matching, 101-point interpolated
precision, IoU thresholds 0.50:0.05:0.95, at most 100 detections per image, as Ultralytics' detect evaluation uses it).

COCO's area ranges, in original-image px²: small ``[0, 32²]``, medium ``[32², 96²]``, large ``[96², 1e5²]``;
``bins="aitod"`` adds AI-TOD's very tiny ``[0, 8²]`` and tiny ``[8², 16²]`` inside small (faster-coco-eval's own
``ranges``, so each range is evaluated as COCO evaluates small; an area on an edge counts in both ranges, as COCO's).
Within a range, ground truths whose ``area`` lies outside it are ignored, and so are unmatched detections outside it.
``-1`` means no ground truth of that size (the log reads "n/a (no objects)").

Shapes and units:
    rboxes   (n, 5) xywhr: centre x, centre y, width, height (px), rotation (radians), as Ultralytics' OBB boxes
    corners  (n, 4, 2) px, the rotated box's vertices in order around it
    px       original-image pixels (the COCO definition of the sizes)

Areas that decide the bucket (the ``area`` of each annotation and detection):
    ``bbox``  w·h of the box (as Ultralytics' detect evaluation)
    ``segm``  the mask's pixel count (COCO's instance-segmentation convention)
    ``rbox``  w·h of the rotated box
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_utils

from .weighting import AITOD_THRESHOLDS, bin_names

IOU_TYPES = ("bbox", "segm", "rbox")
FIELDS = {"bbox": "bbox", "segm": "segmentation", "rbox": "rbox"}  # iou type -> the annotation field it compares
COCO_RANGES = {"small": [0, 32**2], "medium": [32**2, 96**2], "large": [96**2, 1e5**2]}  # px², faster-coco-eval's
AREA_RANGES = {  # size_bins -> faster-coco-eval's ``ranges`` (label -> [min, max] px²), in column order
    "coco": COCO_RANGES,
    "aitod": {"very_tiny": [0, AITOD_THRESHOLDS[0] ** 2], "tiny": [AITOD_THRESHOLDS[0] ** 2, AITOD_THRESHOLDS[1] ** 2],
              **COCO_RANGES},
}


def rbox_corners(rboxes: np.ndarray) -> np.ndarray:
    """The four vertices of rotated boxes.

    Args:
        rboxes: (n, 5) xywhr, px and radians.

    Returns:
        (n, 4, 2) px, in order around each box.
    """
    rboxes = np.asarray(rboxes, dtype=np.float64).reshape(-1, 5)
    x, y, w, h, r = rboxes.T
    cos, sin = np.cos(r), np.sin(r)
    u = np.stack([w / 2 * cos, w / 2 * sin], -1)  # (n, 2) half the width, along the box
    v = np.stack([-h / 2 * sin, h / 2 * cos], -1)  # (n, 2) half the height, across it
    c = np.stack([x, y], -1)
    return np.stack([c + u + v, c - u + v, c - u - v, c + u - v], 1)  # (n, 4, 2)


def _inside(points: np.ndarray, rboxes: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Whether points lie in (or on the border of) rotated boxes; ``points`` (..., 2) and ``rboxes`` (..., 5)
    broadcast against each other."""
    d = points - rboxes[..., :2]
    cos, sin = np.cos(rboxes[..., 4]), np.sin(rboxes[..., 4])
    along, across = d[..., 0] * cos + d[..., 1] * sin, -d[..., 0] * sin + d[..., 1] * cos  # box frame
    tol = eps * (1 + np.maximum(rboxes[..., 2], rboxes[..., 3]))
    return (np.abs(along) <= rboxes[..., 2] / 2 + tol) & (np.abs(across) <= rboxes[..., 3] / 2 + tol)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _overlap_areas(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Area of the overlap of each pair of rotated boxes ``b1[k]``, ``b2[k]``; (k, 5) xywhr each -> (k,) px²."""
    c1, c2 = rbox_corners(b1), rbox_corners(b2)  # (k, 4, 2)
    in1, in2 = _inside(c1, b2[:, None]), _inside(c2, b1[:, None])  # (k, 4) corners inside the other box
    # Edge i of box 1 (p + t·r) against edge j of box 2 (q + s·e), t and s in [0, 1].
    p, r = c1[:, :, None], (np.roll(c1, -1, axis=1) - c1)[:, :, None]  # (k, 4, 1, 2)
    q, e = c2[:, None], (np.roll(c2, -1, axis=1) - c2)[:, None]  # (k, 1, 4, 2)
    denom = _cross(r, e)  # (k, 4, 4); 0 for parallel edges, whose shared points are corners found above
    with np.errstate(divide="ignore", invalid="ignore"):
        t, s = _cross(q - p, e) / denom, _cross(q - p, r) / denom
        crossing = (np.abs(denom) > 1e-12 * np.linalg.norm(r, axis=-1) * np.linalg.norm(e, axis=-1)) & (
            t >= 0) & (t <= 1) & (s >= 0) & (s <= 1)
        crossings = np.where(crossing[..., None], p + t[..., None] * r, 0.0)  # (k, 4, 4, 2)
    k = len(b1)
    points = np.concatenate([c1, c2, crossings.reshape(k, 16, 2)], axis=1)  # (k, 24, 2)
    valid = np.concatenate([in1, in2, crossing.reshape(k, 16)], axis=1)  # (k, 24)
    count = valid.sum(-1)  # (k,)
    centre = (points * valid[..., None]).sum(1) / np.maximum(count, 1)[:, None]  # (k, 2) inside the convex overlap
    rel = points - centre[:, None]  # (k, 24, 2)
    order = np.argsort(np.where(valid, np.arctan2(rel[..., 1], rel[..., 0]), np.inf), axis=-1)
    rel = np.take_along_axis(rel, order[..., None], axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    rel = np.where(valid[..., None], rel, rel[:, :1])  # unused slots repeat the first vertex: zero-length edges
    area = np.abs(_cross(rel, np.roll(rel, -1, axis=1)).sum(-1)) / 2  # shoelace
    return np.where(count >= 3, area, 0.0)


def rotated_box_iou(rboxes1: np.ndarray, rboxes2: np.ndarray) -> np.ndarray:
    """Exact IoU of every pair of rotated boxes: the area of their overlap polygon over the area of their union.

    Computed here because neither faster-coco-eval nor Ultralytics has it: faster-coco-eval compares axis-aligned
    boxes, or polygons rasterised on the pixel grid (``segm``), which moves the IoU of boxes 4 to 8 px wide by 0.02 to
    0.05 on average and up to 0.3 (measured on random pairs), just where small objects are told apart; Ultralytics'
    ``probiou`` is a Gaussian similarity, not an overlap. The overlap of two rectangles is convex; its vertices are
    the corners of each box inside the other and the crossings of their edges, ordered by angle around their mean.
    Only pairs whose circumscribed circles meet are computed. With angle 0 this is the axis-aligned box IoU up to
    float rounding.

    Args:
        rboxes1: (n, 5) xywhr.
        rboxes2: (m, 5) xywhr.

    Returns:
        (n, m) IoU in [0, 1]; 0 where the union has no area.
    """
    b1 = np.asarray(rboxes1, dtype=np.float64).reshape(-1, 5)
    b2 = np.asarray(rboxes2, dtype=np.float64).reshape(-1, 5)
    radius1, radius2 = np.hypot(b1[:, 2], b1[:, 3]) / 2, np.hypot(b2[:, 2], b2[:, 3]) / 2
    distance = np.hypot(b1[:, None, 0] - b2[None, :, 0], b1[:, None, 1] - b2[None, :, 1])  # (n, m)
    i, j = np.nonzero(distance <= radius1[:, None] + radius2[None])
    overlap = np.zeros(distance.shape)
    overlap[i, j] = _overlap_areas(b1[i], b2[j])
    union = (b1[:, 2] * b1[:, 3])[:, None] + (b2[:, 2] * b2[:, 3])[None] - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0).clip(0, 1)


class RotatedCOCOeval(COCOeval_faster):
    """``COCOeval_faster`` (faster-coco-eval 1.8) on rotated boxes: its matching, area ranges and AP, our IoU.

    Annotations and detections carry ``rbox`` (xywhr, px) and ``area`` = w·h of the rotated box; their ``bbox`` (the
    enclosing axis-aligned box) is not used. Only ``computeIoU`` is replaced, following ``COCOevalBase.computeIoU``:
    detections sorted by score and cut to ``maxDets[-1]``, IoU rows per detection, columns per ground truth.
    """

    def __init__(self, cocoGt: COCO, cocoDt: COCO, **kwargs):
        super().__init__(cocoGt, cocoDt, iouType="bbox", **kwargs)

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:
        p = self.params
        cats = [catId] if p.useCats else p.catIds
        gt = self.gt_dataset.get_instances([imgId], cats, bool(p.useCats))[0][0]
        dt = self.dt_dataset.get_instances([imgId], cats, bool(p.useCats))[0][0]
        if len(gt) == 0 or len(dt) == 0:
            return []
        dt = sorted(dt, key=lambda d: -d["score"])[: p.maxDets[-1]]  # stable, as upstream's mergesort
        return rotated_box_iou([d["rbox"] for d in dt], [g["rbox"] for g in gt])


def coco_per_size(
    ground_truth: dict,
    detections: Sequence[dict],
    iou_type: str = "bbox",
    print_function: Callable[..., None] | None = None,
    max_dets: int = 100,
    bins: str = "coco",
) -> dict[str, float]:
    """COCO mAP50-95 of all objects and per size, evaluated by faster-coco-eval.

    Args:
        ground_truth: a COCO data set: ``images`` (``id``, ``height``, ``width``), ``categories`` (``id``) and
            ``annotations`` (``id``, ``image_id``, ``category_id``, ``area``, ``iscrowd`` and, by ``iou_type``,
            ``bbox`` ltwh px, ``segmentation`` RLE, or ``rbox`` xywhr px with ``area`` w·h).
        detections: COCO results (``image_id``, ``category_id``, ``score`` and ``bbox``, ``segmentation`` or ``rbox``).
            For ``segm`` give no ``bbox``: faster-coco-eval then takes the detection's area from its mask.
        iou_type: ``bbox``, ``segm`` or ``rbox``.
        print_function: receives faster-coco-eval's progress and summary lines; silent when None.
        max_dets: detections per image that count (COCO's ``maxDets``, the last of 1, 10, max_dets); 100 as COCO,
            500 for whole aerial images (VisDrone), where 100 cuts the recall of images with hundreds of objects.
        bins: ``coco`` (small, medium, large) or ``aitod`` (very_tiny and tiny too): the area ranges
            (``AREA_RANGES``) handed to faster-coco-eval; the other ranges' AP does not depend on them.

    Returns:
        ``{"all": AP, "small": AP, "medium": AP, "large": AP}`` (``aitod``: ``very_tiny`` and ``tiny`` first), each in
        [0, 1] or -1 (no ground truth of that size).

    Raises:
        ValueError: ``iou_type`` is not one of ``IOU_TYPES``, or ``bins`` not one of ``AREA_RANGES``.
    """
    _check_iou_type(iou_type)
    names = bin_names(bins)
    quiet = print_function or (lambda *args, **kwargs: None)
    gt = COCO(ground_truth)  # its loading messages go to faster-coco-eval's debug log, as in Ultralytics' detect
    dets = [dict(d) for d in detections]  # loadRes adds ids and areas to the dicts it is given
    if iou_type == "rbox":  # loadRes takes a result's area from its bbox: give it the enclosing box, then w·h
        for d in dets:
            corners = rbox_corners(d["rbox"])[0]  # (4, 2)
            lo, hi = corners.min(0), corners.max(0)
            d["bbox"] = [*lo.tolist(), *(hi - lo).tolist()]
    dt = gt.loadRes(dets)
    if iou_type == "rbox":
        for d in dt.dataset["annotations"]:
            d["area"] = area("rbox", d["rbox"])
        evaluator = RotatedCOCOeval(gt, dt, ranges=AREA_RANGES[bins], print_function=quiet)
    else:
        evaluator = COCOeval_faster(gt, dt, iouType=iou_type, ranges=AREA_RANGES[bins], print_function=quiet)
    evaluator.params.imgIds = gt.getImgIds()
    evaluator.params.maxDets = [1, 10, int(max_dets)]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats_as_dict  # AP_<label> for every range label (faster-coco-eval 1.8)
    return {"all": float(stats["AP_all"]), **{b: float(stats[f"AP_{b}"]) for b in names}}


def _check_iou_type(iou_type: str) -> None:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type: expected one of {', '.join(IOU_TYPES)}; got {iou_type!r}")


def area(iou_type: str, value) -> float:
    """The area that decides an object's size bucket: w·h of a ``bbox`` (ltwh) or ``rbox`` (xywhr), the pixel count
    of a ``segm`` RLE; px²."""
    if iou_type == "segm":
        return float(mask_utils.area(value))
    return float(value[2] * value[3])


def coco_ground_truth(images: Sequence[dict], iou_type: str, category_ids: Sequence[int]) -> dict:
    """A COCO data set of the validation labels, image ids 1..n in the order given.

    Args:
        images: per validated image ``height``, ``width`` (original px), ``category_id`` (one per object) and the
            objects under the field of ``iou_type`` (``FIELDS``): ``bbox`` ltwh, ``segmentation`` RLE or ``rbox`` xywhr.
        iou_type: ``bbox``, ``segm`` or ``rbox``.
        category_ids: every category of the data set.
    """
    _check_iou_type(iou_type)
    field = FIELDS[iou_type]
    out = {"images": [], "annotations": [], "categories": [{"id": c} for c in category_ids]}
    for image_id, image in enumerate(images, 1):
        out["images"].append({"id": image_id, "height": image["height"], "width": image["width"]})
        for category, value in zip(image["category_id"], image[field]):
            out["annotations"].append({"id": len(out["annotations"]) + 1, "image_id": image_id, "category_id": category,
                                       field: value, "area": area(iou_type, value), "iscrowd": 0})
    return out


def coco_detections(images: Sequence[dict], predictions: Sequence[dict], iou_type: str) -> list[dict]:
    """COCO results of Ultralytics' predictions (``jdict`` entries), with the image ids of ``coco_ground_truth``.

    The entries are in validation order, ``images[i]["n_pred"]`` of them for image i, as
    ``DetectionValidator.eval_json`` (8.4.190) pairs them with its ``pred_counts``: file names are not unique across
    folders. Only the field that
    ``iou_type`` compares is kept, so that a ``segm`` result's area is its mask's.

    Raises:
        ValueError: the counts do not add up to the number of predictions.
    """
    _check_iou_type(iou_type)
    counts = [image["n_pred"] for image in images]
    if sum(counts) != len(predictions):
        raise ValueError(f"predictions: expected {sum(counts)} (the images' n_pred); got {len(predictions)}")
    field, entries = FIELDS[iou_type], iter(predictions)
    return [{"image_id": image_id, "category_id": p["category_id"], "score": p["score"], field: p[field]}
            for image_id, count in enumerate(counts, 1) for p in (next(entries) for _ in range(count))]
