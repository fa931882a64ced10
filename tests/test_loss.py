"""SizeAdaptiveDetectionLoss against stock v8DetectionLoss: the invariants of DESIGN.md, one test each."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.overrides import TorchFunctionMode
from ultralytics.utils.loss import E2ELoss

import helpers as h
from size_adaptive.diagnostics import OBJECTS, POSITIVES
from size_adaptive.loss import SizeAdaptiveDetectionLoss, build_criterion
from size_adaptive.weighting import anchor_weights

IMGSZ = 64  # 84 anchors: 64 at stride 8, 16 at 16, 4 at 32
# Image 0: a 20x20 px box (small at 32/96 px), image 1: a 40x40 px box (medium) and a 60x60 px box (large at 32/50).
BOXES = [[10, 10, 30, 30], [4, 4, 44, 44], [2, 2, 62, 62]]
IMAGE_IDX = [0, 1, 1]


def _batch():
    return h.batch(BOXES, IMGSZ, classes=[1, 3, 5], image_idx=IMAGE_IDX)


def _fg_mask(stock, p, b):
    """The assigner's foreground mask (bs, num_anchors), from the stock loss's own assignment."""
    return stock.get_assigned_targets_and_loss(p, b)[0][0]


def test_unit_weights_give_stock_loss_values_and_gradients():
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock, ours = h.stock_and_size(m, h.settings(weights=(1, 1, 1)))
    total_s, items_s, gs_s, gb_s = h.loss_and_grads(stock, p, b)
    total_o, items_o, gs_o, gb_o = h.loss_and_grads(ours, p, b)
    assert torch.equal(total_s, total_o)
    assert items_s.keys() == items_o.keys() and all(torch.equal(items_s[k], items_o[k]) for k in items_s)
    assert torch.equal(gs_s, gs_o) and torch.equal(gb_s, gb_o)


@pytest.mark.parametrize("weights", [(1, 1, 1), (3, 3, 3), (0.5, 0.5, 0.5)])
def test_equal_weights_with_size_norm_give_stock_loss_values_and_gradients(weights):
    # size_norm rescales equal weights c to c * (stock sum / (c * stock sum)) = 1: the stock loss, up to float rounding.
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock, ours = h.stock_and_size(m, h.settings(weights=weights, norm=True))
    total_s, items_s, gs_s, gb_s = h.loss_and_grads(stock, p, b)
    total_o, items_o, gs_o, gb_o = h.loss_and_grads(ours, p, b)
    torch.testing.assert_close(total_o, total_s, rtol=1e-6, atol=0)
    for k in items_s:
        torch.testing.assert_close(items_o[k], items_s[k], rtol=1e-6, atol=0)
    for g_o, g_s in ((gs_o, gs_s), (gb_o, gb_s)):  # rounding, relative to the largest gradient (sums cancel)
        torch.testing.assert_close(g_o, g_s, rtol=1e-5, atol=1e-6 * float(g_s.abs().max()))


def test_background_anchors_keep_stock_cls_loss():
    # d(loss)/d(score) of a background anchor only comes from its BCE term, normalised by the stock target_scores_sum.
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    for norm in (False, True):
        stock, ours = h.stock_and_size(m, h.settings(weights=(5.0, 3.0, 0.5), norm=norm))
        fg = _fg_mask(stock, p, b)
        gs_s, gs_o = h.loss_and_grads(stock, p, b)[2], h.loss_and_grads(ours, p, b)[2]
        bg = ~fg.unsqueeze(1).expand_as(gs_s)  # (bs, num_classes, num_anchors)
        assert bg.any() and torch.equal(gs_s[bg], gs_o[bg]), f"size_norm={norm}"


def test_size_norm_keeps_the_weighted_foreground_score_sum_stock_and_changes_the_balance():
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50), norm=True))
    captured = h.capture_assignment(ours)
    ours(p, b)
    *_, target_scores, fg, _ = captured["args"]
    score = target_scores.sum(-1)
    w = ours.anchor_weights
    torch.testing.assert_close((score * w).sum(), score.sum())  # the normaliser's sum is the stock one
    assert torch.equal(w[~fg], torch.ones_like(w[~fg]))
    ratios = sorted(set(torch.round(w[fg] / w[fg].min(), decimals=4).tolist()))
    assert ratios == [1.0, 2.0, 4.0]  # the balance 4 : 2 : 1 between the buckets is kept


def test_foreground_gradients_scale_per_anchor_with_its_bucket_weight():
    # Invariant 5: cls, box and DFL terms are weighted per anchor, not by a batch mean. With thresholds 32/50 px the
    # 20 px box is small (x4), the 40 px box medium (x2), the 60 px box large (x1): the three weights differ, so a
    # batch-mean scaling could not give these per-anchor ratios.
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    weights = (4.0, 2.0, 1.0)
    stock, ours = h.stock_and_size(m, h.settings(weights=weights, thresholds=(32, 50)))
    gs_s, gb_s = h.loss_and_grads(stock, p, b)[2:]
    gs_o, gb_o = h.loss_and_grads(ours, p, b)[2:]
    w = ours.anchor_weights  # (bs, num_anchors)
    fg = _fg_mask(stock, p, b)
    assert set(w[fg].tolist()) == set(weights)  # every bucket is present among the foreground anchors
    expected_scores = gs_s * w.unsqueeze(1)  # (bs, 1, num_anchors) against (bs, num_classes, num_anchors)
    expected_boxes = gb_s * w.unsqueeze(1)
    torch.testing.assert_close(gs_o, expected_scores, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(gb_o, expected_boxes, rtol=1e-5, atol=1e-9)


TERMS_ITEMS = {"cls": "cls_loss", "box": "box_loss", "dfl": "dfl_loss"}


@pytest.mark.parametrize("terms", [("box", "dfl"), ("box",), ("dfl",), ("cls",), ("cls", "dfl")])
@pytest.mark.parametrize("norm", [False, True])
def test_terms_not_listed_stay_exactly_stock_and_listed_ones_are_those_of_the_full_rule(terms, norm):
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    weights, thresholds = (4.0, 2.0, 1.0), (32, 50)
    stock, full = h.stock_and_size(m, h.settings(weights=weights, thresholds=thresholds, norm=norm))
    part_settings = h.settings(weights=weights, thresholds=thresholds, norm=norm, terms=terms)
    part = SizeAdaptiveDetectionLoss(m, settings=part_settings)
    _, items_s, gs_s, _ = h.loss_and_grads(stock, p, b)
    _, items_f, _, _ = h.loss_and_grads(full, p, b)
    _, items_p, gs_p, _ = h.loss_and_grads(part, p, b)
    for term, item in TERMS_ITEMS.items():
        expected = items_f[item] if term in terms else items_s[item]
        assert torch.equal(items_p[item], expected), term
        if term in terms:
            assert not torch.equal(items_p[item], items_s[item]), term  # the weights did act on it
    if "cls" not in terms:  # the classification gradient is the stock one everywhere, foreground included
        assert torch.equal(gs_p, gs_s)


def test_end_to_end_heads_weigh_only_the_listed_terms_in_both_branches():
    m = h.model("yolo26n.yaml")
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock = E2ELoss(m)
    box_only = build_criterion(m, h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50), terms=("box",)))
    _, items_s = stock(p, b)
    _, items_b = box_only(p, b)  # loss items of the one-to-one branch, as upstream reports them
    assert torch.equal(items_b["cls_loss"], items_s["cls_loss"])
    assert not torch.equal(items_b["box_loss"], items_s["box_loss"])
    assert all(branch.settings.terms == ("box",) for branch in (box_only.one2many, box_only.one2one))


def test_area_comes_from_assigned_pixel_boxes_without_stride_factor():
    # The assigner's target_bboxes are in px: a 20x20 px object weighs as small on every anchor that it is assigned
    # to, whatever that anchor's stride (the seed multiplied by the stride again: 160x160 px at stride 8 -> large).
    m = h.model()
    p, b = h.preds(m, 1, 320), h.batch([[100, 100, 120, 120]], 320)
    stock, ours = h.stock_and_size(m, h.settings())
    ours(p, b)
    (fg, _, target_bboxes, _, stride_tensor), *_ = stock.get_assigned_targets_and_loss(p, b)
    assert fg.any()
    assert torch.all(ours.anchor_weights[fg] == 2.0)
    torch.testing.assert_close(target_bboxes[fg], torch.tensor([[100.0, 100, 120, 120]]).expand(int(fg.sum()), 4))


def test_batch_without_ground_truth_is_finite_stock_and_backpropagates():
    m = h.model()
    p = h.preds(m, 2, IMGSZ)
    empty = h.batch(torch.zeros(0, 4), IMGSZ)
    stock, ours = h.stock_and_size(m, h.settings())
    total_s, _, gs_s, gb_s = h.loss_and_grads(stock, p, empty)
    total_o, _, gs_o, gb_o = h.loss_and_grads(ours, p, empty)
    assert torch.isfinite(total_o).all() and torch.equal(total_s, total_o)
    assert torch.isfinite(gs_o).all() and gs_o.abs().sum() > 0 and torch.equal(gs_s, gs_o)
    assert torch.equal(gb_s, gb_o)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_predictions_are_finite_and_backpropagate(dtype):
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ, dtype=dtype), _batch()
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings())
    total, _, gs, gb = h.loss_and_grads(ours, p, b)
    assert torch.isfinite(total).all() and torch.isfinite(gs).all() and torch.isfinite(gb).all()
    assert gs.dtype == dtype and gs.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_unit_weights_match_stock(dtype):
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ, dtype=dtype), _batch()
    stock, ours = h.stock_and_size(m, h.settings(weights=(1, 1, 1)))
    assert torch.equal(h.loss_and_grads(stock, p, b)[0], h.loss_and_grads(ours, p, b)[0])


class _RecordOps(TorchFunctionMode):
    """Records the name of every torch function and Tensor method called, and boolean-mask indexing."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        self.names.append(name)
        masks = [a for a in _flat(args[1:]) if isinstance(a, torch.Tensor) and a.dtype == torch.bool]
        if name == "__getitem__" and masks:
            self.names.append("boolean-mask-indexing")
        return func(*args, **(kwargs or {}))


