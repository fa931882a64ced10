"""Reading finished ``yolo-sa compare`` runs: whether a run folder holds a finished run of the requested settings
(and a refusal, naming the key, when it holds another), and a run's numbers from its ``results.csv``.

Runs are ``<arm>-seed<k>`` folders in ``project/name``. Each run's numbers are its mean over its last ``last_epochs``
validated epochs (default 5; all when it has fewer): mAP50-95 and mAP50 (box), COCO mAP small/medium/large (and very
tiny/tiny where the run logged ``size_bins=aitod``'s columns), mask or
pose mAP50-95 where present, and the ``size/*`` assignment diagnostics. Stock arms record those diagnostics with
``observe_assignment`` in ``size_diagnostics.csv``, without changing their training. Outputs, in the comparison folder:
``comparison.md``, ``comparison.png``, ``comparison.json`` (all numbers and every run's resolved ``args.yaml``).
Finished runs are reused, so an interrupted comparison continues where it stopped; an unfinished run is trained again
from the start; a folder holding a run whose ``args.yaml`` differs from the arm's full resolved settings (Ultralytics'
defaults and the size defaults included, so a key removed from an arm counts) is refused, naming the key.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ultralytics.utils import DEFAULT_CFG_DICT

from .cfg import model_task
from .diagnostics import DIAGNOSTICS_FILE
from .settings import DEFAULTS as SIZE_DEFAULTS
from .settings import SizeSettings, split_size_keys

# Not compared on reuse: where a run is (its folder is the one being reused) and the machine it ran on (the device
# and the loader processes; BaseTrainer 8.4.190 canonicalises the device and sets workers=0 on CPU).
NOT_COMPARED = ("project", "name", "exist_ok", "save_dir", "device", "workers")
DEFAULT_LAST_EPOCHS = 5
METRICS = {  # report label -> results.csv column; reported where present in every run
    "mAP50-95": "metrics/mAP50-95(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP very tiny": "metrics/mAP_very_tiny(B)",  # size_bins=aitod
    "mAP tiny": "metrics/mAP_tiny(B)",
    "mAP small": "metrics/mAP_small(B)",
    "mAP medium": "metrics/mAP_medium(B)",
    "mAP large": "metrics/mAP_large(B)",
    "mask mAP50-95": "metrics/mAP50-95(M)",
    "mask mAP very tiny": "metrics/mAP_very_tiny(M)",
    "mask mAP tiny": "metrics/mAP_tiny(M)",
    "mask mAP small": "metrics/mAP_small(M)",
    "mask mAP medium": "metrics/mAP_medium(M)",
    "mask mAP large": "metrics/mAP_large(M)",
    "pose mAP50-95": "metrics/mAP50-95(P)",
}
VALIDATED = METRICS["mAP50-95"]  # a row with a value here is a validated epoch

def finished(run_dir: Path, expected: dict, trainer: str) -> bool:
    """A run that trained all its epochs with the expected settings; other settings in the same folder are refused.

    ``expected``: the run's training keys as given to the trainer (``Plan.run_args`` and ``seed``); the run's
    ``args.yaml`` must record every key of their full resolution (``resolved_settings``), defaults included, so that
    a key removed from an arm since the run trained is noticed too.
    """
    args_file, csv_file = run_dir / "args.yaml", run_dir / "results.csv"
    if not args_file.exists():
        return False
    args = yaml.safe_load(args_file.read_text())
    different = mismatches(args, resolved_settings(expected, trainer), trainer)
    if different:
        keys = "; ".join(f"{k}: recorded {r!r}, requested {q!r}" for k, (r, q) in different.items())
        raise ValueError(f"name: {run_dir} holds a run with other settings ({keys}); choose another name= for this "
                         f"comparison or remove that folder")
    if not csv_file.exists():
        return False
    rows = read_rows(csv_file)
    weights = any((run_dir / "weights" / w).exists() for w in ("best.pt", "last.pt"))
    return len(rows) >= int(args.get("epochs", 0)) and weights


def resolved_settings(args: Mapping[str, Any], trainer: str) -> dict:
    """Every setting that a run of these training keys records in its ``args.yaml``: Ultralytics' ``get_cfg`` of
    them (its defaults for the keys not given) with ``mode`` and the model's ``task`` as ``Model.train`` (8.4.190)
    sets them, and, for the size-adaptive trainer, every ``size_*`` key resolved (``SizeSettings.as_args``)."""
    from ultralytics.cfg import get_cfg

    size, stock = split_size_keys(args)
    out = vars(get_cfg(overrides={**stock, "mode": "train", "task": model_task(stock["model"])}))
    if trainer == "size":
        out.update(SizeSettings.from_dict(size).as_args())
    return out


def mismatches(recorded: Mapping[str, Any], requested: Mapping[str, Any], trainer: str) -> dict[str, tuple]:
    """``{key: (recorded, requested)}`` for every key of the full ``requested`` settings that a run's ``args.yaml``
    (``recorded``) holds with another value; ``{}`` when the run is the requested one.

    A key absent from ``recorded`` counts with its default (a key added to Ultralytics or to this package after the
    run trained: the run had its behaviour). Not compared: ``NOT_COMPARED`` (the run's folder and machine) and what
    the trainer resolves from the requested value (``_resolved_by_trainer``). A stock run must record no size key.
    """
    recorded = {**DEFAULT_CFG_DICT, **(SIZE_DEFAULTS if trainer == "size" else {}), **recorded}
    out = {
        k: (recorded.get(k), v) for k, v in requested.items()
        if k not in NOT_COMPARED and _differs(recorded.get(k), v) and not _resolved_by_trainer(k, recorded, requested)
    }
    if trainer == "stock":  # a size-adaptive run records its size keys; Ultralytics' own trainer has none
        out.update({k: (v, None) for k, v in recorded.items() if k.startswith("size_")})
    return out


def _resolved_by_trainer(key: str, recorded: Mapping[str, Any], requested: Mapping[str, Any]) -> bool:
    """Whether the trainer turned the requested value of ``key`` into the recorded one. A size run writes its
    ``args.yaml`` again once its thresholds are resolved, so it records what ``BaseTrainer`` (8.4.190) rewrote by
    then: ``optimizer=auto``'s choice of optimizer and ``lr0`` (and ``warmup_bias_lr=0``; ``lr0`` given with
    ``auto`` is ignored, as Ultralytics logs), the AutoBatch size (``batch`` < 1), ``imgsz`` rounded up to a multiple
    of the model's largest stride (32 or 64, ``check_imgsz``), ``compile`` and ``rect`` turned off. A ``size_*`` key
    requested as None is resolved from the data (``size_input_thresholds``, ``size_nwd_input_c``)."""
    r, q = recorded.get(key), requested[key]
    if key.startswith("size_"):
        return q is None
    if key in ("optimizer", "lr0", "warmup_bias_lr"):
        return requested.get("optimizer") == "auto"
    if key == "batch":
        return isinstance(q, (int, float)) and q < 1
    if key == "imgsz" and isinstance(q, int) and isinstance(r, int):
        return r in {max(math.ceil(q / s) * s, s) for s in (32, 64)}
    return key in ("compile", "rect") and r is False


def _differs(recorded, requested) -> bool:
    if isinstance(requested, (list, tuple)) and isinstance(recorded, (list, tuple)):
        return len(recorded) != len(requested) or any(_differs(a, b) for a, b in zip(recorded, requested))
    if isinstance(requested, float) or isinstance(recorded, float):
        try:
            return not math.isclose(float(recorded), float(requested), rel_tol=1e-9)
        except (TypeError, ValueError):
            return True
    return recorded != requested


def read_rows(csv_file: Path) -> list[dict[str, str]]:
    """The rows of a ``results.csv`` (or ``size_diagnostics.csv``), keys and values stripped of Ultralytics' padding."""
    with open(csv_file, encoding="utf-8") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def number(text: Any) -> float:
    """A cell as a float; NaN for an empty or non-numeric cell."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def finite_mean(xs: Sequence[float | None]) -> float:
    """Mean of the finite values; NaN when there are none (a bucket without objects in every epoch)."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.fmean(xs) if xs else math.nan


