"""Merging the passes of a sliced prediction into one set of detections per image (see ``size_adaptive.sliced``).

Boxes and masks: SAHI 0.12's array-level ``batched_nms``, ``batched_greedy_nmm`` and ``batched_nmm`` (and their
class-agnostic forms) decide which detections match, on the boxes, by IOU or IOS; the greedy and non-greedy merges
are then combined here on arrays, as SAHI's ``_apply_merge`` combines ``ObjectPrediction``s: each kept detection
takes in, in SAHI's order, every listed detection that still matches its grown box, getting the union of the boxes,
the higher score, the class of the higher score (a tie goes to the one taken in) and the union of the masks. SAHI does
this on one Python object per detection, with masks as polygons; here a mask stays the pixels of its box.

Oriented boxes: ``rotated_nms``. SAHI compares them as their axis-aligned boxes, with NMS only; two thin boxes
crossing at an angle then overlap on paper and suppress each other, and two slices' views of one rotated object can
miss each other. This suppresses by the exact overlap of the rotated boxes instead (shapely polygons; only the pairs
that an STR tree finds touching are computed).

Shapes (px, the whole image): boxes (n, 4) xyxy; rboxes (n, 5) xywhr; mask crops (bool (h, w), x, y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .per_size import rbox_corners


@dataclass
class Detections:
    """The detections of one image (see the module's shapes); ``rboxes`` for OBB, ``masks`` for segment."""

    boxes: np.ndarray
    scores: np.ndarray
    cls: np.ndarray
    rboxes: np.ndarray | None = None
    masks: list | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> Detections:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        return Detections(self.boxes[index], self.scores[index], self.cls[index],
                          None if self.rboxes is None else self.rboxes[index],
                          None if self.masks is None else [self.masks[i] for i in index])

    def best(self, n: int) -> Detections:
        """The ``n`` highest scores, in descending order of score (stable)."""
        return self.select(np.argsort(-self.scores, kind="stable")[:n])

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        first = parts[0]
        return Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                          np.concatenate([p.cls for p in parts]),
                          None if first.rboxes is None else np.concatenate([p.rboxes for p in parts]),
                          None if first.masks is None else [m for p in parts for m in p.masks])


def merge(detections: Detections, postprocess: str = "GREEDYNMM", metric: str = "IOS", threshold: float = 0.5,
          class_agnostic: bool = False) -> Detections:
    """The detections of all passes of an image, merged by SAHI's ``postprocess`` (GREEDYNMM, NMM or NMS) with
    ``metric`` (IOU or IOS) and ``threshold``; OBB by ``rotated_nms`` whatever the postprocess, as SAHI only
    suppresses them. Returns the merged detections (order: SAHI's)."""
    from sahi.postprocess import combine

    if len(detections) == 0:
        return detections
    if detections.rboxes is not None:
        return detections.select(rotated_nms(detections.rboxes, detections.scores, detections.cls, metric, threshold,
                                             class_agnostic))
    preds = np.concatenate([detections.boxes, detections.scores[:, None], detections.cls[:, None]], 1)  # (n, 6)
    prefix = "" if class_agnostic else "batched_"
    if postprocess == "NMS":
        return detections.select(getattr(combine, f"{prefix}nms")(preds, metric, threshold))
    name = {"GREEDYNMM": "greedy_nmm", "NMM": "nmm"}[postprocess]
    keep_to_merge = getattr(combine, f"{prefix}{name}")(preds, metric, threshold)
    return merge_groups(detections, keep_to_merge, metric, threshold)


def box_overlap(box1: np.ndarray, box2: np.ndarray, metric: str) -> float:
    """IoU or IOS (intersection over the smaller area) of two xyxy boxes, with SAHI's area functions."""
    from sahi.postprocess.utils import calculate_area, calculate_intersection_area

    inter = calculate_intersection_area(box1, box2)
    a1, a2 = calculate_area(box1), calculate_area(box2)
    denominator = a1 + a2 - inter if metric == "IOU" else min(a1, a2)
    return float(inter / denominator) if denominator > 0 else 0.0