def _flat(xs):
    for x in xs:
        if isinstance(x, (tuple, list)):
            yield from _flat(x)
        else:
            yield x


# Ops that wait for the device on CUDA: reading a value on the host, or a result whose shape depends on values.
SYNC_OPS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy", "unique",
            "masked_select", "argwhere", "boolean-mask-indexing"}


def _ops(criterion, p, b) -> Counter:
    with _RecordOps() as rec:
        criterion(p, b)
    return Counter(rec.names)


def _ops_of(unit, criterion, p, b) -> Counter:
    """The ops that one call of ``unit`` (an attribute of ``criterion``) records inside a criterion call."""
    names = [n for n, v in vars(criterion).items() if v is unit]
    recorded = Counter()

    class Recorded(torch.nn.Module):
        def forward(self, *args, **kwargs):
            with _RecordOps() as rec:
                out = unit(*args, **kwargs)
            recorded.update(rec.names)
            return out

    setattr(criterion, names[0], Recorded())
    try:
        criterion(p, b)
    finally:
        setattr(criterion, names[0], unit)
    return recorded


ALL_TERMS = ("cls", "box", "dfl")


@pytest.mark.parametrize("norm, terms", [(False, ALL_TERMS), (True, ALL_TERMS), (True, ("box",))])
def test_weighting_adds_no_host_device_sync(norm, terms):
    # Invariant 7, checked on CPU: the size-adaptive loss calls exactly the syncing ops that the stock loss calls
    # (upstream's own), no more; the recorder does see our weighting and counting (bucketize, scatter_add_). With one
    # of box/dfl weighted, BboxLoss runs twice: its syncs count twice, so only the other ops are compared there.
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock, ours = h.stock_and_size(m, h.settings(norm=norm, terms=terms))
    stock_ops, our_ops = _ops(stock, p, b), _ops(ours, p, b)
    assert our_ops["bucketize"] >= 1 and our_ops["scatter_add_"] >= 1
    if len(terms) == 3 or "box" not in terms and "dfl" not in terms:
        assert {k: our_ops[k] for k in SYNC_OPS} == {k: stock_ops[k] for k in SYNC_OPS}
    else:
        bbox_ops = _ops_of(stock.bbox_loss, stock, p, b)
        assert {k: our_ops[k] for k in SYNC_OPS} == {k: stock_ops[k] + bbox_ops[k] for k in SYNC_OPS}


