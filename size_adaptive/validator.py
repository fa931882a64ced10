"""The task validators, reporting COCO mAP50-95 for small, medium and large objects (areas in original-image px).

Detect: Ultralytics 8.4.190 already evaluates any detection data set with faster-coco-eval when ``save_json=True``: it
builds the COCO ground truth from the validation labels in original-image pixels and adds ``metrics/mAP_small(B)``,
``metrics/mAP_medium(B)`` and ``metrics/mAP_large(B)`` (COCO areas: < 32², 32²..96², >= 96² original px) to the
stats.
``SizeAdaptiveValidator`` says so in one log line, writes them next to a standalone validation run, and keeps
faster-coco-eval's summary block (about 15 lines) out of the log during training: it is printed at the final
validation only.

Segment, pose and OBB: Ultralytics evaluates these with faster-coco-eval only on COCO's own annotation files. The
``PerSizeValidation`` validators record the ground truth of every validated image in original-image px, as the detect
validator does, pair it with Ultralytics' own COCO predictions (``jdict``) and evaluate it with
:func:`size_adaptive.per_size.coco_per_size`, under the same names, log line and file as detect:

    segment  box ``metrics/mAP_{size}(B)`` (area w·h) and mask ``metrics/mAP_{size}(M)`` (area: the mask's pixels)
    pose     box ``metrics/mAP_{size}(B)``
    OBB      rotated box ``metrics/mAP_{size}(B)`` (area w·h of the rotated box, exact rotated IoU)

``size_bins=aitod`` (the validators' ``size_bins``, set by the trainers, ``YOLO.val`` and ``yolo-sa compare``'s stock
arms) adds AI-TOD's very tiny (area < 8²) and tiny (8²..16²) as ``metrics/mAP_very_tiny(B)`` and ``metrics/mAP_tiny(B)``
(and ``(M)``), before the COCO columns, on custom data sets; detect then evaluates all five bins in one run of
:func:`~size_adaptive.per_size.coco_per_size` on the ground truth and predictions Ultralytics' evaluation would take.
"""

from __future__ import annotations

import contextlib
import json
import logging
from copy import copy

import numpy as np
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.models.yolo.obb import OBBValidator
from ultralytics.models.yolo.pose import PoseValidator
from ultralytics.models.yolo.segment import SegmentationValidator
from ultralytics.utils import LOGGER, RANK, colorstr, ops

from .per_size import FIELDS, coco_detections, coco_ground_truth, coco_per_size
from .weighting import AITOD_NAMES, bin_names

PER_SIZE_FILE = "per_size_metrics.json"
PREFIX = colorstr("size_adaptive:")  # the log prefix of the trainers and validators
KIND_NAMES = {"B": "", "M": "mask "}  # metric suffix -> the prefix of its log line and per_size_metrics.json keys


def per_size_columns(kinds, bins: str = "coco") -> list[str]:
    """The ``results.csv`` columns of the per-size mAP, in the order the validators add them, for ``kinds``
    (``(iou type, metric suffix)`` pairs) and ``size_bins`` (``aitod``: very_tiny and tiny before small)."""
    return [f"metrics/mAP_{b}({suffix})" for _, suffix in kinds for b in bin_names(bins)]


def with_per_size_columns(metrics: dict, kinds, bins: str = "coco") -> dict:
    """``metrics`` (a trainer's row of metric keys) with the per-size columns of ``kinds`` and ``bins`` (0.0 where
    absent) in ``per_size_columns`` order: where the first of them already is, else right after its last
    ``metrics/`` key, where a validation puts them.

    ``results.csv`` takes its header from its first row. Epochs that are not validated (``val=False``) carry the row
    that ``BaseTrainer._setup_train`` (8.4.190) builds from the validator's metric keys, without these columns: given
    their place, the validated rows' columns do not shift.
    """
    columns = per_size_columns(kinds, bins)
    keys = list(metrics)
    present = [k for k in keys if k in columns]
    metric_keys = [k for k in keys if k.startswith("metrics/")]
    i = keys.index(present[0]) if present else keys.index(metric_keys[-1]) + 1 if metric_keys else len(keys)
    rest = [k for k in keys if k not in columns]
    before = [k for k in keys[:i] if k not in columns]
    return {k: metrics.get(k, 0.0) for k in [*before, *columns, *rest[len(before):]]}


