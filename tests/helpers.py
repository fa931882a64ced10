"""Shared builders for the loss tests: a small real model, a batch with known boxes, stock and size losses."""

from __future__ import annotations

import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel, OBBModel, PoseModel, SegmentationModel, guess_model_task
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import v8DetectionLoss

from size_adaptive.loss import SizeAdaptiveDetectionLoss, build_criterion
from size_adaptive.settings import SizeSettings

_MODELS: dict = {}
KPT_SHAPE = (4, 3)


def model(cfg: str = "yolo11n.yaml", nc: int = 10) -> DetectionModel:
    """A randomly initialised model of ``cfg``'s task in train mode, built from Ultralytics' yaml (no download).

    Pose models get the demo's 4 keypoints with visibility (``kpt_shape`` (4, 3)).
    """
    if (cfg, nc) not in _MODELS:
        task = guess_model_task(cfg)
        cls = {"detect": DetectionModel, "segment": SegmentationModel, "pose": PoseModel, "obb": OBBModel}[task]
        kwargs = {"data_kpt_shape": KPT_SHAPE} if task == "pose" else {}
        level = LOGGER.level
        LOGGER.setLevel("ERROR")
        try:
            m = cls(cfg, nc=nc, verbose=False, **kwargs)
        finally:
            LOGGER.setLevel(level)
        m.args = get_cfg()
        _MODELS[cfg, nc] = m
    return _MODELS[cfg, nc].train()


def settings(weights=(2.0, 1.5, 1.0), thresholds=(32.0, 96.0), norm=False, terms=("cls", "box", "dfl"),
             assign="stock", min_pos=0, box_nwd=0.0, nwd_c=8.0, nwd_k=1.0, simd_mn=None) -> SizeSettings:
    """Settings with thresholds and NWD's C in network-input px (``nwd_c="relative"``: k times each object's side)."""
    return SizeSettings(weights=tuple(weights), thresholds=tuple(thresholds), space="input", norm=norm,
                        terms=tuple(terms), assign=assign, min_pos=min_pos, box_nwd=box_nwd, nwd_c=nwd_c, nwd_k=nwd_k,
                        input_thresholds=tuple(thresholds), nwd_input_c=None if nwd_c == "relative" else nwd_c,
                        simd_mn=simd_mn)


def capture_assignment(criterion) -> dict:
    """Record the arguments of every call of ``criterion``'s assignment hook in the returned dict: ``args``
    (gt_bboxes, mask_gt, target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx) and ``pd_bboxes``."""
    captured, hook = {}, criterion.assigner.hook
    criterion.assigner.hook = lambda *a: (captured.update(pd_bboxes=a[0], args=a[1:]), hook(*a))[1]
    return captured


def batch(boxes_px, imgsz: int, classes=None, image_idx=None) -> dict:
    """A batch dict from xyxy px boxes, in Ultralytics' normalised xywh layout."""
    boxes = torch.as_tensor(boxes_px, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    xywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), 1) / imgsz
    return {
        "batch_idx": torch.as_tensor(image_idx if image_idx is not None else [0] * n, dtype=torch.float32),
        "cls": torch.as_tensor(classes if classes is not None else [1] * n, dtype=torch.float32).view(-1, 1),
        "bboxes": xywh,
    }