def test_end_to_end_heads_weigh_both_branches():
    m = h.model("yolo26n.yaml")
    criterion = build_criterion(m, h.settings())
    assert isinstance(criterion, E2ELoss)
    assert isinstance(criterion.one2many, SizeAdaptiveDetectionLoss)
    assert isinstance(criterion.one2one, SizeAdaptiveDetectionLoss)
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock_total = E2ELoss(m)(p, b)[0].detach()
    unit = build_criterion(m, h.settings(weights=(1, 1, 1)))
    assert torch.equal(stock_total, unit(p, b)[0].detach())
    weighted = criterion(p, b)[0].detach()
    assert torch.isfinite(weighted).all() and not torch.equal(weighted, stock_total)
    for branch in (criterion.one2many, criterion.one2one):
        assert branch.size_counts[POSITIVES].sum() > 0  # both branches assigned and weighed foreground anchors


def test_weights_follow_the_rule_and_positives_are_counted_per_bucket():
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock, ours = h.stock_and_size(m, h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50)))
    ours(p, b)
    (fg, _, target_bboxes, _, _), *_ = stock.get_assigned_targets_and_loss(p, b)
    assert torch.equal(ours.anchor_weights, anchor_weights(target_bboxes, fg, (32, 50), (4.0, 2.0, 1.0)))
    w = ours.anchor_weights[fg]
    expected = torch.tensor([(w == 4).sum(), (w == 2).sum(), (w == 1).sum()], dtype=torch.float32)
    counts = ours.reset_size_counts()
    assert torch.equal(counts[POSITIVES], expected)
    assert torch.equal(counts[OBJECTS], torch.tensor([1.0, 1.0, 1.0]))  # one 20, 40 and 60 px object
    assert torch.equal(ours.size_counts, torch.zeros(5, 3))