class SizeAdaptiveValidator(DetectionValidator):
    """``DetectionValidator`` that logs (and outside training saves) the per-size COCO mAP."""

    per_size_kinds = (("bbox", "B"),)  # (iou type, metric suffix): what Ultralytics' own detect evaluation adds
    size_bins = "coco"  # size_bins; "aitod" adds very_tiny and tiny (set by the trainer, YOLO.val, compare)

    def get_stats(self) -> dict:
        """``DetectionValidator.get_stats`` (8.4.190); for ``size_bins=aitod`` the very tiny and tiny columns too, in
        ``per_size_columns`` order: 0.0 until evaluated, as upstream's columns; -1 (n/a) on COCO and LVIS, which keep
        Ultralytics' own evaluation."""
        stats = super().get_stats()
        if self.size_bins != "coco" and self.args.save_json:
            fill = 0.0 if self.gdict else -1.0
            missing = {f"metrics/mAP_{b}(B)": fill for b in AITOD_NAMES if f"metrics/mAP_{b}(B)" not in stats}
            stats = with_per_size_columns({**stats, **missing}, self.per_size_kinds, self.size_bins)
        return stats

    def eval_json(self, stats: dict) -> dict:
        """Run ``DetectionValidator.eval_json`` (8.4.190), quietly during training, then report its per-size mAP."""
        with _quiet(LOGGER) if self.training else contextlib.nullcontext():
            stats = super().eval_json(stats)
        names = bin_names(self.size_bins)
        per_size = {k: stats[f"metrics/mAP_{k}(B)"] for k in names if f"metrics/mAP_{k}(B)" in stats}
        if per_size:
            report_per_size({"B": per_size}, None if self.training else self.save_dir)
        return stats

    def coco_evaluate(self, stats: dict, pred_json, anno_json, *args, **kwargs) -> dict:
        """``DetectionValidator.coco_evaluate`` (8.4.190). For ``size_bins=aitod`` on a custom data set (its
        in-memory ground truth ``gdict``, and the predictions ``eval_json`` paired with it) faster-coco-eval runs once,
        in ``coco_per_size`` with AI-TOD's area ranges added to COCO's: upstream's run would give only COCO's three,
        which the added ranges leave as they are. COCO and LVIS keep upstream's evaluation."""
        if self.size_bins == "coco" or not (self.args.save_json and self.gdict and len(self.jdict)
                                            and isinstance(pred_json, list)):
            return super().coco_evaluate(stats, pred_json, anno_json, *args, **kwargs)
        LOGGER.info("\nEvaluating faster-coco-eval mAP...")
        try:
            values = coco_per_size(anno_json, pred_json, "bbox", LOGGER.info, bins=self.size_bins)
        except Exception as e:  # as upstream: a failed evaluation does not end a training run
            LOGGER.warning(f"{PREFIX} per-size mAP ({self.size_bins} bins) unable to run: {e}")
            return stats
        stats.update({f"metrics/mAP_{b}(B)": values[b] for b in bin_names(self.size_bins)})
        return stats


