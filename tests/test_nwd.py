"""NWD against hand-computed values: identity, symmetry, range, pixel units at every stride, rotated Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from size_adaptive.nwd import nwd, wasserstein2_sq


def _xywhr(xyxy: torch.Tensor, angle: float = 0.0) -> torch.Tensor:
    centre, wh = (xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]
    return torch.cat((centre, wh, torch.full_like(wh[..., :1], angle)), -1)


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    return torch.cat((xy, xy + 0.5 + torch.rand(n, 2, generator=g) * 60), -1)  # (n, 4) xyxy px


def test_hand_computed_values():
    # Same 4x4 px box, centres 3 px apart: W2 = 3, so NWD at C = 3 is e^-1.
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([3.0, 0.0, 7.0, 4.0])
    assert nwd(a, b, 3.0).item() == pytest.approx(math.exp(-1))
    # 4x4 at (2, 2) against 8x8 at (4, 4): |dc|² = 8, ((4 - 8)² + (4 - 8)²) / 4 = 8, W2² = 16, W2 = 4; at C = 4: e^-1,
    # at C = 8: e^-0.5.
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([0.0, 0.0, 8.0, 8.0])
    assert wasserstein2_sq(a, b).item() == pytest.approx(16.0)
    assert nwd(a, b, 4.0).item() == pytest.approx(math.exp(-1))
    assert nwd(a, b, 8.0).item() == pytest.approx(math.exp(-0.5))


def test_identical_boxes_give_one_and_zero_size_boxes_too():
    boxes = torch.cat((_random_boxes(50, 0), torch.tensor([[5.0, 5.0, 5.0, 5.0]])))
    assert torch.equal(nwd(boxes, boxes, 12.8), torch.ones(51))
    rotated = _xywhr(boxes, 0.7)
    assert torch.equal(nwd(rotated, rotated, 12.8), torch.ones(51))


def test_symmetric_and_in_zero_one():
    a, b = _random_boxes(200, 1), _random_boxes(200, 2)
    for x, y in ((a, b), (_xywhr(a, 0.3), _xywhr(b, -1.2))):
        d = nwd(x, y, 10.0)
        assert torch.allclose(d, nwd(y, x, 10.0), rtol=0, atol=1e-6)
        assert (d > 0).all() and (d <= 1).all()
    far = nwd(torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([500.0, 500.0, 502.0, 502.0]), 12.0)
    assert 0 < far < 1e-20  # never zero where IoU is: 707 px apart


def test_pairwise_over_broadcast_shapes():
    a, b = _random_boxes(3, 3), _random_boxes(5, 4)
    table = nwd(a[:, None], b[None], 9.0)  # (3, 5)
    assert table.shape == (3, 5)
    assert torch.allclose(table[2, 4], nwd(a[2], b[4], 9.0))


def test_rotated_formula_equals_the_axis_aligned_one_at_angle_zero():
    a, b = _random_boxes(100, 5), _random_boxes(100, 6)
    assert torch.allclose(nwd(_xywhr(a), _xywhr(b), 16.0), nwd(a, b, 16.0), rtol=1e-5, atol=1e-6)


def test_rotated_gaussians_by_hand():
    # A 4x2 box turned by 90° is the 2x4 box: the same Gaussian, NWD 1. Against itself unturned:
    # Σ1 = diag(4, 1), Σ2 = diag(1, 4); W2² = 5 + 5 - 2·sqrt(Tr(Σ1Σ2) + 2·sqrt(det Σ1 det Σ2)) = 10 - 2·sqrt(8 + 8) = 2.
    wide = torch.tensor([10.0, 10.0, 4.0, 2.0, 0.0])
    turned = torch.tensor([10.0, 10.0, 4.0, 2.0, math.pi / 2])
    tall = torch.tensor([10.0, 10.0, 2.0, 4.0, 0.0])
    assert nwd(turned, tall, 3.0).item() == pytest.approx(1.0, abs=1e-6)
    assert wasserstein2_sq(wide, turned).item() == pytest.approx(2.0, abs=1e-5)
    assert nwd(wide, turned, 2.0).item() == pytest.approx(math.exp(-math.sqrt(2) / 2), abs=1e-6)
    # Turning both boxes of a pair by the same angle about their own centres changes nothing.
    a, b = _xywhr(_random_boxes(20, 7), 0.0), _xywhr(_random_boxes(20, 8), 0.0)
    a2, b2 = a.clone(), b.clone()
    a2[:, 4] += 0.9
    b2[:, 4] += 0.9
    assert torch.allclose(nwd(a2, b2, 10.0), nwd(a, b, 10.0), atol=1e-6)


def test_same_pixel_boxes_give_the_same_nwd_at_every_stride():
    # BboxLoss gets boxes divided by the stride; the loss takes NWD of those with C / stride (W2 scales with the
    # lengths, not with the angle), so C means the same pixels at stride 8 and 32. The forks' C = 12.8 on grid units
    # means 102.4 px at stride 8 (and 409.6 px at 32).
    a, b = _random_boxes(10, 9), _random_boxes(10, 10)
    per_stride = [nwd(a / s, b / s, 12.8 / s) for s in (8, 16, 32)]
    assert all(torch.allclose(x, nwd(a, b, 12.8), rtol=1e-5) for x in per_stride)
    assert torch.allclose(nwd(a / 8, b / 8, 12.8), nwd(a, b, 102.4), rtol=1e-5)
    ra, rb = _xywhr(a, 0.4), _xywhr(b, 1.0)
    grid, gridb = ra.clone(), rb.clone()
    grid[:, :4] /= 8
    gridb[:, :4] /= 8
    assert torch.allclose(nwd(grid, gridb, 12.8 / 8), nwd(ra, rb, 12.8), rtol=1e-5)
    strides = torch.tensor([8.0, 16.0, 32.0] * 3 + [8.0])  # one stride per box, C as a tensor
    assert torch.allclose(nwd(a / strides[:, None], b / strides[:, None], 12.8 / strides), nwd(a, b, 12.8), rtol=1e-5)


@pytest.mark.parametrize("rotated", [False, True])
def test_gradients_are_finite_for_zero_size_and_identical_boxes(rotated):
    pred = torch.tensor([[10.0, 10.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0], [3.0, 3.0, 3.0, 9.0]])
    target = torch.tensor([[10.0, 10.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 6.0, 6.0]])
    if rotated:
        pred, target = _xywhr(pred, 0.5), _xywhr(target, 0.0)
        target[:2, 4] = 0.5  # identical pairs stay identical
    pred.requires_grad_(True)
    nwd(pred, target, 8.0).sum().backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[2].abs().sum() > 0  # a real pull where the boxes differ


def test_float64_gradcheck():
    a = _random_boxes(6, 11).double().requires_grad_(True)
    b = _random_boxes(6, 12).double()
    assert torch.autograd.gradcheck(lambda x: nwd(x, b, 20.0), (a,))
    ra = _xywhr(_random_boxes(6, 13).double(), 0.3).requires_grad_(True)
    rb = _xywhr(_random_boxes(6, 14).double(), -0.8)
    assert torch.autograd.gradcheck(lambda x: nwd(x, rb, 20.0), (ra,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_boxes_are_computed_in_float32(dtype):
    a, b = _random_boxes(30, 15), _random_boxes(30, 16)
    out = nwd(a.to(dtype), b.to(dtype), 12.0)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out, nwd(a.to(dtype).float(), b.to(dtype).float(), 12.0))


def test_mixed_box_formats_are_refused():
    with pytest.raises(ValueError, match=r"boxes: expected \(\.\.\., 4\) xyxy or \(\.\.\., 5\) xywhr"):
        nwd(torch.zeros(3, 4), torch.zeros(3, 5), 1.0)


# size_nwd_c=relative: C = k * sqrt(w * h) of the ground truth (relative_c)


def test_relative_c_is_k_times_the_ground_truth_side():
    from size_adaptive.nwd import relative_c

    gt = torch.tensor([[0.0, 0.0, 4.0, 9.0], [10.0, 10.0, 10.0, 10.0]])  # sides 6 and 0 (floored)
    assert relative_c(gt, 2.0).tolist() == pytest.approx([12.0, 2e-3])
    assert relative_c(_xywhr(gt, 0.4), 2.0).tolist() == pytest.approx([12.0, 2e-3])
    # hand value: 4x4 box, a prediction 3 px off in x: W2 = 3, C = 1.5 * 4 = 6: e^-0.5
    a, b = torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([3.0, 0.0, 7.0, 4.0])
    assert nwd(a, b, relative_c(a, 1.5)).item() == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize("rotated", [False, True])
def test_relative_nwd_is_scale_invariant_symmetric_for_equal_areas_and_in_zero_one(rotated):
    from size_adaptive.nwd import relative_c

    gt, pd = _random_boxes(100, 5), _random_boxes(100, 6)
    if rotated:
        gt, pd = _xywhr(gt, 0.3), _xywhr(pd, 1.1)

    def rel(a, b):
        return nwd(a, b, relative_c(a, 1.0))

    value = rel(gt, pd)
    assert bool(((value > 0) & (value <= 1)).all())
    for s in (0.125, 4.0, 32.0):  # the boxes of another stride or image size
        scaled = torch.cat((gt[..., :4] * s, gt[..., 4:]), -1), torch.cat((pd[..., :4] * s, pd[..., 4:]), -1)
        assert torch.allclose(rel(*scaled), value, rtol=1e-5, atol=1e-30)
    # a fixed C is not: the same offset on a 4x larger pair reads lower
    assert bool((nwd(gt[..., :4] * 4, pd[..., :4] * 4, 12.8) < nwd(gt[..., :4], pd[..., :4], 12.8)).all())
    # symmetric where the formula is: boxes of equal area (a shifted copy)
    shifted = gt.clone()
    shifted[..., :2] += 2.5
    if not rotated:
        shifted[..., 2:4] += 2.5
    assert torch.allclose(rel(gt, shifted), rel(shifted, gt))


@pytest.mark.parametrize("rotated", [False, True])
def test_relative_nwd_has_finite_gradients_at_zero_size_boxes(rotated):
    from size_adaptive.nwd import relative_c

    gt = torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 6.0]], requires_grad=True)
    pd = torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.5, 6.0]], requires_grad=True)
    a, b = (_xywhr(gt), _xywhr(pd)) if rotated else (gt, pd)
    nwd(a, b, relative_c(a, 1.0)).sum().backward()
    assert torch.isfinite(gt.grad).all() and torch.isfinite(pd.grad).all()