def test_a_duplicated_label_is_counted_as_an_object_without_positive_anchors():
    # Two identical 20x20 px labels: the assigner gives each contested anchor to the gt of highest overlap, the
    # first of equals, so the duplicate gets no positive. A 40x40 px medium object in the other image gets some.
    m = h.model()
    p = h.preds(m, 2, IMGSZ)
    b = h.batch([[10, 10, 30, 30], [10, 10, 30, 30], [4, 4, 44, 44]], IMGSZ, image_idx=[0, 0, 1])
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings())
    ours(p, b)
    objects, unassigned, positives, score, _ = ours.reset_size_counts()
    assert objects.tolist() == [2.0, 1.0, 0.0] and unassigned.tolist() == [1.0, 0.0, 0.0]
    assert positives[0] > 0 and positives[1] > 0 and score[0] > 0 and positives[2] == 0


def test_original_space_thresholds_must_be_resolved_before_the_loss_is_built():
    from size_adaptive.settings import SizeSettings

    with pytest.raises(ValueError, match="size_thresholds"):
        SizeAdaptiveDetectionLoss(h.model(), settings=SizeSettings())


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs CUDA; the CPU proof is test_weighting_adds_no_host_device_sync")
@pytest.mark.parametrize("norm", [False, True])
def test_weighting_runs_under_cuda_sync_debug_mode_error(norm):
    m = h.model().cuda()
    p, b = h.preds(m, 2, IMGSZ), {k: v.cuda() for k, v in _batch().items()}
    p = {k: (v.cuda() if isinstance(v, torch.Tensor) else [f.cuda() for f in v]) for k, v in p.items()}
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings(norm=norm))
    captured = h.capture_assignment(ours)
    ours.get_assigned_targets_and_loss(p, b)
    gt_bboxes, mask_gt, target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx = captured["args"]
    pred_scores = torch.randn_like(target_scores, dtype=torch.float32)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ours.weigh(captured["pd_bboxes"], gt_bboxes, mask_gt, target_labels, target_bboxes, target_scores, fg_mask,
                   target_gt_idx)
        ours.bce(pred_scores, target_scores.float())
        ours.reset_size_counts()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml"])
