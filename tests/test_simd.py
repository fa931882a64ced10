"""SimD (``size_adaptive.simd``) against hand-computed values, its invariances, and its constants fitted on labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from size_adaptive.simd import fit_simd_constants, simd


def test_hand_computed_values():
    # 4x4 boxes, centres 2 px apart in x: D_loc = m * 2 / 8; D_shape = 0.
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([2.0, 0.0, 6.0, 4.0])
    assert simd(a, b, 2.0, 3.0).item() == pytest.approx(math.exp(-0.5))
    # 4x4 at (2, 2) against 4x8 at (2, 4) (xyxy 0,0,4,8): dx 0, dy 2, (w1+w2, h1+h2) = (8, 12), dh = -4.
    # D_loc = n * 2 / 12, D_shape = n * 4 / 12; at m = 5, n = 3: 0.5 + 1.0.
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([0.0, 0.0, 4.0, 8.0])
    assert simd(a, b, 5.0, 3.0).item() == pytest.approx(math.exp(-1.5))
    # both axes: 2x2 at (1, 1) and 4x2 at (4, 2) (xyxy 2,1,6,3): dx 3, dy 1, sums (6, 4), dw -2, dh 0;
    # m = 2, n = 4: D_loc = sqrt((2*3/6)² + (4*1/4)²) = sqrt(2), D_shape = 2*2/6 = 2/3.
    a, b = torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([2.0, 1.0, 6.0, 3.0])
    assert simd(a, b, 2.0, 4.0).item() == pytest.approx(math.exp(-(math.sqrt(2) + 2 / 3)))


def _boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat((xy, xy + 0.5 + torch.rand(n, 2, generator=g) * 30), -1)


def test_identity_symmetry_range_and_scale_invariance():
    a, b = _boxes(200, 0), _boxes(200, 1)
    assert torch.equal(simd(a, a, 6.1, 4.6), torch.ones(200))
    s = simd(a, b, 6.1, 4.6)
    assert torch.allclose(s, simd(b, a, 6.1, 4.6)) and bool(((s > 0) & (s <= 1)).all())
    for scale in (0.01, 3.0, 250.0):  # the same pairs in other units
        assert torch.allclose(simd(a * scale, b * scale, 6.1, 4.6), s, rtol=1e-5, atol=1e-7)
    # larger constants make the same offsets cost more
    assert bool((simd(a, b, 8.0, 6.0) <= s).all())


def test_gradients_are_finite_at_identical_and_zero_size_boxes():
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 4.0]], requires_grad=True)
    other = torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 3.0, 3.0], [1.0, 0.0, 1.0, 4.0]])
    simd(boxes, other, 6.0, 4.0).sum().backward()
    assert torch.isfinite(boxes.grad).all()


def test_low_precision_boxes_are_computed_in_float32():
    a, b = _boxes(20, 2), _boxes(20, 3)
    out = simd(a.half(), b.half(), 6.0, 4.0)
    assert out.dtype == torch.float32 and torch.allclose(out, simd(a.half().float(), b.half().float(), 6.0, 4.0))


def test_fit_takes_the_mean_ratio_over_the_pairs_of_each_image():
    # image 1: boxes (xywh) at x 0.1 and 0.5, widths 0.1 and 0.3 -> |dx| / (w1 + w2) = 0.4 / 0.4 = 1; y: 0.2 / 0.2 = 1
    # image 2: three boxes -> three pairs; image 3: one box, no pair.
    img1 = [[0.1, 0.1, 0.1, 0.1], [0.5, 0.3, 0.3, 0.1]]
    img2 = [[0.0, 0.0, 0.1, 0.1], [0.2, 0.0, 0.1, 0.1], [0.0, 0.3, 0.1, 0.1]]
    ratios_x = [1.0, 0.2 / 0.2, 0.0, 0.2 / 0.2]
    ratios_y = [1.0, 0.0, 0.3 / 0.2, 0.3 / 0.2]
    m, n, pairs = fit_simd_constants([np.array(img1), np.array(img2), np.array([[0.5, 0.5, 0.2, 0.2]])])
    assert pairs == 4 and m == pytest.approx(np.mean(ratios_x)) and n == pytest.approx(np.mean(ratios_y))
    # scale-free: the same boxes in px of a 640x480 image give the same constants
    px = [np.array(b) * [640, 480, 640, 480] for b in (img1, img2)]
    assert fit_simd_constants(px)[:2] == pytest.approx((m, n))


def test_fit_refuses_labels_without_a_pair():
    with pytest.raises(ValueError, match="size_assign: expected training images with at least two labelled boxes"):
        fit_simd_constants([np.zeros((1, 4)), np.zeros((0, 4))])
