"""``yolo-sa compare`` across resolutions: every arm judged on the same whole images at the end.

Arms may train on different data (a tiled copy written by ``yolo-sa tile``), at different ``imgsz``, with different
models (a P2 head), and each has a ``slice`` (px; 0: the whole image in one pass at the arm's ``imgsz``). Their
per-epoch metrics are measured on their own val sets (tiles for a tiled arm), so they cannot be compared. When an arm's
data names a whole-image val set (``val_whole``, as ``yolo-sa tile`` writes it), every run is evaluated once more, with
its ``last.pt``, on those whole images by sliced validation (``sliced_val.val``: the same merge, detection cap and
per-size COCO evaluation for every arm), and the report carries these numbers as ``whole ...`` metrics beside the
per-epoch ones, with the same paired intervals.

The whole images of an arm are its data's ``val_whole``, else its ``val`` (the original data set, for an arm trained
on whole images). Every arm must be judged on the same images; a comparison whose arms would not be is refused before
anything trains. An evaluation is written to ``whole_image_metrics.json`` in its run folder, with its settings, and
reused while they stay the same.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WHOLE_FILE = "whole_image_metrics.json"  # a run's evaluation on the whole images
WHOLE_DIR = "whole_val"  # its plots and sliced_val.json
ONE_PASS = 1 << 16  # the slice size that covers any image: one window, the whole image at the arm's imgsz
METRICS = {  # report label -> sliced_val.val's key; reported where present in every run
    "whole mAP50-95": "metrics/mAP50-95(B)",
    "whole mAP50": "metrics/mAP50(B)",
    "whole mAP very tiny": "metrics/mAP_very_tiny(B)",  # size_bins=aitod
    "whole mAP tiny": "metrics/mAP_tiny(B)",
    "whole mAP small": "metrics/mAP_small(B)",
    "whole mAP medium": "metrics/mAP_medium(B)",
    "whole mAP large": "metrics/mAP_large(B)",
    "whole mask mAP50-95": "metrics/mAP50-95(M)",
    "whole mask mAP small": "metrics/mAP_small(M)",
}


def whole_image_files(data: Any) -> tuple[str, tuple[str, ...]]:
    """The split (``val_whole`` or ``val``) and the sorted image paths that an arm trained on ``data`` is judged on."""
    from .sliced_val import whole_images

    _, files, split = whole_images(data)
    return split, tuple(sorted(str(Path(f).resolve()) for f in files))


def check_whole_images(datasets: Mapping[str, Any], sliced: bool = False) -> tuple[str, ...] | None:
    """The whole images of a comparison whose arms train on ``datasets`` (arm name -> data), or None when no arm's data
    names a ``val_whole`` set and no arm is ``sliced`` (then nothing more is evaluated). A ``ValueError`` naming
    ``data`` when the arms would be judged on different images."""
    if not sliced and not any(_names_val_whole(data) for data in datasets.values()):
        return None
    sets = {name: whole_image_files(data) for name, data in datasets.items()}
    files = {f for _, f in sets.values()}
    if len(files) > 1:
        where = "; ".join(f"arm '{name}': {split} of {datasets[name]} ({len(f)} images)" for name, (split, f) in
                          sets.items())
        raise ValueError(f"data: expected every arm judged on the same whole images (a tiled copy's val_whole is its "
                         f"source's val set); got {where}")
    return next(iter(files))


def _names_val_whole(data: Any) -> bool:
    from ultralytics.utils import YAML

    from .demo import resolve_data

    path = resolve_data(data)
    if not isinstance(path, (str, Path)) or Path(path).suffix not in (".yaml", ".yml") or not Path(path).is_file():
        return False
    content = YAML.load(path)
    return isinstance(content, dict) and bool(content.get("val_whole"))


def evaluate(run_dir: Path, data: Any, imgsz: Any, slice_px: int, slice_whole: bool = True,
             batch: int = 16, bins: str = "coco") -> dict[str, float | None]:
    """The run's ``last.pt`` on the whole images of ``data`` (``sliced_val.val``, per size in ``size_bins`` ``bins``),
    as ``{label: value}`` of ``METRICS`` (None where COCO wrote -1: no objects of that size); reused from
    ``WHOLE_FILE`` while its settings hold."""
    settings = {"weights": "last.pt", "data": str(data), "imgsz": imgsz, "slice": slice_px, "overlap": 0.2,
                "slice_whole": bool(slice_px) and slice_whole, "max_det": 500}
    if bins != "coco":  # recorded only then, so that evaluations written before size_bins existed stay valid
        settings["size_bins"] = bins
    cache = run_dir / WHOLE_FILE
    if cache.is_file():
        recorded = json.loads(cache.read_text())
        if recorded.get("settings") == settings:
            return recorded["metrics"]
    from .sliced_val import val

    shutil.rmtree(run_dir / WHOLE_DIR, ignore_errors=True)  # a stale or interrupted evaluation of ours
    results = val(run_dir / "weights" / "last.pt", data, slice=slice_px or ONE_PASS, overlap=settings["overlap"],
                  slice_whole=settings["slice_whole"], batch=batch, imgsz=imgsz, max_det=settings["max_det"],
                  save_dir=run_dir / WHOLE_DIR, plots=False, verbose=False, size_bins=bins)
    metrics = {label: (None if results[key] < 0 else results[key]) for label, key in METRICS.items() if key in results}
    cache.write_text(json.dumps({"settings": settings, "metrics": metrics}, indent=2) + "\n")
    return metrics


def describe(files: Sequence[str]) -> str:
    """One line for the log: how many whole images, and where."""
    folders = sorted({str(Path(f).parent) for f in files})
    return f"{len(files)} whole images in {', '.join(folders)}"