def test_one_training_step_per_yolo_family(cfg):
    # model.loss() with our criterion installed, as the trainer does: finite, backpropagates into the weights, and
    # differs from the stock criterion's loss under non-unit weights.
    m = h.model(cfg, nc=4)
    imgs = torch.rand(2, 3, IMGSZ, IMGSZ)
    b = {**_batch(), "cls": torch.tensor([[0.0], [1.0], [3.0]]), "img": imgs}
    stock_total = m.init_criterion()(m(imgs), b)[0].detach()
    m.criterion = build_criterion(m, h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50)))
    m.zero_grad()
    total, items = m.loss(b)
    total.sum().backward()
    assert torch.isfinite(total).all() and all(torch.isfinite(v) for v in items.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters() if p.requires_grad)
    assert not torch.equal(total.detach(), stock_total)
    c = m.criterion
    parts = [c] if isinstance(c, SizeAdaptiveDetectionLoss) else [c.one2many, c.one2one]
    assert all(p.size_counts[POSITIVES].sum() > 0 for p in parts)
    del m.criterion


def _odd_batches():
    """(name, boxes xyxy px, image index) at IMGSZ 64 over 2 images; every case leaves image 1 without labels."""
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(3000, 2, generator=g) * 60
    tiny = torch.cat((xy, xy + 1 + torch.rand(3000, 2, generator=g) * 2), 1)  # 1-3 px boxes
    return {
        "image_without_labels": ([[10, 10, 30, 30]], [0]),
        "no_labels_at_all": (torch.zeros(0, 4), []),
        "zero_area_boxes": ([[10, 10, 10, 30], [20, 20, 40, 20], [5, 5, 25, 25]], [0, 0, 0]),
        "negative_area_box": ([[30, 30, 10, 10], [5, 5, 25, 25]], [0, 0]),
        "box_partly_outside": ([[-20, -10, 20, 30], [50, 50, 90, 80]], [0, 0]),
        "single_huge_box": ([[-100, -100, 200, 200]], [0]),
        "thousands_of_tiny_boxes": (tiny, [0] * len(tiny)),
    }


ODD = _odd_batches()


