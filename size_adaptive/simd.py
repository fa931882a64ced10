"""SimD, the similarity distance of Shi et al. (IROS 2024), "Similarity Distance-Based Label Assignment for Tiny
Object Detection" (arXiv:2407.02394), for axis-aligned boxes, and its two constants fitted on training labels.

For boxes 1 and 2 with centres (x, y), widths w and heights h:

    D_loc   = sqrt( (m · (x1 - x2) / (w1 + w2))² + (n · (y1 - y2) / (h1 + h2))² )
    D_shape = sqrt( (m · (w1 - w2) / (w1 + w2))² + (n · (h1 - h2) / (h1 + h2))² )
    SimD    = exp(-(D_loc + D_shape))

Every offset is divided by the pair's own summed side, so SimD is scale-invariant (both boxes scaled by s: the same
value) and symmetric; it is 1 for identical boxes and never 0 but by float underflow. The paper fits m and n on the
training set as the mean of |x1 - x2| / (w1 + w2) and |y1 - y2| / (h1 + h2) over its ground-truth/anchor pairs. An
Ultralytics detector has anchor points, not anchor boxes, so ``fit_simd_constants`` takes the pairs of ground-truth
boxes of one training image instead (the other boxes a label is told apart from): the same statistic of the data's
object sizes and spacing, independent of the model. OBB is not covered (the paper defines SimD on axis-aligned
boxes).

Pure functions; this module does not import Ultralytics.

Shapes and units:
    boxes1, boxes2  (..., 4) xyxy in any one unit (px, grid units, normalised); broadcast against each other
    m, n            positive floats, no unit
    returns         (...) SimD in (0, 1], float32 (float64 for float64 input)
"""

from __future__ import annotations

import numpy as np
import torch

from .nwd import _safe_sqrt

MAX_LABELS_PER_IMAGE = 512  # fit_simd_constants: labels of one image paired (evenly spaced beyond this), O(n²) pairs


def simd(boxes1: torch.Tensor, boxes2: torch.Tensor, m: float, n: float) -> torch.Tensor:
    """SimD of matching pairs of boxes (the module docstring gives the equations).

    Args:
        boxes1: (..., 4) xyxy.
        boxes2: (..., 4) xyxy, broadcastable to ``boxes1``.
        m: the constant of x and w (> 0).
        n: the constant of y and h (> 0).

    Returns:
        (...) SimD in (0, 1]. Gradients are finite everywhere: at identical boxes (where the square roots are 0) and
        at zero-size boxes (a summed side of 0 is read as 1: its offsets are 0 or the boxes are degenerate).

    Example:
        >>> simd(torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([2.0, 0.0, 6.0, 4.0]), m=2.0, n=2.0)  # D_loc 0.5
        tensor(0.6065)
    """
    if boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ValueError(f"boxes: expected (..., 4) xyxy boxes; got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}")
    dtype = torch.promote_types(torch.promote_types(boxes1.dtype, boxes2.dtype), torch.float32)
    b1, b2 = boxes1.to(dtype), boxes2.to(dtype)
    wh1, wh2 = b1[..., 2:] - b1[..., :2], b2[..., 2:] - b2[..., :2]  # (..., 2)
    centre_offset = ((b1[..., :2] - b2[..., :2]) + (b1[..., 2:] - b2[..., 2:])) / 2  # (..., 2), 0 for equal boxes
    summed = wh1 + wh2
    summed = torch.where(summed > 0, summed, 1.0)  # (..., 2)
    mx, ny = m / summed[..., 0], n / summed[..., 1]  # (...) per pair; scalars, no tensor made for m and n
    location = _safe_sqrt((centre_offset[..., 0] * mx).square() + (centre_offset[..., 1] * ny).square())
    shape = _safe_sqrt(((wh1[..., 0] - wh2[..., 0]) * mx).square() + ((wh1[..., 1] - wh2[..., 1]) * ny).square())
    return torch.exp(-(location + shape))


def fit_simd_constants(images: list[np.ndarray]) -> tuple[float, float, int]:
    """m and n of SimD, fitted on training labels: the mean of |x_i - x_j| / (w_i + w_j) and |y_i - y_j| / (h_i + h_j)
    over the pairs i < j of boxes of one image (module docstring). Each ratio is scale-free, so the boxes may be in
    normalised or px coordinates (one per image); an image's labels beyond ``MAX_LABELS_PER_IMAGE`` are thinned to
    that many, evenly spaced.

    Args:
        images: per training image, its boxes (k, 4) xywh (centre, width, height).

    Returns:
        (m, n, the number of pairs).

    Raises:
        ValueError: no image has two boxes with a positive summed width and height (nothing to fit on).
    """
    sum_x = sum_y = 0.0
    pairs = 0
    for boxes in images:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) > MAX_LABELS_PER_IMAGE:
            boxes = boxes[np.linspace(0, len(boxes) - 1, MAX_LABELS_PER_IMAGE).round().astype(int)]
        i, j = np.triu_indices(len(boxes), k=1)
        if not len(i):
            continue
        a, b = boxes[i], boxes[j]
        sw, sh = a[:, 2] + b[:, 2], a[:, 3] + b[:, 3]
        ok = (sw > 0) & (sh > 0)
        sum_x += float((np.abs(a[ok, 0] - b[ok, 0]) / sw[ok]).sum())
        sum_y += float((np.abs(a[ok, 1] - b[ok, 1]) / sh[ok]).sum())
        pairs += int(ok.sum())
    if not pairs or not (sum_x > 0 and sum_y > 0):
        raise ValueError("size_assign: expected training images with at least two labelled boxes each to fit SimD's "
                         "constants on; got none (simd needs them; use size_assign=nwd or fixed)")
    return sum_x / pairs, sum_y / pairs, pairs