def read_run(run_dir: Path, last_epochs: int = DEFAULT_LAST_EPOCHS) -> dict:
    """A run's numbers: its mean over its last ``last_epochs`` validated epochs (all when it has fewer).

    Returns a dict with ``metrics`` ({label: float, or ``None`` where COCO wrote -1: no objects of that size in the
    validation set}; labels of ``METRICS`` that the run has), ``diagnostics`` (the ``size/*`` columns of
    ``results.csv``, or of ``size_diagnostics.csv`` for a stock run, over the same epochs; NaN where undefined),
    ``epochs`` (those averaged), ``mean_fg_weight`` (over all epochs: the ``uniform`` constant), ``args``, ``folder``.
    """
    run_dir = Path(run_dir)
    rows = [r for r in read_rows(run_dir / "results.csv") if math.isfinite(number(r.get(VALIDATED)))]
    last = rows[-last_epochs:]
    metrics = {}
    for label, col in METRICS.items():
        values = [number(r.get(col)) for r in last]
        if last and all(math.isfinite(x) for x in values):
            metrics[label] = None if any(x < 0 for x in values) else statistics.fmean(values)
    epochs = [int(number(r.get("epoch"))) for r in last]
    size_rows = {int(number(r.get("epoch"))): r for r in rows if "size/fg_small" in r}
    observed = run_dir / DIAGNOSTICS_FILE
    if not size_rows and observed.exists():
        size_rows = {int(number(r.get("epoch"))): r for r in read_rows(observed)}
    diag_rows = [size_rows[e] for e in epochs if e in size_rows]
    columns = [c for c in (diag_rows[0] if diag_rows else {}) if c.startswith("size/")]
    weights = [number(r.get("size/mean_fg_weight")) for r in rows if r.get("size/mean_fg_weight")]
    return {
        "folder": str(run_dir),
        "epochs": epochs,
        "metrics": metrics,
        "diagnostics": {c: finite_mean([number(r.get(c)) for r in diag_rows]) for c in columns},
        "mean_fg_weight": statistics.fmean(weights) if weights else None,
        "args": yaml.safe_load((run_dir / "args.yaml").read_text()),
    }