@pytest.mark.parametrize("case", ODD)
def test_odd_labels_give_a_finite_loss_that_backpropagates_and_is_stock_under_unit_weights(case):
    boxes, idx = ODD[case]
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), h.batch(boxes, IMGSZ, image_idx=idx)
    stock, unit = h.stock_and_size(m, h.settings(weights=(1, 1, 1)))
    weighted = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(2, 1.5, 1), norm=True))
    total_s, _, gs_s, gb_s = h.loss_and_grads(stock, p, b)
    total_u, _, gs_u, gb_u = h.loss_and_grads(unit, p, b)
    total_w, _, gs_w, gb_w = h.loss_and_grads(weighted, p, b)
    assert torch.isfinite(total_w).all() and torch.isfinite(gs_w).all() and torch.isfinite(gb_w).all()
    assert gs_w.abs().sum() > 0
    if torch.isfinite(total_s).all():
        assert torch.equal(total_s, total_u) and torch.equal(gs_s, gs_u) and torch.equal(gb_s, gb_u)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_step_under_cpu_autocast(dtype):
    # Autocast on CPU, as Ultralytics' trainer wraps forward + loss: finite and backpropagates.
    m = h.model()
    criterion = build_criterion(m, h.settings(norm=True))
    h.assert_finite_under_autocast(m, criterion, {**_batch(), "img": torch.rand(2, 3, IMGSZ, IMGSZ)}, dtype)


def _blend_by_hand(c, **kw):
    """Our box term with ``size_box_nwd=0.3`` against the hand formula gain · Σ_fg score_sum · ((1 - r)(1 - CIoU) +
    r(1 - NWD)) / target_scores_sum, NWD of the predicted and the assigned box (the assigner's own inputs) at C = ``c``
    (a function of the assigned boxes); returns our items, stock's, and the NWD sum with weights."""
    from size_adaptive.nwd import nwd

    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock = h.stock_and_size(m, h.settings(weights=(1, 1, 1)))[0]
    _, items_s = stock(p, b)
    r = 0.3
    ours = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(1, 1, 1), box_nwd=r, **kw))
    captured = h.capture_assignment(ours)
    _, items_o = ours(p, b)
    _, _, _, target_bboxes, target_scores, fg, _ = captured["args"]
    weight, pd, tg = target_scores.sum(-1)[fg], captured["pd_bboxes"][fg], target_bboxes[fg]
    term_nwd = ((1 - nwd(pd, tg, c(tg))) * weight).sum()
    expected = (1 - r) * items_s["box_loss"] + r * stock.hyp.box * term_nwd / target_scores.sum().clamp(min=1)
    torch.testing.assert_close(items_o["box_loss"], expected, rtol=1e-5, atol=0)
    return items_o, items_s, ((1 - nwd(pd, tg, 8.0)) * weight).sum(), term_nwd


def test_box_nwd_blends_the_box_term_by_hand():
    # C = 8 px: the box term by hand; the other terms stock.
    items_o, items_s, _, _ = _blend_by_hand(lambda boxes: 8.0, nwd_c=8.0)
    assert torch.equal(items_o["cls_loss"], items_s["cls_loss"])
    assert torch.equal(items_o["dfl_loss"], items_s["dfl_loss"])


def test_box_nwd_with_a_relative_c_uses_each_targets_own_side():
    # size_nwd_c=relative: C = k·sqrt(w·h) of each assigned box (k = 0.5), in the loss's grid units, which is the same
    # NWD as in px (scale-invariant).
    from size_adaptive.nwd import relative_c

    _, _, one_c, relative = _blend_by_hand(lambda boxes: relative_c(boxes, 0.5), nwd_c="relative", nwd_k=0.5)
    assert not torch.allclose(relative, one_c)  # the relative C is not some fixed C in disguise


@pytest.mark.parametrize("kw", [dict(assign="nwd", nwd_c="relative", box_nwd=0.2), dict(assign="nwd_small"),
                                dict(assign="simd", simd_mn=(6.0, 4.5))], ids=["relative", "nwd_small", "simd"])
@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo26n.yaml"])
def test_new_assigners_train_a_step_with_finite_loss_and_gradients(cfg, kw):
    m = h.model(cfg)
    criterion = build_criterion(m, h.settings(min_pos=2, **kw))
    h.assert_finite_under_autocast(m, criterion, {**_batch(), "img": torch.rand(2, 3, IMGSZ, IMGSZ)}, torch.bfloat16)


