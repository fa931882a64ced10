"""The size-adaptive trainers: Ultralytics' task trainers with the size-adaptive loss installed.

Everything but the loss is stock Ultralytics 8.4.190: the task's assigner, BCE, box terms, mask and keypoint terms, EMA,
AMP, mosaic closed for the last ``close_mosaic`` epochs, ``resume``, DDP. The model stays a stock task model (the
criterion is set on the instance and stripped by ``BaseTrainer.save_model``), so checkpoints load without this package.

``SizeAdaptiveTraining`` holds what every task shares; ``SizeAdaptiveTrainer`` (detect),
``SizeAdaptiveSegmentationTrainer``, ``SizeAdaptivePoseTrainer`` and ``SizeAdaptiveOBBTrainer`` put it in front of
the task's own trainer.
"""

from __future__ import annotations

import csv
import shutil
import statistics
from dataclasses import replace

from ultralytics.cfg import cfg2dict
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.models.yolo.pose import PoseTrainer
from ultralytics.models.yolo.segment import SegmentationTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK, YAML
from ultralytics.utils.loss import E2ELoss
from ultralytics.utils.torch_utils import unwrap_model

from .demo import DEMO_KEYWORDS, demo_task, resolve_data
from .diagnostics import DIAGNOSTICS_FILE, describe, diagnostic_columns, diagnostics, new_counts
from .loss import (
    SIZE_ADAPTIVE_LOSSES,
    AfterAssign,
    build_criterion,
    count_call,
    counted_loss,
    max_positives,
    size_losses,
    size_tiny_thresholds,
)
from .settings import KEYS, SizeSettings, split_size_keys
from .simd import fit_simd_constants
from .validator import (
    PREFIX,
    SizeAdaptiveOBBValidator,
    SizeAdaptivePoseValidator,
    SizeAdaptiveSegmentationValidator,
    SizeAdaptiveValidator,
    with_per_size_columns,
)



