"""Shared builders for the loss tests: a small real model, a batch with known boxes, stock and size losses."""

from __future__ import annotations

import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.loss import v8DetectionLoss

from size_adaptive.loss import SizeAdaptiveDetectionLoss, build_criterion
from size_adaptive.settings import SizeSettings

_MODELS: dict = {}


def model(cfg: str = "yolo11n.yaml", nc: int = 10) -> DetectionModel:
    """A randomly initialised detection model in train mode, built from Ultralytics' yaml (no download)."""
    if (cfg, nc) not in _MODELS:
        level = LOGGER.level
        LOGGER.setLevel("ERROR")
        try:
            m = DetectionModel(cfg, nc=nc, verbose=False)
        finally:
            LOGGER.setLevel(level)
        m.args = get_cfg()
        _MODELS[cfg, nc] = m
    return _MODELS[cfg, nc].train()


def settings(weights=(2.0, 1.5, 1.0), thresholds=(32.0, 96.0), norm=False) -> SizeSettings:
    """Settings with thresholds in network-input px."""
    return SizeSettings(weights=tuple(weights), thresholds=tuple(thresholds), space="input", norm=norm,
                        input_thresholds=tuple(thresholds))


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


def preds(m: DetectionModel, bs: int, imgsz: int, dtype=torch.float32):
    """Training-mode head outputs of ``m`` on random images, as leaf tensors that collect gradients."""
    with torch.no_grad():
        out = m(torch.rand(bs, 3, imgsz, imgsz))
    out = out[1] if isinstance(out, tuple) else out
    return _leaves(out, dtype)


def _leaves(out, dtype):
    if isinstance(out, dict):
        return {k: _leaves(v, dtype) for k, v in out.items()}
    if isinstance(out, list):
        return [f.detach().to(dtype) for f in out]
    return out.detach().to(dtype).requires_grad_(True)


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


__all__ = ["batch", "build_criterion", "loss_and_grads", "model", "preds", "settings", "stock_and_size"]