def test_box_nwd_keeps_the_size_weight_of_the_box_term():
    # Equal weights 3 on the box term scale both parts of the blended term by 3; unweighted, neither.
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    one = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(1, 1, 1), box_nwd=0.5))(p, b)[1]
    three = SizeAdaptiveDetectionLoss(m, settings=h.settings(weights=(3, 3, 3), box_nwd=0.5, terms=("box",)))(p, b)[1]
    torch.testing.assert_close(three["box_loss"], 3 * one["box_loss"], rtol=1e-5, atol=0)
    assert torch.equal(three["dfl_loss"], one["dfl_loss"]) and torch.equal(three["cls_loss"], one["cls_loss"])


@pytest.mark.parametrize("kw", [dict(assign="fixed"), dict(assign="nwd", min_pos=3), dict(box_nwd=0.2),
                                dict(assign="nwd_small", nwd_c="relative", box_nwd=0.2),
                                dict(assign="simd", simd_mn=(6.0, 4.5))],
                         ids=["fixed", "nwd_min_pos3", "box_nwd", "nwd_small_relative", "simd"])
def test_assignment_settings_add_no_host_device_sync_to_the_detection_loss(kw):
    m = h.model()
    p, b = h.preds(m, 2, IMGSZ), _batch()
    stock, ours = h.stock_and_size(m, h.settings(**kw))
    stock_ops, our_ops = _ops(stock, p, b), _ops(ours, p, b)
    assert {k: our_ops[k] for k in SYNC_OPS} == {k: stock_ops[k] for k in SYNC_OPS}
    # the recorder sees our code: the centre distances (norm) of the patched assigner, the exp of NWD
    assert our_ops["norm"] > stock_ops["norm"] or our_ops["exp"] > stock_ops["exp"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo26n.yaml"])
def test_assignment_settings_under_cpu_autocast_are_finite(cfg, dtype):
    m = h.model(cfg)
    criterion = build_criterion(m, h.settings(assign="nwd", min_pos=3, box_nwd=0.2, terms=("box", "dfl")))
    h.assert_finite_under_autocast(m, criterion, {**_batch(), "img": torch.rand(2, 3, IMGSZ, IMGSZ)}, dtype)


def test_nwd_settings_need_a_resolved_c():
    from size_adaptive.settings import SizeSettings

    settings = SizeSettings.from_dict({"size_space": "input", "size_box_nwd": 0.2})  # size_nwd_c auto, unresolved
    with pytest.raises(ValueError, match="size_nwd_c: expected C in network-input px"):
        SizeAdaptiveDetectionLoss(h.model(), settings=settings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; the CPU proof is "
                    "test_assignment_settings_add_no_host_device_sync_to_the_detection_loss")
def test_assigner_patches_and_nwd_run_under_cuda_sync_debug_mode_error():
    # Our parts of the patched assigner and the NWD box term (upstream's get_box_metrics syncs by itself: nonzero).
    from size_adaptive.assign import candidate_ranks, pair_centre_distances, top_up
    from size_adaptive.nwd import nwd

    g = torch.Generator().manual_seed(0)
    metric = (torch.rand(4, 6, 8400, generator=g) - 0.5).clamp(min=0).cuda()
    indices = tuple(torch.randint(0, n, (500,), generator=g).cuda() for n in (4, 6, 8400))
    anchors = (torch.rand(8400, 2, generator=g) * 640).cuda()
    gt = torch.cat((torch.rand(4, 6, 2, generator=g) * 600, torch.rand(4, 6, 2, generator=g) * 600 + 10), -1).cuda()
    mask_pos = torch.zeros(4, 6, 8400, dtype=torch.int8, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        distances = pair_centre_distances(anchors[indices[2]], gt[indices[0], indices[1]])
        _, pair_ranks = candidate_ranks(metric, indices, distances)
        top_up(mask_pos, indices, pair_ranks, 3)
        nwd(gt, gt.flip(1), 12.0).sum()
    finally:
        torch.cuda.set_sync_debug_mode("default")
