"""Sliced validation on whole images: ``yolo-sa val slice=...`` (``size_adaptive.sliced`` predicts, this evaluates).

Every whole val image (the data yaml's ``val_whole``, written by ``yolo-sa tile``; else its ``val``) is predicted
slice by slice and merged (``predict_image``), then scored in its own pixels against its labels:

    P, R, mAP50, mAP50-95   Ultralytics' ``ap_per_class`` (its ``DetMetrics`` / ``SegmentMetrics`` / ``OBBMetrics``)
                            on the matched ``tp`` matrix at IoU 0.50:0.05:0.95, matched by
                            ``BaseValidator.match_predictions`` (8.4.190) exactly as ``yolo val`` matches: box IoU,
                            mask IoU (at full resolution, from RLE) and OBB ProbIoU (``batch_probiou``, as the OBB
                            validator). Same names, table, plots (PR/F1/P/R curves, confusion matrix) as ``yolo val``.
    mAP small/medium/large  COCO per size with faster-coco-eval (``size_adaptive.per_size.coco_per_size``; exact
                            rotated IoU for OBB), the same names, log line and ``per_size_metrics.json`` as
                            today's ``yolo-sa val``; ``size_bins=aitod`` adds very tiny and tiny.

The detection cap: an image keeps at most ``max_det`` detections (500 unless given: VisDrone's protocol; each forward
pass keeps as many), and COCO counts as many (``maxDets`` 1, 10, ``max_det``); the log and ``sliced_val.json`` state
it. COCO's default of 100 would cut the recall of an aerial image holding hundreds of objects.

Nothing is written until every image has been predicted and scored: bad keys, a data yaml without a val set, a pose
model or data set, an image that cannot be read and a label outside the model's classes are ``ValueError``s naming
the key (``data`` for the images and labels) before the run's folder exists.

Ground truth (YOLO label rows, norm; see ``size_adaptive.yolo_data``): a box ``cls x y w h``; a polygon
``cls x1 y1 ... xn yn``, whose enclosing box is the object's box (Ultralytics' ``segments2boxes``), whose mask is the
polygon rasterised by COCO at full resolution (segment), and which is a rotated box by ``xyxyxyxy2xywhr`` (OBB).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .sliced import (
    DEFAULT_BATCH,
    DEFAULT_OVERLAP,
    _flag,
    load_model,
    model_task,
    predict_image,
    sliced_settings,
)
from .sliced_io import output_dir, read_image

RESULTS_FILE = "sliced_val.json"
IOUV = torch.linspace(0.5, 0.95, 10)  # the validators' IoU thresholds


def whole_images(data) -> tuple[dict, list[Path], str]:
    """The data dict, the whole val images and the split they came from (``val_whole``, else ``val``).

    ``val_whole`` is resolved against the yaml's ``path`` as Ultralytics' ``check_det_dataset`` (8.4.190) resolves
    ``val``. Refuses a yaml with neither, a pose data set, and images that are not there.
    """
    from ultralytics.utils import YAML

    from .demo import resolve_data
    from .yolo_data import image_files, load_data, split_paths

    resolved = resolve_data(data.strip() if isinstance(data, str) else data)
    if resolved is not None and Path(str(resolved)).is_file():
        raw = YAML.load(resolved)
        if isinstance(raw, dict) and not raw.get("val_whole") and not raw.get("val"):
            raise ValueError(f"data: expected a dataset yaml with 'val_whole' or 'val' (the whole images to validate "
                             f"on); got {resolved} without either")
        if isinstance(raw, dict) and raw.get("kpt_shape") is not None:
            raise ValueError(f"data: expected a detect, segment or OBB dataset; got a pose dataset ('kpt_shape' in "
                             f"{resolved}): SAHI's merge of slices has no keypoints")
    info = load_data(data, splits=("val",))
    split = "val_whole" if info.get("val_whole") else "val"
    paths = split_paths(info, "val")
    if split == "val_whole":
        root, value = Path(info["path"]), info["val_whole"]
        paths = []
        for v in value if isinstance(value, list) else [value]:
            p = (root / v).resolve()
            if not p.exists() and str(v).startswith("../"):
                p = (root / str(v)[3:]).resolve()
            if not p.exists():
                raise ValueError(f"data: expected the 'val_whole' images of {info['yaml_file']} at {p}; got no such "
                                 f"path")
            paths.append(str(p))
    return info, image_files(paths, split), split


def ground_truth(rows: list[np.ndarray], task: str, height: int, width: int, nc: int, label_file) -> dict:
    """One image's labels in its px: ``cls`` (n,), ``boxes`` (n, 4) xyxy, and ``rboxes`` (n, 5) xywhr (OBB) or
    ``rles`` (COCO RLE masks, segment)."""
    from faster_coco_eval.core import mask as mask_utils
    from ultralytics.utils import ops

    scale = np.array([width, height], dtype=np.float64)
    cls, polygons = [], []
    for row in rows:
        c = row[0]
        if not (c.is_integer() and 0 <= c < nc):
            raise ValueError(f"data: expected label classes 0..{nc - 1} (the model's {nc} classes); got class {c:g} "
                             f"in {label_file}")
        cls.append(int(c))
        if len(row) == 5:  # a box, as its 4 corners
            x, y, w, h = row[1:] * np.tile(scale, 2)
            polygons.append(np.array([[x - w / 2, y - h / 2], [x + w / 2, y - h / 2], [x + w / 2, y + h / 2],
                                      [x - w / 2, y + h / 2]]))
        else:
            polygons.append(row[1:].reshape(-1, 2) * scale)
    boxes = np.array([[*p.min(0), *p.max(0)] for p in polygons]).reshape(-1, 4)  # segments2boxes
    out = {"cls": np.array(cls, dtype=np.int64), "boxes": boxes}
    if task == "obb":
        corners = [p if len(p) == 4 else np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]])
                   for p, b in zip(polygons, boxes)]
        out["rboxes"] = ops.xyxyxyxy2xywhr(np.array(corners).reshape(-1, 8)) if corners else np.zeros((0, 5))
    if task == "segment":
        out["rles"] = [mask_utils.merge(mask_utils.frPyObjects([p.reshape(-1).tolist()], height, width))
                       for p in polygons]
    return out


def crop_rle(crop: np.ndarray, x: int, y: int, height: int, width: int) -> dict:
    """COCO RLE of a mask crop (bool (h, w), top-left (x, y) px) in an image of ``height`` x ``width`` px.

    Built from the crop's columns alone (COCO's RLE runs down the columns): a whole-image array per detection would
    cost height x width bytes each, 64 MB for an 8,000 px image.
    """
    from faster_coco_eval.core import mask as mask_utils

    crop = crop[: max(height - y, 0), : max(width - x, 0)]
    columns = np.zeros((height, crop.shape[1]), dtype=bool)  # the image's columns x .. x + w
    columns[y:y + crop.shape[0]] = crop
    flat = columns.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).astype(np.int64)
    if flat.size and flat[0]:
        runs = np.concatenate([[0], runs])  # RLE starts with a run of zeros
    if runs.size == 0:
        runs = np.zeros(1, dtype=np.int64)
    runs[0] += x * height
    after = (width - x - crop.shape[1]) * height
    if len(runs) % 2:  # the last run is zeros
        runs[-1] += after
    elif after:
        runs = np.concatenate([runs, [after]])
    return mask_utils.frPyObjects({"size": [height, width], "counts": runs.tolist()}, height, width)


class Evaluation:
    """The per-image records of a sliced validation: Ultralytics' metrics, the confusion matrix and COCO's lists."""

    def __init__(self, task: str, names: dict, conf: float):
        from ultralytics.utils.metrics import (
            ConfusionMatrix,
            DetMetrics,
            OBBMetrics,
            SegmentMetrics,
        )

        from .validator import VALIDATORS

        self.task, self.names, self.conf = task, names, conf
        self.metrics = {"detect": DetMetrics, "segment": SegmentMetrics, "obb": OBBMetrics}[task](names)
        self.confusion = ConfusionMatrix(names=names, task="obb" if task == "obb" else "detect")
        self.kinds = VALIDATORS[task].per_size_kinds  # (iou type, suffix)
        self.images, self.predictions, self.seen = [], [], 0

    def add(self, name: str, height: int, width: int, gt: dict, det) -> None:
        """Score one image: ``gt`` from ``ground_truth``, ``det`` (``Detections``) in descending order of score."""
        from faster_coco_eval.core import mask as mask_utils
        from ultralytics.engine.validator import BaseValidator
        from ultralytics.utils.metrics import batch_probiou, box_iou
        from ultralytics.utils.ops import xyxy2ltwh

        self.seen += 1
        obb = self.task == "obb"
        pred_cls, true_cls = torch.from_numpy(det.cls), torch.from_numpy(gt["cls"])
        gt_boxes = torch.from_numpy(gt["rboxes"] if obb else gt["boxes"]).float()
        det_boxes = torch.from_numpy(det.rboxes if obb else det.boxes).float()
        tp = {}
        iou = (batch_probiou if obb else box_iou)(gt_boxes, det_boxes) if len(gt_boxes) and len(det) else None
        tp["tp"] = self._match(pred_cls, true_cls, iou, BaseValidator)
        det_rles = []
        if self.task == "segment":
            det_rles = [crop_rle(c, x, y, height, width) for c, x, y in det.masks]
            mask_iou = None
            if det_rles and gt["rles"]:
                mask_iou = torch.from_numpy(np.asarray(mask_utils.iou(det_rles, gt["rles"], [0] * len(gt["rles"])))).T
            tp["tp_m"] = self._match(pred_cls, true_cls, mask_iou, BaseValidator)
        self.metrics.update_stats({**tp, "target_cls": gt["cls"], "target_img": np.unique(gt["cls"]),
                                   "conf": det.scores, "pred_cls": det.cls, "im_name": name})
        self.confusion.process_batch({"cls": pred_cls, "conf": torch.from_numpy(det.scores), "bboxes": det_boxes},
                                     {"cls": true_cls, "bboxes": gt_boxes}, conf=self.conf)
        fields = {"bbox": xyxy2ltwh(gt["boxes"]).tolist(), "segmentation": gt.get("rles", []),
                  "rbox": gt.get("rboxes", np.zeros((0, 5))).tolist()}
        self.images.append({"height": height, "width": width, "category_id": (gt["cls"] + 1).tolist(),
                            "n_pred": len(det), **fields})
        det_fields = {"bbox": xyxy2ltwh(det.boxes).tolist(), "segmentation": det_rles,
                      "rbox": [] if det.rboxes is None else det.rboxes.tolist()}
        for i in range(len(det)):
            self.predictions.append({"category_id": int(det.cls[i]) + 1, "score": float(det.scores[i]),
                                     **{k: v[i] for k, v in det_fields.items() if len(v)}})

    @staticmethod
    def _match(pred_cls, true_cls, iou, validator) -> np.ndarray:
        """``BaseValidator.match_predictions`` (8.4.190; it reads only ``iouv`` from the validator): (n_det, 10)."""
        if iou is None:
            return np.zeros((len(pred_cls), len(IOUV)), dtype=bool)
        holder = type("IoUThresholds", (), {"iouv": IOUV})()
        return validator.match_predictions(holder, pred_cls, true_cls, iou).cpu().numpy()

    def per_size(self, max_dets: int, print_function=None, bins: str = "coco") -> dict[str, dict[str, float]]:
        """COCO AP per size (``{"B": {"all": ..., "small": ...}, "M": ...}``) with ``maxDets`` 1, 10, ``max_dets``,
        in the bins of ``size_bins``."""
        from .per_size import coco_detections, coco_ground_truth, coco_per_size
        from .weighting import bin_names

        category_ids = [i + 1 for i in range(len(self.names))]
        out = {}
        for iou_type, suffix in self.kinds:
            gt = coco_ground_truth(self.images, iou_type, category_ids)
            if not self.predictions:  # faster-coco-eval cannot load an empty result list
                out[suffix] = {"all": 0.0, **{b: 0.0 for b in bin_names(bins)}}
                continue
            dets = coco_detections(self.images, self.predictions, iou_type)
            out[suffix] = coco_per_size(gt, dets, iou_type, print_function, max_dets=max_dets, bins=bins)
        return out


def val(model, data, slice, overlap=DEFAULT_OVERLAP, slice_whole=True, batch=DEFAULT_BATCH, imgsz=None, conf=0.001,
        iou=0.7, max_det=None, project=None, name=None, save_dir=None, plots=True, verbose=True, device=None,
        postprocess=None, match_metric=None, match_threshold=0.5, class_agnostic=False,
        size_bins="coco") -> dict[str, float]:
    """Sliced validation of ``model`` on the whole val images of ``data`` (see the module docstring).

    Args:
        model: a trained detect, segment or OBB model (path or Ultralytics ``YOLO``).
        data: a dataset yaml (or demo keyword); its ``val_whole`` images, else ``val``.
        slice, overlap, slice_whole, batch: px, fraction of a slice, whole-image pass, slices per forward pass.
        imgsz, conf, iou, max_det, device: as in ``yolo val``; ``max_det`` is the detection cap per image (500).
        project, name, save_dir: the run's folder (``runs/<task>/val``, numbered; never an existing one).
        plots: PR/F1/P/R curves and confusion matrices in the run's folder.
        postprocess, match_metric, match_threshold, class_agnostic: SAHI's merge (``sliced_settings``).
        size_bins: ``coco`` (small, medium, large) or ``aitod`` (very tiny and tiny too), as in training.

    Returns:
        ``metrics/precision(B)``, ``metrics/recall(B)``, ``metrics/mAP50(B)``, ``metrics/mAP50-95(B)`` (and ``(M)``
        for masks), ``fitness`` and ``metrics/mAP_{small,medium,large}(B)`` (and ``(M)``; aitod: very_tiny and
        tiny first), as ``yolo-sa val``.
    """
    from ultralytics.utils import LOGGER, TQDM

    from .settings import SizeSettings
    from .validator import PREFIX, report_per_size
    from .yolo_data import label_files, read_labels

    bins = SizeSettings.from_dict({"size_bins": size_bins}).bins  # refused by name before anything is read

    settings = sliced_settings(slice, overlap, slice_whole, batch, imgsz, conf, iou, max_det, postprocess,
                               match_metric, match_threshold, class_agnostic, device, mode="validation")
    plots, verbose = _flag("plots", plots), _flag("verbose", verbose)
    model = load_model(model)
    task = model_task(model)
    info, files, split = whole_images(data)
    names = dict(model.names)
    if len(info.get("names", names)) != len(names):
        raise ValueError(f"data: expected {len(names)} classes (the model's); got {len(info['names'])} in "
                         f"{info['yaml_file']}")
    out = output_dir(task, "val", project, name, save_dir)
    evaluation = Evaluation(task, names, settings.conf)
    for file, label_file in TQDM(list(zip(files, label_files(files))), desc=f"sliced val ({settings.slice} px)"):
        image = read_image(file, "data")
        height, width = image.shape[:2]
        gt = ground_truth(read_labels(label_file), task, height, width, len(names), label_file)
        evaluation.add(file.name, height, width, gt, predict_image(model, image, settings, task))
    per_size = evaluation.per_size(settings.max_det, LOGGER.info if verbose else None, bins)

    out.mkdir(parents=True, exist_ok=True)  # the first write of the run
    metrics = evaluation.metrics
    metrics.process(save_dir=out, plot=plots)
    if plots:
        for normalize in True, False:
            evaluation.confusion.plot(save_dir=out, normalize=normalize)
    _log_table(metrics, evaluation.seen, names, verbose)
    results = {k: float(v) for k, v in metrics.results_dict.items()}
    for suffix, values in per_size.items():
        results.update({f"metrics/mAP_{b}({suffix})": float(values[b]) for b in values if b != "all"})
    report_per_size({s: {b: x for b, x in v.items() if b != "all"} for s, v in per_size.items()}, out)
    cap = (f"detection cap {settings.max_det} per image (Ultralytics max_det per pass and per merged image; COCO "
           f"maxDets {settings.max_det})")
    imgsz = settings.imgsz or getattr(model, "overrides", {}).get("imgsz") or 640  # Ultralytics' choice when None
    LOGGER.info(f"{PREFIX} sliced validation of {evaluation.seen} whole images ('{split}'): {settings.slice} px "
                f"slices at imgsz {imgsz}, overlap {settings.overlap}, whole-image pass "
                f"{'on' if settings.slice_whole else 'off'}, {settings.postprocess}/{settings.match_metric} "
                f"{settings.match_threshold} merge; {cap}")
    record = {"model": str(getattr(model, "ckpt_path", None) or ""), "data": info["yaml_file"], "split": split,
              "images": evaluation.seen, "settings": {**asdict(settings), "imgsz": imgsz},
              "detection_cap": {"max_det": settings.max_det, "coco_max_dets": [1, 10, settings.max_det]},
              "coco_mAP50-95": {s: v["all"] for s, v in per_size.items()}, "metrics": results}
    (out / RESULTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    LOGGER.info(f"Results saved to {out}")
    return results


def _log_table(metrics, seen: int, names: dict, verbose: bool) -> None:
    """The table ``DetectionValidator.print_results`` (8.4.190) prints: a header, 'all' and one row per class."""
    from ultralytics.utils import LOGGER

    kinds = ["Box"] + (["Mask"] if len(metrics.keys) > 4 else [])
    header = [h for k in kinds for h in (f"{k}(P", "R", "mAP50", "mAP50-95)")]
    LOGGER.info(("%22s" + "%11s" * (2 + len(header))) % ("Class", "Images", "Instances", *header))
    pf = "%22s" + "%11i" * 2 + "%11.3g" * len(metrics.keys)
    LOGGER.info(pf % ("all", seen, metrics.nt_per_class.sum(), *metrics.mean_results()))
    if verbose and len(names) > 1:
        for i, c in enumerate(metrics.ap_class_index):
            LOGGER.info(pf % (names[c], metrics.nt_per_image[c], metrics.nt_per_class[c], *metrics.class_result(i)))