def merge_groups(detections: Detections, keep_to_merge: dict[int, list[int]], metric: str,
                 threshold: float) -> Detections:
    """Combine each kept detection with the detections listed for it (SAHI's ``_apply_merge``, 0.12), on arrays."""
    d = detections
    boxes, scores, classes, masks = [], [], [], [] if d.masks is not None else None
    for keep, merged in keep_to_merge.items():
        box, score, cls = d.boxes[keep].copy(), float(d.scores[keep]), int(d.cls[keep])
        mask = d.masks[keep] if masks is not None else None
        for j in merged:
            if box_overlap(box, d.boxes[j], metric) < threshold:
                continue
            if not score > d.scores[j]:  # SAHI's get_merged_category: the higher score's class
                cls = int(d.cls[j])
            score = max(score, float(d.scores[j]))
            box = np.concatenate([np.minimum(box[:2], d.boxes[j, :2]), np.maximum(box[2:], d.boxes[j, 2:])])
            if mask is not None:
                mask = union_crop(mask, d.masks[j])
        boxes.append(box)
        scores.append(score)
        classes.append(cls)
        if masks is not None:
            masks.append(mask)
    return Detections(np.array(boxes).reshape(-1, 4), np.array(scores, dtype=np.float64),
                      np.array(classes, dtype=np.int64), masks=masks)


def union_crop(a: tuple, b: tuple) -> tuple:
    """The union of two mask crops ``(bool (h, w), x, y)``, over the box that holds both."""
    (ma, xa, ya), (mb, xb, yb) = a, b
    x0, y0 = min(xa, xb), min(ya, yb)
    x1, y1 = max(xa + ma.shape[1], xb + mb.shape[1]), max(ya + ma.shape[0], yb + mb.shape[0])
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    out[ya - y0:ya - y0 + ma.shape[0], xa - x0:xa - x0 + ma.shape[1]] |= ma
    out[yb - y0:yb - y0 + mb.shape[0], xb - x0:xb - x0 + mb.shape[1]] |= mb
    return out, x0, y0


def rotated_nms(rboxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, match_metric: str = "IOU",
                match_threshold: float = 0.5, class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS of rotated boxes by their exact overlap.

    Args:
        rboxes: (n, 5) xywhr px.
        scores: (n,).
        cls: (n,) class indices; only boxes of one class suppress each other unless ``class_agnostic``.
        match_metric: ``IOU`` or ``IOS`` (intersection over the smaller box's area).
        match_threshold: a box is suppressed by a higher-scored kept box it overlaps by at least this.

    Returns:
        The kept indices, in descending order of score (stable).
    """
    import shapely

    n = len(scores)
    order = np.argsort(-np.asarray(scores), kind="stable")
    if n < 2:
        return order
    polygons = shapely.polygons(rbox_corners(rboxes))  # (n,)
    i, j = shapely.STRtree(polygons).query(polygons, predicate="intersects")  # touching pairs, both orders
    pair = i < j
    if not class_agnostic:
        pair &= cls[i] == cls[j]
    i, j = i[pair], j[pair]
    inter = shapely.area(shapely.intersection(polygons[i], polygons[j]))
    area = rboxes[:, 2] * rboxes[:, 3]
    denominator = area[i] + area[j] - inter if match_metric == "IOU" else np.minimum(area[i], area[j])
    overlap = np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)
    hit = overlap >= match_threshold
    a, b = np.concatenate([i[hit], j[hit]]), np.concatenate([j[hit], i[hit]])  # neighbours, both directions
    by_a = np.argsort(a, kind="stable")
    a, b = a[by_a], b[by_a]
    start = np.searchsorted(a, np.arange(n + 1))  # neighbours of k: b[start[k]:start[k + 1]]
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for k in order:
        if not suppressed[k]:
            keep.append(k)
            suppressed[b[start[k]:start[k + 1]]] = True
    return np.array(keep, dtype=np.int64)
