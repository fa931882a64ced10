"""``SizeAdaptiveTrainer``: the stock ``DetectionTrainer`` with the size-adaptive loss installed.

Everything but the loss is stock Ultralytics 8.4.190: TaskAlignedAssigner, BCE, CIoU + DFL, EMA, AMP, mosaic closed for
the last ``close_mosaic`` epochs, ``resume``, DDP. The model stays a stock ``DetectionModel`` (the criterion is set
on the instance and stripped by ``BaseTrainer.save_model``), so checkpoints load without this package.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import torch
from ultralytics.cfg import cfg2dict
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK, YAML, colorstr
from ultralytics.utils.loss import E2ELoss
from ultralytics.utils.torch_utils import unwrap_model

from .demo import resolve_data
from .loss import build_criterion, size_losses
from .settings import KEYS, SizeSettings, split_size_keys
from .validator import SizeAdaptiveValidator
from .weighting import BUCKET_NAMES

PREFIX = colorstr("size_adaptive:")
DIAGNOSTIC_COLUMNS = ("size/fg_small", "size/fg_medium", "size/fg_large", "size/mean_fg_weight")


class SizeAdaptiveTrainer(DetectionTrainer):
    """A ``DetectionTrainer`` that reads the ``size_*`` settings and trains with ``SizeAdaptiveDetectionLoss``.

    Args:
        cfg: base configuration, as for ``DetectionTrainer``; may hold ``size_*`` keys.
        overrides: Ultralytics keys plus the ``size_*`` keys; ``data="demo"`` selects the built-in demo data.
        _callbacks: as for ``DetectionTrainer``.

    Raises:
        ValueError: a ``size_*`` setting is invalid, before any run folder is created.

    Example:
        >>> from ultralytics import YOLO
        >>> YOLO("yolo11n.yaml").train(trainer=SizeAdaptiveTrainer, data="demo", epochs=1, size_weights=[2, 1.5, 1])
    """

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        base_size, base = split_size_keys(cfg2dict(cfg))
        size, overrides = split_size_keys(dict(overrides or {}))
        settings = SizeSettings.from_dict({**base_size, **size})  # raises before anything is written
        if "data" in overrides:
            overrides["data"] = resolve_data(overrides["data"])
        # The size keys join the *base* config so that get_cfg's key check accepts them and they reach args.yaml,
        # checkpoints ('train_args') and DDP workers (which rebuild the trainer from vars(args)) like stock keys.
        # save_json turns on Ultralytics' own COCO evaluation, which gives mAP small/medium/large per epoch.
        super().__init__({**base, "save_json": True, **settings.as_args()}, overrides, _callbacks)
        if self.resume:
            settings = self._settings_on_resume(settings, size)
        self.size_settings = settings

    def _settings_on_resume(self, requested: SizeSettings, given: dict) -> SizeSettings:
        """A resumed run keeps the settings (and resolved thresholds) of its checkpoint, as stock keys do."""
        if not any(k in vars(self.args) for k in KEYS):  # a stock checkpoint: nothing recorded
            LOGGER.warning(f"{PREFIX} resuming a checkpoint without size settings; using {requested.describe()}")
            vars(self.args).update(requested.as_args())
            return requested
        recorded = SizeSettings.from_args(self.args)
        wanted, kept = SizeSettings.from_dict(given).as_args(), recorded.as_args()
        ignored = [k for k in given if wanted[k] != kept[k]]
        if ignored:
            LOGGER.warning(f"{PREFIX} resume ignores {ignored}, using the checkpoint's {recorded.describe()}")
        return recorded

    def resume_training(self, ckpt):
        """Follow ``BaseTrainer.resume_training`` (8.4.190), then resolve the thresholds and install our criterion.

        This is the last step of ``BaseTrainer._setup_train``: the data loaders (needed to resolve original-image
        thresholds), the class weights and the EMA exist, and a resumed end-to-end criterion has had its branch
        schedule restored, so installing here sees all of them.
        """
        super().resume_training(ckpt)
        self.size_settings = self._resolve_input_thresholds(self.size_settings)
        for model in (unwrap_model(self.model), self.ema.ema):
            _install_criterion(model, self.size_settings)
        if self.metrics is not None and self.args.save_json:
            # results.csv takes its header from the first row. Epochs that are not validated (val=False) carry the
            # metrics dict built here, which lacks the per-size keys that a validation adds after mAP50-95: give
            # them their place now, or the validated rows' columns would shift.
            keys = list(self.metrics)
            i = keys.index("metrics/mAP50-95(B)") + 1 if "metrics/mAP50-95(B)" in keys else len(keys)
            per_size = [f"metrics/mAP_{x}(B)" for x in BUCKET_NAMES]
            self.metrics = {k: self.metrics.get(k, 0.0) for k in [*keys[:i], *per_size, *keys[i:]]}

    def _resolve_input_thresholds(self, settings: SizeSettings) -> SizeSettings:
        """Convert original-image thresholds to network-input px once, with the train set's median resize factor."""
        note = ""
        if settings.input_thresholds is None:
            labels = self.train_loader.dataset.labels
            factor = statistics.median(self.args.imgsz / max(lb["shape"]) for lb in labels)
            settings = replace(settings, input_thresholds=tuple(t * factor for t in settings.thresholds))
            note = f" (median resize factor {factor:.3f} over {len(labels)} train images)"
        elif self.resume:
            note = " (from the checkpoint)"
        self.args.size_input_thresholds = list(settings.input_thresholds)
        if RANK in {-1, 0}:
            YAML.save(self.save_dir / "args.yaml", vars(self.args))  # record the resolved thresholds
            LOGGER.info(f"{PREFIX} imgsz {self.args.imgsz}: {settings.describe()}{note}")
        return settings

    def get_validator(self):
        """As ``DetectionTrainer.get_validator`` (8.4.190), with the validator that reports mAP per size.

        The validator re-checks its args against Ultralytics' keys (``get_cfg``), so it gets them without ours.
        """
        args = split_size_keys(vars(self.args))[1]
        return SizeAdaptiveValidator(self.test_loader, save_dir=self.save_dir, args=args, _callbacks=self.callbacks)

    def save_metrics(self, metrics):
        """Add the epoch's size diagnostics to the ``results.csv`` row (``BaseTrainer.save_metrics``, 8.4.190)."""
        diagnostics = self.size_diagnostics()
        LOGGER.info(
            f"{PREFIX} foreground anchors small {diagnostics['size/fg_small']:.1%}, medium "
            f"{diagnostics['size/fg_medium']:.1%}, large {diagnostics['size/fg_large']:.1%}; mean weight "
            f"{diagnostics['size/mean_fg_weight']:.3f}"
        )
        super().save_metrics({**metrics, **diagnostics})

    def size_diagnostics(self) -> dict[str, float]:
        """Shares of foreground anchors per size bucket and their mean bucket weight since the last call (then reset).

        The mean weight is that of the buckets (``size_weights``), before any ``size_norm`` scaling. End-to-end models
        count the anchors of both branches. Under DDP each rank counts its own batches; rank 0's are reported.
        """
        criterion = getattr(unwrap_model(self.model), "criterion", None)
        counts = [loss.reset_fg_counts().cpu() for loss in size_losses(criterion)]
        counts = sum(counts) if counts else torch.zeros(3)
        n = max(float(counts.sum()), 1.0)
        shares = (counts / n).tolist()
        mean_weight = float(counts @ torch.tensor(self.size_settings.weights)) / n
        return dict(zip(DIAGNOSTIC_COLUMNS, (*shares, mean_weight)))

    def train(self):
        """Train as ``BaseTrainer.train``, then say where the run and its results are."""
        super().train()
        if RANK in {-1, 0}:
            LOGGER.info(
                f"{PREFIX} run folder {self.save_dir}\n"
                f"  results (per epoch, incl. mAP small/medium/large): {self.save_dir / 'results.csv'}\n"
                f"  weights: {self.best if self.best.exists() else self.last}"
            )


def _install_criterion(model, settings: SizeSettings) -> None:
    """Set ``model.criterion`` to the size-adaptive criterion, keeping an end-to-end criterion's branch schedule."""
    old, new = getattr(model, "criterion", None), build_criterion(model, settings)
    if isinstance(old, E2ELoss) and isinstance(new, E2ELoss):
        new.__dict__.update({k: v for k, v in vars(old).items() if k not in ("one2many", "one2one")})
    model.criterion = new
