"""Shape walk-through of the size-adaptive loss at the user's case: bs 16, imgsz 640, 10 classes (VisDrone).

Run standalone (``python test_loss_dims.py``: prints each shape, exits 1 on a mismatch) or under pytest. It also
replays the seed patch's two shape errors, so they stay fixed:
  1. ``stride_tensor`` is 2-D (num_anchors, 1); the seed indexed it as 3-D.
  2. per-anchor weights (bs, num_anchors) times the cls loss (bs, num_anchors, num_classes) does not broadcast; the
     weights need a trailing axis: (bs, num_anchors, 1).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

BS, IMGSZ, NC, REG_MAX = 16, 640, 10, 16
STRIDES = (8, 16, 32)
NUM_ANCHORS = sum((IMGSZ // s) ** 2 for s in STRIDES)  # 80² + 40² + 20² = 8400


def walk(verbose: bool = True) -> dict[str, tuple[int, ...]]:
    """Run one loss call at the user's shapes and return the shape of every tensor along the way."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import LOGGER

    from size_adaptive.loss import SizeAdaptiveDetectionLoss
    from size_adaptive.settings import SizeSettings

    LOGGER.setLevel("ERROR")
    model = DetectionModel("yolo11n.yaml", nc=NC, verbose=False)
    model.args = get_cfg()
    loss = SizeAdaptiveDetectionLoss(model, settings=SizeSettings(space="input", input_thresholds=(32.0, 96.0)))

    g = torch.Generator().manual_seed(0)
    preds = {  # the Detect head's training outputs, shaped as Ultralytics 8.4 returns them
        "boxes": torch.randn(BS, 4 * REG_MAX, NUM_ANCHORS, generator=g, requires_grad=True),
        "scores": torch.randn(BS, NC, NUM_ANCHORS, generator=g, requires_grad=True),
        "feats": [torch.zeros(BS, 1, IMGSZ // s, IMGSZ // s) for s in STRIDES],
    }
    n = 40  # boxes per image, mostly small, as in drone imagery
    wh = torch.cat((torch.rand(BS * n, 2, generator=g) * 0.04, torch.rand(BS * 4, 2, generator=g) * 0.3))
    xy = 0.2 + torch.rand(len(wh), 2, generator=g) * 0.6
    batch_idx = torch.cat((torch.arange(BS).repeat_interleave(n), torch.arange(BS).repeat_interleave(4)))
    order = batch_idx.argsort(stable=True)  # Ultralytics' collate groups the labels by image
    batch = {
        "batch_idx": batch_idx[order].float(),
        "cls": torch.randint(0, NC, (len(wh), 1), generator=g).float(),
        "bboxes": torch.cat((xy, wh), 1)[order],
    }

    shapes: dict[str, tuple[int, ...]] = {}
    bce_forward = loss.bce.forward

    def record_bce(pred_scores, target_scores):
        out = bce_forward(pred_scores, target_scores)
        shapes["cls weights"] = tuple(loss.anchor_weights.unsqueeze(-1).expand_as(out).shape)
        shapes["weighted cls loss"] = tuple(out.shape)
        return out

    loss.bce.forward = record_bce
    assigned, total, _ = loss.get_assigned_targets_and_loss(preds, batch)
    fg_mask, _, target_bboxes, anchor_points, stride_tensor = assigned
    total.sum().backward()
    shapes.update(
        {
            "stride_tensor": tuple(stride_tensor.shape),
            "anchor_points": tuple(anchor_points.shape),
            "target_bboxes": tuple(target_bboxes.shape),
            "fg_mask": tuple(fg_mask.shape),
            "per-anchor weights": tuple(loss.anchor_weights.shape),
            "grad of scores": tuple(preds["scores"].grad.shape),
        }
    )
    if verbose:
        print(f"bs={BS} imgsz={IMGSZ} num_classes={NC} num_anchors={NUM_ANCHORS}")
        for k in sorted(shapes, key=list(EXPECTED).index):
            print(f"  {k:20s} {shapes[k]}")
        print(f"  foreground anchors   {int(fg_mask.sum())}, loss {total.detach().tolist()}")
    return shapes


EXPECTED = {
    "stride_tensor": (NUM_ANCHORS, 1),
    "anchor_points": (NUM_ANCHORS, 2),
    "target_bboxes": (BS, NUM_ANCHORS, 4),
    "fg_mask": (BS, NUM_ANCHORS),
    "per-anchor weights": (BS, NUM_ANCHORS),
    "cls weights": (BS, NUM_ANCHORS, NC),
    "weighted cls loss": (BS, NUM_ANCHORS, NC),
    "grad of scores": (BS, NC, NUM_ANCHORS),
}


def test_loss_shapes_at_bs16_imgsz640_10_classes():
    assert NUM_ANCHORS == 8400
    assert walk(verbose=False) == EXPECTED


def test_seed_error_1_stride_tensor_is_two_dimensional():
    stride_tensor = torch.ones(NUM_ANCHORS, 1)
    try:
        stride_tensor[:, :, 0]  # the seed's 3-D indexing
    except IndexError as e:
        assert "too many indices" in str(e)
    else:
        raise AssertionError("a 2-D stride_tensor accepted a 3-D index")


def test_seed_error_2_weights_need_a_class_axis():
    weights, cls_loss = torch.ones(BS, NUM_ANCHORS), torch.ones(BS, NUM_ANCHORS, NC)
    try:
        weights * cls_loss
    except RuntimeError as e:
        assert "must match the size of tensor" in str(e)
    else:
        raise AssertionError("(bs, num_anchors) x (bs, num_anchors, num_classes) broadcast unexpectedly")
    assert (weights.unsqueeze(-1) * cls_loss).shape == (BS, NUM_ANCHORS, NC)


if __name__ == "__main__":
    got = walk()
    bad = {k: (got.get(k), v) for k, v in EXPECTED.items() if got.get(k) != v}
    for k, (g, e) in bad.items():
        print(f"MISMATCH {k}: got {g}, expected {e}", file=sys.stderr)
    test_seed_error_1_stride_tensor_is_two_dimensional()
    test_seed_error_2_weights_need_a_class_axis()
    print("shape mismatches:", len(bad))
    sys.exit(1 if bad else 0)
