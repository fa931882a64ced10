"""``SizeAdaptiveDetectionLoss``: Ultralytics' detection loss with a per-anchor weight from the object's size.

Follows ultralytics 8.4.190 ``v8DetectionLoss.get_assigned_targets_and_loss`` without overriding it. That method
assigns targets with ``self.assigner``, computes the classification BCE with ``self.bce`` and the CIoU + DFL terms
with ``self.bbox_loss``, then normalises by the stock ``target_scores_sum`` and applies the ``box/cls/dfl`` gains.
We wrap exactly those three units:

1. after the assignment, weigh every anchor by the size of its assigned box (``weighting.anchor_weights``);
2. multiply the per-element BCE (bs, num_anchors, num_classes) by its anchor's weight;
3. hand ``bbox_loss`` the target scores times the anchor weight: ``BboxLoss`` weighs each foreground anchor's CIoU
   and DFL term by the sum of its target scores, so this scales exactly that anchor's terms.

Everything else (assignment, normalisation, gains, class weights, the end-to-end branch schedule) stays upstream's,
so with all weights 1 the loss is the stock one, value for value. The weighting adds no host-device sync: no
``.item()``, no branch on a tensor value and no data-dependent shape.

Shapes (Ultralytics names): ``target_bboxes`` (bs, num_anchors, 4) xyxy px, ``target_scores``
(bs, num_anchors, num_classes), ``fg_mask`` (bs, num_anchors), ``anchor_weights`` (bs, num_anchors).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss

from .settings import SizeSettings
from .weighting import box_areas, bucket_counts, bucket_weights, size_buckets


class SizeAdaptiveDetectionLoss(v8DetectionLoss):
    """``v8DetectionLoss`` whose cls, box and DFL terms are weighted per anchor by the size of its assigned box.

    Args:
        model: the de-paralleled ``DetectionModel``; its ``args`` carry the stock gains and the ``size_*`` keys.
        tal_topk, tal_topk2: as in ``v8DetectionLoss``.
        settings: the size settings; read from ``model.args`` when omitted. Thresholds must be in network-input px
            (``size_space=input``, or resolved by ``SizeAdaptiveTrainer``).

    Attributes:
        anchor_weights: (bs, num_anchors) weights of the latest call (``size_norm`` factor included).
        fg_counts: (3,) foreground anchors in the small, medium and large buckets since the last
            ``reset_fg_counts()``, accumulated on the device.
    """

    def __init__(self, model: nn.Module, tal_topk: int = 10, tal_topk2: int | None = None, settings=None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.settings = settings or SizeSettings.from_args(self.hyp)
        if self.settings.input_thresholds is None:
            raise ValueError(
                "size_thresholds: expected thresholds in network-input px (size_space='input', or resolved from "
                "size_space='original' by SizeAdaptiveTrainer); got unresolved original-image thresholds "
                f"{list(self.settings.thresholds)}"
            )
        self.size_thresholds = torch.tensor(self.settings.input_thresholds, device=self.device)  # (2,) px
        self.size_weights = torch.tensor(self.settings.weights, device=self.device)  # (3,)
        self.anchor_weights = None
        self.fg_counts = torch.zeros(3, device=self.device)
        self.assigner = _WeighAfterAssign(self.assigner, self)
        self.bce = _AnchorWeightedBCE(self.bce, self)
        self.bbox_loss = _AnchorWeightedBboxLoss(self.bbox_loss, self)

    def weigh(self, target_bboxes: torch.Tensor, target_scores: torch.Tensor, fg_mask: torch.Tensor) -> torch.Tensor:
        """Compute and record this call's (bs, num_anchors) anchor weights from the assigner's output.

        This is ``weighting.anchor_weights`` step by step, keeping the buckets to count them.
        """
        bucket = size_buckets(box_areas(target_bboxes), self.size_thresholds)  # (bs, num_anchors)
        w = bucket_weights(bucket, fg_mask, self.size_weights)  # (bs, num_anchors)
        bucket_counts(bucket, fg_mask, out=self.fg_counts)
        if self.settings.norm:
            # Dividing by the weighted sum instead of the stock one: scale every anchor (background too) by
            # stock_sum / weighted_sum, since upstream divides by the stock target_scores_sum afterwards.
            ts = target_scores.sum(-1)  # (bs, num_anchors)
            w = w * (ts.sum().clamp(min=1) / (ts * w).sum().clamp(min=1))
        self.anchor_weights = w
        return w

    def reset_fg_counts(self) -> torch.Tensor:
        """Return the foreground anchor counts per bucket since the last reset, and start new ones."""
        counts, self.fg_counts = self.fg_counts, torch.zeros_like(self.fg_counts)
        return counts


class _WeighAfterAssign(nn.Module):
    """The stock assigner, followed by the owner's ``weigh`` on its output."""

    def __init__(self, assigner: nn.Module, owner: SizeAdaptiveDetectionLoss):
        super().__init__()
        self.inner, self.owner = assigner, owner

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        _, target_bboxes, target_scores, fg_mask, _ = out  # TaskAlignedAssigner.forward's five outputs
        self.owner.weigh(target_bboxes, target_scores, fg_mask)
        return out


class _AnchorWeightedBCE(nn.Module):
    """The stock per-element BCE, times the weight of each element's anchor."""

    def __init__(self, bce: nn.Module, owner: SizeAdaptiveDetectionLoss):
        super().__init__()
        self.inner, self.owner = bce, owner

    def forward(self, pred_scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
        loss = self.inner(pred_scores, target_scores)  # (bs, num_anchors, num_classes)
        # In place: a fresh tensor that BCE's backward does not need (it keeps its inputs, not its output).
        return loss.mul_(self.owner.anchor_weights.unsqueeze(-1).to(loss.dtype))  # (bs, num_anchors, 1)


class _AnchorWeightedBboxLoss(nn.Module):
    """The stock ``BboxLoss``, given target scores scaled by their anchor's weight."""

    def __init__(self, bbox_loss: nn.Module, owner: SizeAdaptiveDetectionLoss):
        super().__init__()
        self.inner, self.owner = bbox_loss, owner

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, *args, **kwargs):
        w = self.owner.anchor_weights.unsqueeze(-1).to(target_scores.dtype)  # (bs, num_anchors, 1)
        return self.inner(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores * w, *args, **kwargs)


def build_criterion(model: nn.Module, settings: SizeSettings | None = None):
    """Our counterpart of ``DetectionModel.init_criterion`` (ultralytics 8.4.190).

    End-to-end heads (YOLO26, ``one2one_cv2``) get ``E2ELoss`` with the size-adaptive loss in both branches.
    """
    loss_fn = functools.partial(SizeAdaptiveDetectionLoss, settings=settings)
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return E2ELoss(model, loss_fn=loss_fn)
    return loss_fn(model)


def size_losses(criterion) -> list[SizeAdaptiveDetectionLoss]:
    """The size-adaptive losses inside a criterion: itself, or both branches of an ``E2ELoss``."""
    parts = [criterion, getattr(criterion, "one2many", None), getattr(criterion, "one2one", None)]
    return [p for p in parts if isinstance(p, SizeAdaptiveDetectionLoss)]
