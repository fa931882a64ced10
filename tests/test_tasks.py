"""The size-adaptive segment, pose and OBB losses against their stock counterparts: the invariants, per task loss.

YOLO26 models have their own task losses (``SegmentLoss26``, ``PoseLoss26``) and end-to-end heads; each class is
tested on the head outputs of a model that uses it (an end-to-end model's one-to-many outputs).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from ultralytics.utils.loss import (
    E2ELoss,
    PoseLoss26,
    SegmentLoss26,
    v8DetectionLoss,
    v8OBBLoss,
    v8PoseLoss,
    v8SegmentationLoss,
)

import helpers as h
from size_adaptive.diagnostics import OBJECTS, POSITIVES, UNASSIGNED
from size_adaptive.loss import (
    SIZE_ADAPTIVE_LOSSES,
    SizeAdaptiveOBBLoss,
    SizeAdaptivePoseLoss26,
    SizeAdaptiveSegmentLoss26,
    build_criterion,
)
from test_loss import SYNC_OPS, _RecordOps

IMGSZ, NC = 64, 4
# Image 0: a 20 px box (small at 32/50); image 1: a 60 px box (large), drawn first, and a 40 px box (medium) on top.
BOXES, IMAGE_IDX, CLASSES = [[10, 10, 30, 30], [2, 2, 62, 62], [4, 4, 44, 44]], [0, 1, 1], [0, 1, 2]
CASES = {  # upstream class -> (model yaml, task)
    v8SegmentationLoss: ("yolo11n-seg.yaml", "segment"),
    SegmentLoss26: ("yolo26n-seg.yaml", "segment"),
    v8PoseLoss: ("yolo11n-pose.yaml", "pose"),
    PoseLoss26: ("yolo26n-pose.yaml", "pose"),
    v8OBBLoss: ("yolo11n-obb.yaml", "obb"),
}
CASES[(v8OBBLoss, "e2e")] = ("yolo26n-obb.yaml", "obb")  # v8OBBLoss inside YOLO26's end-to-end head
TASK_ITEMS = {"segment": ("seg_loss", "sem_loss"), "pose": ("pose_loss", "kobj_loss", "rle_loss"), "obb": ()}


def _setup(key, batch=None):
    """(model, upstream loss class, head outputs for it, batch) of a case."""
    cfg, task = CASES[key]
    upstream = key[0] if isinstance(key, tuple) else key
    m = h.model(cfg, nc=NC)
    p = h.preds(m, 2, IMGSZ)
    p = p.get("one2many", p)
    b = batch or h.task_batch(task, BOXES, IMGSZ, IMAGE_IDX, classes=CLASSES, angles=[0.3, 0.0, 1.1])
    return m, upstream, p, b


def _pair(m, upstream, **kw):
    """(stock loss, size-adaptive loss) of the same class on the same model."""
    settings = h.settings(thresholds=(32, 50), **kw)
    return upstream(m), SIZE_ADAPTIVE_LOSSES[upstream](m, settings=settings)


KEYS = list(CASES)
IDS = [f"{(k[0] if isinstance(k, tuple) else k).__name__}-{CASES[k][0]}" for k in KEYS]


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_unit_weights_give_the_stock_task_loss_values_and_gradients(key):
    m, upstream, p, b = _setup(key)
    stock, ours = _pair(m, upstream, weights=(1, 1, 1))
    total_s, items_s, grads_s = h.task_loss_and_grads(stock, p, b)
    total_o, items_o, grads_o = h.task_loss_and_grads(ours, p, b)
    assert torch.equal(total_s, total_o)
    assert items_s.keys() == items_o.keys() and all(torch.equal(items_s[k], items_o[k]) for k in items_s)
    assert len(grads_s) >= 3 and all(torch.equal(gs, go) for gs, go in zip(grads_s, grads_o))


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_weights_act_on_the_box_part_and_leave_mask_and_keypoint_terms_stock(key, norm):
    # Mask and keypoint terms are already normalised per object by its area upstream (the mask BCE is divided by
    # the box area, the keypoint distance by the area in the OKS-style loss): they stay exactly stock.
    m, upstream, p, b = _setup(key)
    stock, ours = _pair(m, upstream, weights=(4.0, 2.0, 1.0), norm=norm)
    _, items_s, _ = h.task_loss_and_grads(stock, p, b)
    _, items_o, _ = h.task_loss_and_grads(ours, p, b)
    task_items = [k for k in TASK_ITEMS[CASES[key][1]] if k in items_s]
    assert all(torch.equal(items_s[k], items_o[k]) for k in task_items), task_items
    assert not torch.equal(items_s["box_loss"], items_o["box_loss"])
    assert not torch.equal(items_s["cls_loss"], items_o["cls_loss"])
    assert (ours.size_counts[POSITIVES] > 0).all() and ours.size_counts[OBJECTS].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_background_anchors_keep_the_stock_cls_gradient(key):
    m, upstream, p, b = _setup(key)
    for norm in (False, True):
        stock, ours = _pair(m, upstream, weights=(5.0, 3.0, 0.5), norm=norm)
        captured = h.capture_assignment(ours)
        h.task_loss_and_grads(ours, p, b)
        fg = captured["args"][5]  # (bs, num_anchors)
        p["scores"].grad = None
        stock(p, b)[0].sum().backward()
        g_s = p["scores"].grad.clone()
        p["scores"].grad = None
        ours(p, b)[0].sum().backward()
        bg = ~fg.unsqueeze(1).expand_as(g_s)  # (bs, num_classes, num_anchors)
        assert bg.any() and torch.equal(g_s[bg], p["scores"].grad[bg]), f"size_norm={norm}"


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_batch_without_ground_truth_is_finite_stock_and_backpropagates(key):
    cfg, task = CASES[key]
    empty = h.task_batch(task, torch.zeros(0, 4), IMGSZ, [], angles=[])
    empty["batch_idx"] = torch.zeros(0)
    m, upstream, p, b = _setup(key, batch=empty)
    stock, ours = _pair(m, upstream)
    total_s, _, grads_s = h.task_loss_and_grads(stock, p, b)
    total_o, _, grads_o = h.task_loss_and_grads(ours, p, b)
    assert torch.isfinite(total_o).all() and torch.equal(total_s, total_o)
    assert all(torch.equal(gs, go) for gs, go in zip(grads_s, grads_o)) and any(g.abs().sum() > 0 for g in grads_o)


def _sync_ops(criterion, p, b) -> Counter:
    with _RecordOps() as rec:
        criterion(p, b)
    return Counter({k: v for k, v in Counter(rec.names).items() if k in SYNC_OPS})


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_the_weighting_adds_no_host_device_sync(key):
    # The syncing ops of the size-adaptive task loss are exactly the stock loss's own (upstream's), no more. For OBB
    # this covers the angle term's per-anchor weights, gathered without a boolean mask.
    m, upstream, p, b = _setup(key)
    for norm in (False, True):
        stock, ours = _pair(m, upstream, norm=norm)
        assert _sync_ops(ours, p, b) == _sync_ops(stock, p, b), f"size_norm={norm}"


def test_obb_area_is_that_of_the_rotated_box():
    # A 44x20 px box (880 px², small at 32/50) rotated by 45°: its axis-aligned hull (about 45x45 px, 2025 px²) would
    # be medium. Every anchor assigned to it must weigh as small.
    m = h.model("yolo11n-obb.yaml", nc=NC)
    p = h.preds(m, 1, IMGSZ)
    b = h.task_batch("obb", [[10, 22, 54, 42]], IMGSZ, [0], angles=[math.pi / 4])
    ours = SizeAdaptiveOBBLoss(m, settings=h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50)))
    captured = h.capture_assignment(ours)
    ours(p, b)
    fg = captured["args"][5]
    assert fg.any() and torch.all(ours.anchor_weights[fg] == 4.0)
    assert ours.size_counts[OBJECTS].tolist() == [1.0, 0.0, 0.0]


def test_obb_angle_term_follows_box_in_size_terms():
    m, upstream, p, b = _setup(v8OBBLoss)
    stock = v8OBBLoss(m)
    _, items_s = stock(p, b)
    for terms, weighted in ((("box",), True), (("cls", "dfl"), False)):
        ours = SizeAdaptiveOBBLoss(m, settings=h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50), terms=terms))
        _, items_o = ours(p, b)
        assert torch.equal(items_o["angle_loss"], items_s["angle_loss"]) is not weighted, terms


@pytest.mark.parametrize("cfg, branch", [("yolo26n-seg.yaml", SizeAdaptiveSegmentLoss26),
                                         ("yolo26n-pose.yaml", SizeAdaptivePoseLoss26),
                                         ("yolo26n-obb.yaml", SizeAdaptiveOBBLoss)])
def test_end_to_end_task_heads_weigh_both_branches_and_equal_stock_under_unit_weights(cfg, branch):
    m = h.model(cfg, nc=NC)
    task = {"seg": "segment", "pose": "pose", "obb": "obb"}[cfg.split("-")[1].split(".")[0]]
    p, b = h.preds(m, 2, IMGSZ), h.task_batch(task, BOXES, IMGSZ, IMAGE_IDX, classes=CLASSES, angles=[0.3, 0.0, 1.1])
    criterion = build_criterion(m, h.settings(thresholds=(32, 50)))
    assert isinstance(criterion, E2ELoss)
    assert type(criterion.one2many) is branch and type(criterion.one2one) is branch
    unit = build_criterion(m, h.settings(weights=(1, 1, 1), thresholds=(32, 50)))
    assert torch.equal(m.init_criterion()(p, b)[0].detach(), unit(p, b)[0].detach())
    criterion(p, b)
    assert all(loss.size_counts[POSITIVES].sum() > 0 for loss in (criterion.one2many, criterion.one2one))


@pytest.mark.parametrize("cfg", ["yolo11n-seg.yaml", "yolo26n-seg.yaml", "yolo11n-pose.yaml", "yolo26n-pose.yaml",
                                 "yolo11n-obb.yaml", "yolo26n-obb.yaml"])
def test_one_training_step_per_task_model(cfg):
    # model.loss() with our criterion installed, as the trainer does: finite, backpropagates into the weights.
    m = h.model(cfg, nc=NC)
    task = {"seg": "segment", "pose": "pose", "obb": "obb"}[cfg.split("-")[1].split(".")[0]]
    b = {**h.task_batch(task, BOXES, IMGSZ, IMAGE_IDX, classes=CLASSES, angles=[0.3, 0.0, 1.1]),
         "img": torch.rand(2, 3, IMGSZ, IMGSZ)}
    m.criterion = build_criterion(m, h.settings(weights=(4.0, 2.0, 1.0), thresholds=(32, 50), norm=True))
    m.zero_grad()
    total, items = m.loss(b)
    total.sum().backward()
    assert torch.isfinite(total).all() and all(torch.isfinite(v) for v in items.values())
    grads = [q.grad for q in m.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    del m.criterion


@pytest.mark.parametrize("kw", [dict(assign="nwd", nwd_c="relative", box_nwd=0.2), dict(assign="nwd_small")],
                         ids=["nwd_relative_box", "nwd_small"])
@pytest.mark.parametrize("cfg", ["yolo11n-obb.yaml", "yolo26n-obb.yaml"])
def test_relative_nwd_and_nwd_small_train_rotated_boxes(cfg, kw):
    # NWD of the rotated Gaussians with C relative to each object (assigner and box term), and nwd_small's mix with
    # ProbIoU: every object gets positives, the loss and the gradients are finite.
    m = h.model(cfg, nc=NC)
    b = {**h.task_batch("obb", BOXES, IMGSZ, IMAGE_IDX, classes=CLASSES, angles=[0.3, 0.0, 1.1]),
         "img": torch.rand(2, 3, IMGSZ, IMGSZ)}
    m.criterion = build_criterion(m, h.settings(weights=(1, 1, 1), thresholds=(32, 50), **kw))
    m.zero_grad()
    total, items = m.loss(b)
    total.sum().backward()
    assert torch.isfinite(total).all() and all(torch.isfinite(v) for v in items.values())
    assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)
    for loss in getattr(m.criterion, "one2one", None), getattr(m.criterion, "one2many", m.criterion):
        if loss is not None:
            assert loss.size_counts[UNASSIGNED].sum() == 0 and loss.size_counts[POSITIVES].sum() > 0
    del m.criterion


@pytest.mark.parametrize("cfg", ["yolo11n-cls.yaml"])
def test_a_task_without_boxes_has_no_size_adaptive_loss(cfg):
    from ultralytics.nn.tasks import ClassificationModel

    m = ClassificationModel(cfg, nc=NC, verbose=False)
    with pytest.raises(TypeError, match="no counterpart of v8ClassificationLoss"):
        build_criterion(m, h.settings())


@pytest.mark.parametrize("seed", range(3))
def test_foreground_gather_without_a_boolean_mask_equals_boolean_indexing(seed):
    from size_adaptive.loss import _at_foreground

    g = torch.Generator().manual_seed(seed)
    values, fg_mask = torch.rand(3, 50, generator=g), torch.rand(3, 50, generator=g) > 0.7
    n = int(fg_mask.sum())
    assert torch.equal(_at_foreground(values, fg_mask, n), values[fg_mask])


# Assignment and box-term settings (size_assign, size_min_pos, size_box_nwd), on every task loss.
ASSIGN_SETTINGS = {"fixed": dict(assign="fixed"), "nwd": dict(assign="nwd"), "fixed_min_pos3": dict(assign="fixed",
                   min_pos=3), "box_nwd": dict(box_nwd=0.5)}
NWD_REFUSED = {SegmentLoss26, PoseLoss26}  # their assigners' overlaps are mask IoU / keypoint OKS


def _setting_cases():
    for key in KEYS:
        for name, kw in ASSIGN_SETTINGS.items():
            upstream = key[0] if isinstance(key, tuple) else key
            if kw.get("assign") != "nwd" or upstream not in NWD_REFUSED:
                yield pytest.param(key, kw, id=f"{IDS[KEYS.index(key)]}-{name}")


SETTING_CASES = list(_setting_cases())


def _capture_stock(stock) -> dict:
    from size_adaptive.loss import AfterAssign

    captured = {}
    stock.assigner = AfterAssign(stock.assigner, lambda *a: captured.update(args=a[1:]))
    return captured


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_defaults_give_exactly_the_stock_assignment_tensors(key):
    m, upstream, p, b = _setup(key)
    stock, ours = _pair(m, upstream, weights=(1, 1, 1))
    cap_s, cap_o = _capture_stock(stock), h.capture_assignment(ours)
    stock(p, b)
    ours(p, b)
    assert len(cap_o["args"]) == 7 and all(torch.equal(s, o) for s, o in zip(cap_s["args"], cap_o["args"]))


@pytest.mark.parametrize("key, kw", SETTING_CASES)
def test_assignment_settings_train_and_keep_background_cls_gradients_stock(key, kw):
    # Anchors that are background under both the stock and the patched assignment get the stock cls gradient: the
    # settings change which anchors are positive, never the weight of the others. Only upstream's normaliser, the
    # target-score sum of the assignment, differs (NWD gives scores where CIoU gave 0): gradient x sum is stock.
    m, upstream, p, b = _setup(key)
    stock, ours = _pair(m, upstream, weights=(1, 1, 1), **kw)
    cap_s, cap_o = _capture_stock(stock), h.capture_assignment(ours)
    total, items, grads = h.task_loss_and_grads(ours, p, b)
    assert torch.isfinite(total).all() and all(torch.isfinite(v).all() for v in items.values())
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert ours.size_counts[OBJECTS].sum() == 3 and ours.size_counts[POSITIVES].sum() > 0
    p["scores"].grad = None
    stock(p, b)[0].sum().backward()
    g_s = p["scores"].grad.clone()
    p["scores"].grad = None
    ours(p, b)[0].sum().backward()
    bg = ~(cap_s["args"][5] | cap_o["args"][5]).unsqueeze(1).expand_as(g_s)  # (bs, num_classes, num_anchors)
    sum_s, sum_o = (cap["args"][4].sum().clamp(min=1) for cap in (cap_s, cap_o))
    assert bg.any() and torch.allclose(g_s[bg] * sum_s, p["scores"].grad[bg] * sum_o, rtol=1e-5, atol=0)
    if "box_nwd" in kw or kw["assign"] == "fixed":  # the same scores: exactly stock
        assert torch.equal(g_s[bg], p["scores"].grad[bg])


@pytest.mark.parametrize("key, kw", SETTING_CASES)
def test_assignment_settings_on_an_empty_batch_are_finite_and_stock(key, kw):
    cfg, task = CASES[key]
    empty = h.task_batch(task, torch.zeros(0, 4), IMGSZ, [], angles=[])
    empty["batch_idx"] = torch.zeros(0)
    m, upstream, p, b = _setup(key, batch=empty)
    stock, ours = _pair(m, upstream, weights=(1, 1, 1), **kw)
    total_s, _, grads_s = h.task_loss_and_grads(stock, p, b)
    total_o, _, grads_o = h.task_loss_and_grads(ours, p, b)
    assert torch.isfinite(total_o).all() and torch.equal(total_s, total_o)
    assert all(torch.equal(gs, go) for gs, go in zip(grads_s, grads_o))


@pytest.mark.parametrize("key, kw", SETTING_CASES)
def test_assignment_settings_add_no_host_device_sync(key, kw):
    m, upstream, p, b = _setup(key)
    stock, ours = _pair(m, upstream, **kw)
    assert _sync_ops(ours, p, b) == _sync_ops(stock, p, b)


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_box_nwd_zero_is_the_stock_loss_and_it_changes_only_the_box_term(key):
    m, upstream, p, b = _setup(key)
    stock, zero = _pair(m, upstream, weights=(1, 1, 1), box_nwd=0.0)
    total_s, items_s, grads_s = h.task_loss_and_grads(stock, p, b)
    total_z, items_z, grads_z = h.task_loss_and_grads(zero, p, b)
    assert torch.equal(total_s, total_z) and all(torch.equal(s, z) for s, z in zip(grads_s, grads_z))
    _, half = _pair(m, upstream, weights=(1, 1, 1), box_nwd=0.5)
    _, items_h, _ = h.task_loss_and_grads(half, p, b)
    assert not torch.equal(items_h["box_loss"], items_s["box_loss"])
    assert all(torch.equal(items_h[k], items_s[k]) for k in items_s if k != "box_loss")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", ["yolo11n-obb.yaml", "yolo11n-seg.yaml", "yolo26n-pose.yaml"])
def test_assignment_settings_under_cpu_autocast_stay_finite(cfg, dtype):
    m = h.model(cfg, nc=NC)
    task = {"seg": "segment", "pose": "pose", "obb": "obb"}[cfg.split("-")[1].split(".")[0]]
    b = {**h.task_batch(task, BOXES, IMGSZ, IMAGE_IDX, classes=CLASSES, angles=[0.3, 0.0, 1.1]),
         "img": torch.rand(2, 3, IMGSZ, IMGSZ)}
    assign = "fixed" if "26" in cfg else "nwd"
    criterion = build_criterion(m, h.settings(thresholds=(32, 50), assign=assign, min_pos=3, box_nwd=0.3))
    h.assert_finite_under_autocast(m, criterion, b, dtype)


@pytest.mark.parametrize("kw", [{}, {"assign": "fixed", "min_pos": 3}], ids=["stock", "fixed_min_pos3"])
@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_diagnostics_read_at_the_foreground_slots_equal_those_of_every_anchor(key, kw):
    # The loss counts the assignment on max_positives slots (here 2 images x 2 objects x (10 [+ 3]) < 168 anchors);
    # reading every anchor instead gives the same counts, the overlap included.
    from size_adaptive.diagnostics import new_counts
    from size_adaptive.loss import count_assignment, max_positives
    from size_adaptive.weighting import anchor_scores, size_buckets

    m, upstream, p, b = _setup(key)
    _, ours = _pair(m, upstream, **kw)
    cap, hook = {}, ours.assigner.hook  # copies: upstream scales some of these tensors in place after the assignment
    ours.assigner.hook = lambda *a: (cap.update(args=[t.clone() for t in a]), hook(*a))[1]
    ours(p, b)
    pd_bboxes, gt_bboxes, mask_gt, labels, target_bboxes, scores, fg_mask, target_gt_idx = cap["args"]
    bound = max_positives(ours, gt_bboxes)
    assert 0 < fg_mask.sum() <= bound < fg_mask.numel()
    gt_bucket, score = size_buckets(ours.box_areas(gt_bboxes), ours.size_thresholds), anchor_scores(scores, labels)
    every = count_assignment(new_counts(), ours.box_overlap, gt_bucket, mask_gt, pd_bboxes, target_bboxes,
                             fg_mask, target_gt_idx, score, fg_mask.numel())
    assert torch.allclose(ours.size_counts, every, rtol=1e-6, atol=0) and every[POSITIVES].sum() == fg_mask.sum()


@pytest.mark.parametrize("kw", [{}, {"assign": "fixed"}, {"min_pos": 5}, {"assign": "nwd", "min_pos": 10}])
def test_the_foreground_never_exceeds_max_positives_on_crowded_random_batches(kw):
    # Many overlapping objects of every size on few anchors (imgsz 128: 336 per image), random predictions: the
    # positives stay within the static bound that the diagnostics gather into (each is among an object's top-k or
    # one of its top-up anchors), also where stock gives a contested anchor to an object outside its top-k.
    from size_adaptive.loss import max_positives

    g = torch.Generator().manual_seed(0)
    m = h.model("yolo11n.yaml", nc=NC)
    p = h.preds(m, 2, 128)
    xy = torch.rand(24, 2, generator=g) * 100
    boxes = torch.cat((xy, xy + 2 + torch.rand(24, 2, generator=g) * 60), 1).clamp(max=128)
    b = h.batch(boxes, 128, classes=torch.randint(0, NC, (24,), generator=g).tolist(), image_idx=[0] * 4 + [1] * 20)
    _, ours = _pair(m, v8DetectionLoss, **kw)
    cap = h.capture_assignment(ours)
    ours(p, b)
    fg_mask, bound = cap["args"][5], max_positives(ours, cap["args"][0])
    assert 0 < fg_mask.sum() <= bound
    assert bound < fg_mask.numel() or kw.get("min_pos") == 10  # top-up 10: the bound covers every anchor here