class SizeAdaptiveTraining:
    """Mixin for an Ultralytics task trainer: reads the ``size_*`` settings and trains with the size-adaptive loss.

    Args:
        cfg: base configuration, as for ``DetectionTrainer``; may hold ``size_*`` keys.
        overrides: Ultralytics keys plus the ``size_*`` keys; ``data="demo"`` (``demo-seg``, ...) selects demo data.
        _callbacks: as for ``DetectionTrainer``.

    Raises:
        ValueError: a ``size_*`` setting is invalid, before any run folder is created.
    """

    task = "detect"  # the Ultralytics task of the trainer this mixin is put in front of
    validator_class = None  # the task's validator (``get_validator``)
    per_size_map = False  # the validator reports COCO mAP small/medium/large (it needs save_json, turned on here)

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        base_size, base = split_size_keys(cfg2dict(cfg))
        size, overrides = split_size_keys(dict(overrides or {}))
        settings = SizeSettings.from_dict({**base_size, **size})  # raises before anything is written
        if "data" in overrides:
            check_demo_task(overrides["data"], self.task)
            overrides["data"] = resolve_data(overrides["data"])
        # The size keys join the *base* config so that get_cfg's key check accepts them and they reach args.yaml,
        # checkpoints ('train_args') and DDP workers (which rebuild the trainer from vars(args)) like stock keys.
        # save_json turns on the COCO evaluation that gives mAP small/medium/large per epoch (every box task).
        base = {**base, "save_json": True} if self.per_size_map else base
        self._new_run_folder = _is_new_run_folder({**base, **settings.as_args()}, overrides)
        super().__init__({**base, **settings.as_args()}, overrides, _callbacks)
        if self.resume:
            settings = self._settings_on_resume(settings, size)
        self.size_settings = settings

    def _settings_on_resume(self, requested: SizeSettings, given: dict) -> SizeSettings:
        """A resumed run keeps the settings (and resolved thresholds) of its checkpoint, as stock keys do."""
        recorded_keys = [k for k in KEYS if k in vars(self.args)]
        if not recorded_keys:  # a stock checkpoint: nothing recorded
            LOGGER.warning(f"{PREFIX} resuming a checkpoint without size settings; using {requested.describe()}")
            vars(self.args).update(requested.as_args())
            return requested
        # Keys added after the checkpoint was written (e.g. size_terms) take their defaults.
        recorded = SizeSettings.from_dict({k: vars(self.args)[k] for k in recorded_keys})
        vars(self.args).update(recorded.as_args())
        wanted, kept = SizeSettings.from_dict(given).as_args(), recorded.as_args()
        ignored = [k for k in given if wanted[k] != kept[k]]
        if ignored:
            LOGGER.warning(f"{PREFIX} resume ignores {ignored}, using the checkpoint's {recorded.describe()}")
        return recorded

    def _setup_train(self):
        """``BaseTrainer._setup_train`` (8.4.190); a refusal there (data-dependent settings, such as NWD's C from
        training labels that hold no box) removes the run folder that this trainer created, so that a refused run
        leaves nothing behind. A folder that existed before (``exist_ok``, ``resume``) is left as it is."""
        try:
            super()._setup_train()
        except Exception:
            if self._new_run_folder and RANK in {-1, 0}:
                shutil.rmtree(self.save_dir, ignore_errors=True)
            raise

    def resume_training(self, ckpt):
        """Follow ``BaseTrainer.resume_training`` (8.4.190), then resolve the thresholds and install our criterion.

        This is the last step of ``BaseTrainer._setup_train``: the data loaders (needed to resolve original-image
        thresholds), the class weights and the EMA exist, and a resumed end-to-end criterion has had its branch
        schedule restored, so installing here sees all of them.
        """
        super().resume_training(ckpt)
        self.size_settings = self._resolve_input_values(self.size_settings)
        for model in (unwrap_model(self.model), self.ema.ema):
            _install_criterion(model, self.size_settings)
        if self.per_size_map and self.metrics is not None and self.args.save_json:
            # Epochs that are not validated (val=False) carry the metrics row built in _setup_train, which lacks the
            # per-size keys a validation adds after the task's own metrics: give them their place in results.csv.
            self.metrics = with_per_size_columns(self.metrics, self.validator_class.per_size_kinds,
                                                 self.size_settings.bins)

    def _resolve_input_values(self, settings: SizeSettings) -> SizeSettings:
        """Resolve, once, what depends on the training data, record it in ``args`` and ``args.yaml`` and log it:
        original-image thresholds in network-input px (the train set's median resize factor), and NWD's C for
        ``size_nwd_c=auto`` (the training labels' mean box side in network-input px). A resumed run and DDP workers
        read the recorded values."""
        notes = []
        labels = None
        if settings.input_thresholds is None:
            labels = self.train_loader.dataset.labels
            settings, note = resolve_thresholds(settings, labels, self.args.imgsz)
            notes.append(note)
        if settings.uses_nwd and settings.nwd_input_c is None and not settings.nwd_relative:
            labels = labels or self.train_loader.dataset.labels
            c = mean_label_side(labels, self.args.imgsz, rotated=self.task == "obb")
            settings = replace(settings, nwd_input_c=c)
            notes.append(f" (NWD C: mean label side over {len(labels)} train images)")
        if settings.assign == "simd" and settings.simd_mn is None:
            labels = labels or self.train_loader.dataset.labels
            m, n, pairs = fit_simd_constants([lb["bboxes"] for lb in labels])
            settings = replace(settings, simd_mn=(m, n))
            notes.append(f" (SimD m, n: {pairs} label pairs of {len(labels)} train images)")
        if self.resume and not notes:
            notes.append(" (from the checkpoint)")
        self.args.size_input_thresholds = list(settings.input_thresholds)
        self.args.size_nwd_input_c = settings.nwd_input_c
        self.args.size_simd_mn = None if settings.simd_mn is None else list(settings.simd_mn)
        if RANK in {-1, 0}:
            YAML.save(self.save_dir / "args.yaml", vars(self.args))  # record the resolved values
            LOGGER.info(f"{PREFIX} imgsz {self.args.imgsz}: {settings.describe()}{''.join(notes)}")
        return settings

    def get_validator(self):
        """As the task trainer's ``get_validator`` (8.4.190), with args that hold no ``size_*`` keys.

        The validator re-checks its args against Ultralytics' keys (``get_cfg``). Every task gets the validator that
        reports mAP per size, in the bins of ``size_bins``.
        """
        args = split_size_keys(vars(self.args))[1]
        validator = self.validator_class(self.test_loader, save_dir=self.save_dir, args=args, _callbacks=self.callbacks)
        validator.size_bins = self.size_settings.bins
        return validator

    def save_metrics(self, metrics):
        """Add the epoch's size diagnostics to the ``results.csv`` row (``BaseTrainer.save_metrics``, 8.4.190)."""
        values = self.size_diagnostics()
        end2end = isinstance(getattr(unwrap_model(self.model), "criterion", None), E2ELoss)
        LOGGER.info(f"{PREFIX} {describe(values)}" + (" (one-to-many branch)" if end2end else ""))
        super().save_metrics({**metrics, **values})

    def size_diagnostics(self) -> dict[str, float]:
        """The ``size/*`` diagnostics of the assignments since the last call (then reset), see ``diagnostics``.

        The mean weight is that of the buckets (``size_weights``), before any ``size_norm`` scaling. End-to-end models
        report their one-to-many branch. Under DDP each rank counts its own batches; rank 0's are reported.
        """
        criterion = getattr(unwrap_model(self.model), "criterion", None)
        counted = counted_loss(criterion)
        counts = counted.size_counts.cpu() if counted is not None else None
        for loss in size_losses(criterion):
            loss.reset_size_counts()
        if counts is None:
            return {c: 0.0 for c in diagnostic_columns(self.size_settings.bins)}
        return diagnostics(counts, self.size_settings.weights)

    def plot_metrics(self):
        """``BaseTrainer.plot_metrics`` (results.png), then ``size_metrics.png``: per-size mAP and diagnostics."""
        super().plot_metrics()
        from .plots import plot_size_metrics

        plot_size_metrics(self.csv, on_plot=self.on_plot)

    def train(self):
        """Train as ``BaseTrainer.train``, then say where the run and its results are."""
        super().train()
        if RANK in {-1, 0}:
            LOGGER.info(
                f"{PREFIX} run folder {self.save_dir}\n"
                f"  results (per epoch{', incl. mAP small/medium/large' if self.per_size_map else ''}, and the size "
                f"diagnostics): {self.csv}\n"
                f"  weights: {self.best if self.best.exists() else self.last}"
            )