class PerSizeValidation:
    """Mixin for a ``DetectionValidator`` subclass (segment, pose, OBB): per-size COCO mAP of custom data sets.

    Needs ``save_json=True`` (Ultralytics' COCO predictions); COCO and LVIS data keep Ultralytics' own evaluation.
    Each validated image's labels are recorded when ``update_metrics`` prepares them (``_prepare_batch``), in
    original-image px, with the number of predictions it added to ``jdict``. The evaluation runs at every validation
    during training (silently, as detect's) and at a standalone or final validation (``eval_json``), where
    faster-coco-eval's summary is printed and ``per_size_metrics.json`` written.
    """

    per_size_kinds: tuple[tuple[str, str], ...] = (("bbox", "B"),)  # (iou type, metric suffix)
    size_bins = "coco"  # size_bins; "aitod" adds very_tiny and tiny (set by the trainer, YOLO.val, compare)

    def init_metrics(self, model) -> None:
        """``init_metrics`` of the task validator (8.4.190), then an empty record of the labels."""
        super().init_metrics(model)
        self.per_size_on = bool(self.args.save_json) and not (self.is_coco or self.is_lvis)
        self.size_images: list[dict] = []  # per validated image: size, categories, labels per field, n_pred

    def _prepare_batch(self, si: int, batch: dict) -> dict:
        """The task validator's ``_prepare_batch`` (8.4.190); records the image's labels in original-image px.

        During training the same validator sees the same labels every epoch: they are converted once per image
        (masks resampled to original size and encoded are the costly part), as upstream builds detect's once.
        """
        pbatch = super()._prepare_batch(si, batch)
        if self.per_size_on:
            cache = self.__dict__.setdefault("_size_labels", {})
            key = pbatch["im_file"], tuple(pbatch["imgsz"]), len(pbatch["cls"])
            if key not in cache:
                h, w = (int(x) for x in pbatch["ori_shape"][:2])
                labels = {FIELDS[t]: LABELS[t](pbatch) for t, _ in self.per_size_kinds}
                category = [self.class_map[int(c)] for c in pbatch["cls"].tolist()]
                cache[key] = {"height": h, "width": w, "category_id": category, **labels}
            self.size_images.append({**cache[key], "n_pred": 0})
        return pbatch

    def update_metrics(self, preds: list[dict], batch: dict) -> None:
        """``DetectionValidator.update_metrics`` (8.4.190), then note how many ``jdict`` entries each image added.

        ``pred_to_json`` adds one entry per prediction of an image; if the counts and the entries ever disagree
        (an upstream change), the per-size evaluation is switched off with a warning rather than mispaired.
        """
        start, first = len(self.jdict), len(self.size_images)
        super().update_metrics(preds, batch)
        if not self.per_size_on:
            return
        counts = [len(p["cls"]) for p in preds]
        if len(self.size_images) - first != len(preds) or sum(counts) != len(self.jdict) - start:
            LOGGER.warning(f"{PREFIX} per-size mAP off: {len(self.jdict) - start} predictions recorded for "
                           f"{len(self.size_images) - first} images; expected {sum(counts)} for {len(preds)}")
            self.per_size_on = False
            return
        for image, count in zip(self.size_images[first:], counts):
            image["n_pred"] = count

    def gather_stats(self) -> None:
        """``gather_stats`` of the task validator (8.4.190); under DDP the recorded labels join rank 0's in rank
        order, as upstream gathers ``jdict``."""
        super().gather_stats()
        if RANK > -1:  # every rank takes part, whether or not its own evaluation is on
            import torch.distributed as dist

            gathered = [None] * dist.get_world_size() if RANK == 0 else None
            dist.gather_object(self.size_images, gathered, dst=0)
            self.size_images = [x for images in gathered for x in images] if RANK == 0 else []

    def get_stats(self) -> dict:
        """``get_stats`` of the task validator (8.4.190), plus the per-size columns (0.0 until evaluated, as detect
        adds them); evaluated here during training, and standalone when there were no predictions (upstream then
        skips ``eval_json``)."""
        stats = super().get_stats()
        if self.per_size_on:
            stats.update({c: 0.0 for c in per_size_columns(self.per_size_kinds, self.size_bins)})
            if self.training or not self.jdict:
                stats = self.per_size_metrics(stats)
        return stats

    def eval_json(self, stats: dict) -> dict:
        """``eval_json`` of the task validator (8.4.190; it evaluates COCO's own files only), then the per-size mAP."""
        stats = super().eval_json(stats)
        return self.per_size_metrics(stats) if self.per_size_on else stats

    def per_size_metrics(self, stats: dict) -> dict:
        """Evaluate the recorded labels against ``jdict`` per size, add ``metrics/mAP_{size}({suffix})`` to
        ``stats``, log them, and outside training save ``per_size_metrics.json``."""
        print_function = None if self.training else LOGGER.info
        results = {}
        try:
            for iou_type, suffix in self.per_size_kinds:
                gt = coco_ground_truth(self.size_images, iou_type, self.class_map)
                results[suffix] = coco_per_size(gt, coco_detections(self.size_images, self.jdict, iou_type), iou_type,
                                                print_function, bins=self.size_bins)
        except Exception as e:  # as DetectionValidator.coco_evaluate: a failed evaluation does not end a training run
            LOGGER.warning(f"{PREFIX} per-size mAP unable to run: {e}")
            return stats
        names = bin_names(self.size_bins)
        for suffix, values in results.items():
            stats.update({f"metrics/mAP_{b}({suffix})": values[b] for b in names})
        report_per_size({s: {b: v[b] for b in names} for s, v in results.items()},
                        None if self.training else self.save_dir)
        return stats


def _boxes_ltwh(pbatch: dict) -> list[list[float]]:
    """The labels' boxes in original-image px, ltwh, as ``DetectionValidator.update_metrics`` (8.4.190) builds them."""
    boxes = ops.scale_boxes(pbatch["imgsz"], pbatch["bboxes"].clone(), pbatch["ori_shape"], pbatch["ratio_pad"])
    return ops.xyxy2ltwh(boxes).tolist()


def _rboxes(pbatch: dict) -> list[list[float]]:
    """The labels' rotated boxes (xywhr) in original-image px, as ``OBBValidator.scale_preds`` (8.4.190) scales
    the predictions."""
    rboxes = ops.scale_boxes(pbatch["imgsz"], pbatch["bboxes"].clone(), pbatch["ori_shape"], pbatch["ratio_pad"],
                             xywh=True)
    return rboxes.tolist()


