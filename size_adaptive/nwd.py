"""The Normalized Gaussian Wasserstein Distance (NWD) between boxes, in pixels.

Wang et al. 2021, "A Normalized Gaussian Wasserstein Distance for Tiny Object Detection": each box is a 2-D Gaussian
with its centre as mean and covariance diag(w²/4, h²/4) (rotated by the box angle for OBB); NWD = exp(-W2 / C), with W2
the 2-Wasserstein distance of the two Gaussians. Unlike IoU it is never zero and it stays smooth in the offset where
IoU is flat at 0, which is what tiny boxes need in assignment.

C is a length in the boxes' unit. We always compute in network-input px, whatever the stride of the anchor: the YOLO
forks that copy C = 12.8 apply it to stride-divided boxes, where it means about 102 px at stride 8 and 410 px at
stride 32.

One C for every object is biased against large ones: a 10 px offset reads the same on a 4 px and on a 100 px box.
``relative_c`` makes C the object's own size, C = k · sqrt(w·h) of the ground-truth box (``size_nwd_c=relative``,
``size_nwd_k``): NWD = exp(-W2 / (k · sqrt(w_gt · h_gt))) is then scale-invariant (both boxes scaled by s: W2 and C
both scale by s), so it is the same in px, grid units or normalised coordinates.

Pure tensor functions; this module does not import Ultralytics.

Shapes and units:
    boxes1, boxes2  (..., 4) xyxy px, or (..., 5) xywhr px (angle in radians, last); broadcast against each other
    c               scalar or tensor broadcastable to (...), px
    returns         (...) NWD in (0, 1], float32 (float64 for float64 input)
"""

from __future__ import annotations

import torch


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) with gradient 0 (not inf or NaN) at and below 0: W2² is 0 for identical or zero-size boxes."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


def wasserstein2_sq(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance between the boxes' Gaussians, px².

    Axis-aligned (xyxy): ‖c1 - c2‖² + ((w1 - w2)² + (h1 - h2)²) / 4.
    Rotated (xywhr): ‖μ1 - μ2‖² + Tr Σ1 + Tr Σ2 - 2·sqrt(Tr(Σ1Σ2) + 2·sqrt(det Σ1 · det Σ2)), with
    Σ = R(θ) diag(w²/4, h²/4) R(θ)ᵀ; for two 2×2 SPD matrices this is the closed form of the Bures term. At angle 0 it
    equals the axis-aligned formula; it is evaluated in a form without cancellation (below).
    """
    if boxes1.shape[-1] != boxes2.shape[-1] or boxes1.shape[-1] not in (4, 5):
        raise ValueError(
            f"boxes: expected (..., 4) xyxy or (..., 5) xywhr boxes of one format; got {tuple(boxes1.shape)} and "
            f"{tuple(boxes2.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(boxes1.dtype, boxes2.dtype), torch.float32)
    b1, b2 = boxes1.to(dtype), boxes2.to(dtype)
    if b1.shape[-1] == 4:
        # with d = b1 - b2 (xyxy): centre offset² + side difference² / 4 = ((d0 + d2)² + (d2 - d0)²) / 4 + (the same
        # in y) = (d0² + d1² + d2² + d3²) / 2: one pass over the coordinates
        return (b1 - b2).square().sum(-1) / 2
    sx1, sy1, sx2, sy2 = b1[..., 2] / 2, b1[..., 3] / 2, b2[..., 2] / 2, b2[..., 3] / 2  # (...) std devs, px
    # With Σ = R diag(sx², sy²) Rᵀ and Δ the angle between the boxes: Tr(Σ1Σ2) + 2·sqrt(det Σ1 det Σ2) = q² - e, with
    # q = sx1·sx2 + sy1·sy2 and e = sin²Δ·(sx1² - sy1²)(sx2² - sy2²). So the Bures term is
    # (sx1 - sx2)² + (sy1 - sy2)² + 2(q - sqrt(q² - e)), the last part written as 2e / (q + sqrt(q² - e)): no
    # cancellation of large terms in float32, and exactly 0 for identical boxes.
    q = sx1 * sx2 + sy1 * sy2
    e = torch.sin(b2[..., 4] - b1[..., 4]).square() * (sx1.square() - sy1.square()) * (sx2.square() - sy2.square())
    den = q + _safe_sqrt(q.square() - e)
    turn = 2 * e / torch.where(den > 0, den, 1.0)  # den is 0 only for two zero-size boxes, where e is 0 too
    bures = (sx1 - sx2).square() + (sy1 - sy2).square() + turn
    return (b1[..., :2] - b2[..., :2]).square().sum(-1) + bures.clamp(min=0)


def relative_c(gt_boxes: torch.Tensor, k: float, min_side: float = 1e-3) -> torch.Tensor:
    """NWD's C relative to each ground-truth box: k · sqrt(w·h), in the boxes' unit.

    Args:
        gt_boxes: (..., 4) xyxy or (..., 5) xywhr, in any one unit.
        k: the factor (> 0): NWD is 1/e at a W2 distance of k times the box's side.
        min_side: the side below which a box counts as that side (in the boxes' unit), so that C > 0 and NWD's
            gradients stay finite (at most 1 / (k · min_side)) at zero-size boxes.

    Returns:
        (...) C, in the boxes' unit, float32 (float64 for float64 input).
    """
    dtype = torch.promote_types(gt_boxes.dtype, torch.float32)
    b = gt_boxes.to(dtype)
    wh = b[..., 2:4] - b[..., :2] if b.shape[-1] == 4 else b[..., 2:4]
    return k * _safe_sqrt(wh[..., 0] * wh[..., 1]).clamp(min=min_side)


def nwd(boxes1: torch.Tensor, boxes2: torch.Tensor, c: float | torch.Tensor) -> torch.Tensor:
    """NWD = exp(-sqrt(W2²) / C) of matching pairs of boxes, pairwise over broadcast shapes.

    Args:
        boxes1: (..., 4) xyxy px or (..., 5) xywhr px.
        boxes2: the same format, broadcastable to ``boxes1``.
        c: C in px (> 0), a number or a tensor broadcastable to (...) (``relative_c`` of the ground truth); the W2
            distance at which NWD is 1/e.

    Returns:
        (...) NWD in (0, 1] (0 only by float underflow, beyond W2 ≈ 87 C in float32): 1 for identical boxes,
        symmetric for one C, and the same for the same pixel boxes at every stride. Gradients are finite everywhere,
        zero-size boxes included.

    Example:
        >>> nwd(torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([3.0, 0.0, 7.0, 4.0]), c=3.0)  # centres 3 px apart
        tensor(0.3679)
    """
    return torch.exp(-_safe_sqrt(wasserstein2_sq(boxes1, boxes2)) / c)