class SizeAdaptiveTrainer(SizeAdaptiveTraining, DetectionTrainer):
    """``DetectionTrainer`` with the size-adaptive loss and per-size mAP (COCO small/medium/large) every epoch.

    Example:
        >>> from ultralytics import YOLO
        >>> YOLO("yolo11n.yaml").train(trainer=SizeAdaptiveTrainer, data="demo", epochs=1, size_weights=[2, 1.5, 1])
    """

    validator_class = SizeAdaptiveValidator
    per_size_map = True


class SizeAdaptiveSegmentationTrainer(SizeAdaptiveTraining, SegmentationTrainer):
    """``SegmentationTrainer`` with the size-adaptive loss on the box part (mask terms stock), and box and mask mAP per
    size every epoch."""

    task, validator_class = "segment", SizeAdaptiveSegmentationValidator
    per_size_map = True


class SizeAdaptivePoseTrainer(SizeAdaptiveTraining, PoseTrainer):
    """``PoseTrainer`` with the size-adaptive loss on the box part (keypoint terms stock), and box mAP per size every
    epoch."""

    task, validator_class = "pose", SizeAdaptivePoseValidator
    per_size_map = True


class SizeAdaptiveOBBTrainer(SizeAdaptiveTraining, OBBTrainer):
    """``OBBTrainer`` with the size-adaptive loss on the rotated-box part (areas w·h of the rotated box), and
    rotated-box mAP per size every epoch."""

    task, validator_class = "obb", SizeAdaptiveOBBValidator
    per_size_map = True


TRAINERS = {  # Ultralytics task -> our trainer
    "detect": SizeAdaptiveTrainer,
    "segment": SizeAdaptiveSegmentationTrainer,
    "pose": SizeAdaptivePoseTrainer,
    "obb": SizeAdaptiveOBBTrainer,
}


def _is_new_run_folder(cfg: dict, overrides: dict) -> bool:
    """Whether the run folder that ``BaseTrainer.__init__`` (8.4.190) is about to create does not exist yet: the
    same ``get_save_dir`` of the same ``get_cfg``, asked before it is created."""
    from ultralytics.cfg import get_cfg, get_save_dir

    try:
        args = get_cfg(cfg, overrides)
    except Exception:  # noqa: BLE001 (the trainer's own get_cfg raises it again, with Ultralytics' message)
        return False
    return not args.resume and not get_save_dir(args).exists()


def check_demo_task(data, task: str) -> None:
    """Refuse a demo keyword whose labels are for another task (``data=demo`` for a segment model, say): a
    ``ValueError`` naming ``data``, the keyword for ``task`` and the one given."""
    given = demo_task(data)
    if given is not None and given != task:
        raise ValueError(f"data: expected the demo data of a {task} model, data={DEMO_KEYWORDS[task]}; got data={data} "
                         f"({given} labels)")


def resolve_thresholds(settings: SizeSettings, labels: list[dict], imgsz: int) -> tuple[SizeSettings, str]:
    """Original-image thresholds in network-input px, with the median resize factor imgsz / longest side of the
    training images; return the resolved settings and a note for the log."""
    factor = statistics.median(imgsz / max(lb["shape"]) for lb in labels)
    settings = replace(settings, input_thresholds=tuple(t * factor for t in settings.thresholds))
    return settings, f" (median resize factor {factor:.3f} over {len(labels)} train images)"