def task_batch(task: str, boxes_px, imgsz: int, image_idx, classes=None, angles=None,
               mask_size: int | None = None) -> dict:
    """A batch of ``task`` (detect, segment, pose, obb) from xyxy px boxes, with what the task's loss reads.

    segment: overlapping-mask layout (bs, imgsz/4, imgsz/4), each object's box filled with its 1-based index in its
    image, and per-pixel class maps (``sem_masks``); pose: 4 visible keypoints per object, the box's side midpoints;
    obb: xywhr boxes, the box rotated by ``angles`` (radians, 0 when omitted).
    """
    b = batch(boxes_px, imgsz, classes=classes, image_idx=image_idx)
    boxes = torch.as_tensor(boxes_px, dtype=torch.float32).reshape(-1, 4)
    bs = int(max(image_idx, default=0)) + 1
    if task == "segment":
        ms = mask_size or imgsz // 4
        masks, sem = torch.zeros(bs, ms, ms), torch.zeros(bs, ms, ms, dtype=torch.long)
        seen = [0] * bs
        cells = (boxes * ms / imgsz).round().long().tolist()  # (n, 4) in mask px
        for (x1, y1, x2, y2), i, c in zip(cells, image_idx, b["cls"].view(-1).long()):
            seen[i] += 1
            masks[i, y1:y2, x1:x2] = seen[i]
            sem[i, y1:y2, x1:x2] = c
        b.update(masks=masks, sem_masks=sem)
    elif task == "pose":
        x1, y1, x2, y2 = boxes.unbind(1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        xy = torch.stack([torch.stack(p, 1) for p in ((cx, y1), (x2, cy), (cx, y2), (x1, cy))], 1) / imgsz  # (n, 4, 2)
        b["keypoints"] = torch.cat((xy, torch.full_like(xy[..., :1], 2.0)), -1)  # (n, 4, 3)
    elif task == "obb":
        r = torch.as_tensor(angles if angles is not None else [0.0] * len(boxes), dtype=torch.float32).view(-1, 1)
        b["bboxes"] = torch.cat((b["bboxes"], r), 1)  # (n, 5) normalised xywh + r
    return b


def preds(m: DetectionModel, bs: int, imgsz: int, dtype=torch.float32):
    """Training-mode head outputs of ``m`` on random images, as leaf tensors that collect gradients."""
    with torch.no_grad():
        out = m(torch.rand(bs, 3, imgsz, imgsz))
    out = out[1] if isinstance(out, tuple) else out
    return _leaves(out, dtype)


def _leaves(out, dtype):
    if isinstance(out, dict):
        return {k: _leaves(v, dtype) for k, v in out.items()}
    if isinstance(out, list):  # feature maps: only their shapes are read
        return [f.detach().to(dtype) for f in out]
    if isinstance(out, tuple):  # YOLO26 segment: (proto, semantic logits)
        return tuple(_leaves(t, dtype) for t in out)
    return out.detach().to(dtype).requires_grad_(True)


def grad_leaves(p) -> list[torch.Tensor]:
    """The tensors of a ``preds`` structure that collect gradients, in a fixed order."""
    if isinstance(p, dict):
        return [t for k in sorted(p) for t in grad_leaves(p[k])]
    if isinstance(p, tuple):
        return [t for x in p for t in grad_leaves(x)]
    return [p] if isinstance(p, torch.Tensor) and p.requires_grad else []


def task_loss_and_grads(criterion, p, b):
    """(summed loss, loss items, gradients of every leaf of ``p``) of one criterion call."""
    leaves = grad_leaves(p)
    for t in leaves:
        t.grad = None
    total, items = criterion(p, b)
    total.sum().backward()
    return total.detach(), items, [t.grad.clone() if t.grad is not None else torch.zeros_like(t) for t in leaves]


def stock_and_size(m, size_settings):
    """(stock v8DetectionLoss, SizeAdaptiveDetectionLoss) for the same model."""
    return v8DetectionLoss(m), SizeAdaptiveDetectionLoss(m, settings=size_settings)


def loss_and_grads(criterion, p: dict, b: dict):
    """(summed loss, loss items, grad wrt scores, grad wrt boxes) of one criterion call."""
    for t in (p["scores"], p["boxes"]):
        t.grad = None
    total, items = criterion(p, b)
    total.sum().backward()
    return total.detach(), items, p["scores"].grad.clone(), p["boxes"].grad.clone()


def assert_finite_under_autocast(m: DetectionModel, criterion, b: dict, dtype: torch.dtype) -> None:
    """One CPU autocast forward and backward of ``m`` with ``criterion``: loss, its items and every gradient finite."""
    m.criterion = criterion
    m.zero_grad()
    try:
        with torch.autocast("cpu", dtype=dtype):
            total, items = m.loss(b)
        total.sum().backward()
    finally:
        del m.criterion
    assert torch.isfinite(total).all() and all(torch.isfinite(v) for v in items.values())
    assert all(torch.isfinite(q.grad).all() for q in m.parameters() if q.grad is not None)


__all__ = ["batch", "build_criterion", "loss_and_grads", "model", "preds", "settings", "stock_and_size"]