def _masks_rle(pbatch: dict) -> list[dict]:
    """The labels' masks in original-image px as COCO RLE, resampled exactly as ``SegmentationValidator.scale_preds``
    (8.4.190) resamples the predicted masks, so that a prediction equal to its label scores IoU 1."""
    from faster_coco_eval.core import mask as mask_utils

    masks = pbatch["masks"]  # (n, h, w) at network-input size, 0/1
    if len(pbatch["cls"]) == 0:
        return []
    masks = ops.scale_masks(masks[None], pbatch["ori_shape"], ratio_pad=pbatch["ratio_pad"])[0].byte()
    return mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy()))  # (H, W, n) column-major


LABELS = {"bbox": _boxes_ltwh, "rbox": _rboxes, "segm": _masks_rle}  # iou type -> the labels of a prepared image


class SizeAdaptiveSegmentationValidator(PerSizeValidation, SegmentationValidator):
    """``SegmentationValidator`` with box and mask mAP per size (``(B)``: box area w·h, ``(M)``: mask area)."""

    per_size_kinds = (("bbox", "B"), ("segm", "M"))


class SizeAdaptivePoseValidator(PerSizeValidation, PoseValidator):
    """``PoseValidator`` with box mAP per size (``(B)``; COCO's keypoint evaluation has no small range)."""

    per_size_kinds = (("bbox", "B"),)


class SizeAdaptiveOBBValidator(PerSizeValidation, OBBValidator):
    """``OBBValidator`` with rotated-box mAP per size (``(B)``: area w·h of the rotated box, exact rotated IoU)."""

    per_size_kinds = (("rbox", "B"),)


VALIDATORS = {  # Ultralytics task -> our validator
    "detect": SizeAdaptiveValidator,
    "segment": SizeAdaptiveSegmentationValidator,
    "pose": SizeAdaptivePoseValidator,
    "obb": SizeAdaptiveOBBValidator,
}


def per_size_in_stock_training(model, bins: str = "coco") -> None:
    """Let a stock Ultralytics training of a segment, pose or OBB model report mAP per size (``yolo-sa compare``'s
    stock arms; a stock detect run has COCO's already with ``save_json=True``, and gets ours for ``bins="aitod"``).

    Adds an ``on_pretrain_routine_end`` callback to ``model`` (an Ultralytics ``Model``) that replaces the stock
    trainer's validator with ours of the same task and ``size_bins``, built as the task trainer's ``get_validator``
    (8.4.190) builds it, and gives the metrics row its per-size columns (``with_per_size_columns``). Training, loss and
    checkpoints stay stock; without ``save_json=True`` nothing changes.
    """
    bin_names(bins)  # refuses unknown bins now, not in the callback

    def on_pretrain_routine_end(trainer):
        validator = VALIDATORS.get(trainer.args.task)
        if validator is None or (validator is SizeAdaptiveValidator and bins == "coco") or not trainer.args.save_json:
            return
        trainer.validator = validator(trainer.test_loader, save_dir=trainer.save_dir, args=copy(trainer.args),
                                      _callbacks=trainer.callbacks)
        trainer.validator.size_bins = bins
        if trainer.metrics is not None:
            trainer.metrics = with_per_size_columns(trainer.metrics, validator.per_size_kinds, bins)

    model.add_callback("on_pretrain_routine_end", on_pretrain_routine_end)


def describe_per_size(per_size: dict[str, float], kind: str = "B") -> str:
    """The per-size log line of a metric ``kind`` (``B`` box, ``M`` mask), every bin of ``per_size`` in its order;
    COCO's -1 (no objects of that size in the validation set) reads 'n/a (no objects)'."""
    values = "  ".join(f"{k.replace('_', ' ')} {'n/a (no objects)' if v < 0 else format(v, '.4f')}"
                       for k, v in per_size.items())
    areas = "COCO and AI-TOD areas" if any(b in per_size for b in AITOD_NAMES) else "COCO areas"
    return f"{KIND_NAMES[kind]}mAP50-95 by object size ({areas}, original px): {values}"


def report_per_size(per_size: dict[str, dict[str, float]], save_dir=None) -> None:
    """Log one line per metric kind (``{"B": {"small": ...}, "M": ...}``); with ``save_dir``, also write
    ``per_size_metrics.json`` there: ``mAP_{size}`` (box) and ``mask_mAP_{size}``."""
    for kind, values in per_size.items():
        LOGGER.info(f"{PREFIX} {describe_per_size(values, kind)}")
    if save_dir is not None:
        path = save_dir / PER_SIZE_FILE
        names = {k: KIND_NAMES[k].replace(" ", "_") for k in per_size}  # "", "mask_"
        saved = {f"{names[k]}mAP_{b}": v for k, values in per_size.items() for b, v in values.items()}
        path.write_text(json.dumps(saved, indent=2) + "\n")
        LOGGER.info(f"{PREFIX} per-size metrics saved to {path}")


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """Drop the logger's INFO records (faster-coco-eval's summary goes through it); warnings still pass."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