def mean_label_side(labels: list[dict], imgsz: int, rotated: bool = False) -> float:
    """The mean box side sqrt(w·h) of the training labels in network-input px (each image resized so that its longest
    side is ``imgsz``): NWD's C for ``size_nwd_c=auto``. Rotated boxes (OBB) use the w·h of their rotated rectangle.

    Raises:
        ValueError: the labels hold no box (C cannot be derived from them).
    """
    import numpy as np
    from ultralytics.utils.ops import xyxyxyxy2xywhr

    sides = []
    for lb in labels:
        h, w = lb["shape"]
        scale = imgsz / max(h, w)  # original px -> network-input px
        if rotated and len(lb.get("segments", [])):
            corners = np.stack(lb["segments"]).reshape(-1, 8) * np.array([w, h] * 4, dtype=np.float32)
            wh = xyxyxyxy2xywhr(corners)[:, 2:4]
        else:
            wh = np.asarray(lb["bboxes"], dtype=np.float64).reshape(-1, 4)[:, 2:4] * np.array([w, h])
        sides.append(np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 0, None)) * scale)
    sides = np.concatenate(sides) if sides else np.zeros(0)
    if not len(sides) or not sides.mean() > 0:
        raise ValueError("size_nwd_c: expected training labels with boxes to derive 'auto' from; got none (give a "
                         "number of px, e.g. size_nwd_c=12)")
    return float(sides.mean())


def _install_criterion(model, settings: SizeSettings) -> None:
    """Set ``model.criterion`` to the size-adaptive criterion, keeping an end-to-end criterion's branch schedule."""
    old, new = getattr(model, "criterion", None), build_criterion(model, settings)
    if isinstance(old, E2ELoss) and isinstance(new, E2ELoss):
        new.__dict__.update({k: v for k, v in vars(old).items() if k not in ("one2many", "one2one")})
    model.criterion = new


class _Observer:
    """Counts the assignments of a stock criterion per size bucket; the loss is untouched (``AfterAssign``)."""

    def __init__(self, criterion, thresholds, tiny_thresholds=None):
        loss = getattr(criterion, "one2many", criterion)
        self.ours = SIZE_ADAPTIVE_LOSSES[type(loss)]  # its area and overlap are those our counterpart uses
        self.thresholds = thresholds.to(loss.device)
        self.tiny_thresholds = None if tiny_thresholds is None else tiny_thresholds.to(loss.device)  # size_bins=aitod
        self.counts = new_counts(loss.device, "coco" if tiny_thresholds is None else "aitod")
        loss.assigner = AfterAssign(loss.assigner, self)
        self.loss = loss

    def __call__(self, pd_bboxes, gt_bboxes, mask_gt, target_labels, target_bboxes, target_scores, fg_mask,
                 target_gt_idx):
        count_call(self.counts, self.ours, self.thresholds, max_positives(self.loss, gt_bboxes), pd_bboxes, gt_bboxes,
                   mask_gt, target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx, self.tiny_thresholds)


def observe_assignment(model, settings: SizeSettings | None = None) -> None:
    """Record the assignment diagnostics of a stock Ultralytics training run (``yolo-sa compare``'s stock arms).

    Adds callbacks to ``model`` (an Ultralytics ``Model``): at the start of training the stock criterion is built as
    the first loss call would build it and its assigner observed; at the end of every epoch the ``size/*`` assignment
    diagnostics (thresholds and bins of ``settings``, resolved like ``SizeAdaptiveTrainer`` does) are appended to
    ``size_diagnostics.csv`` in the run folder. The trainer, the loss and every number they produce stay stock.
    """
    import torch

    settings = settings or SizeSettings()

    def on_train_start(trainer):
        resolved = settings
        if resolved.input_thresholds is None:
            resolved = resolve_thresholds(settings, trainer.train_loader.dataset.labels, trainer.args.imgsz)[0]
        m = unwrap_model(trainer.model)
        if getattr(m, "criterion", None) is None:
            m.criterion = m.init_criterion()  # what the first model.loss() call does
        trainer.size_observer = _Observer(m.criterion, torch.tensor(resolved.input_thresholds),
                                          size_tiny_thresholds(resolved))

    def on_train_epoch_end(trainer):
        observer = getattr(trainer, "size_observer", None)
        if observer is None or RANK not in {-1, 0}:
            return
        values = diagnostics(observer.counts.cpu())
        observer.counts.zero_()
        path = trainer.save_dir / DIAGNOSTICS_FILE
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch", *values])
            writer.writerow([trainer.epoch + 1, *(f"{v:.6g}" for v in values.values())])
        LOGGER.info(f"{PREFIX} stock assignment, {describe(values)}")

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_epoch_end", on_train_epoch_end)
