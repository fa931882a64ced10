"""``size_metrics.png``: per-size mAP and the size diagnostics of a run over its epochs, from ``results.csv``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable

from ultralytics.utils import plt_settings

from .weighting import BUCKET_NAMES

PANELS = (  # (column template, title, y label); {b} is the bucket
    ("metrics/mAP_{b}(B)", "mAP50-95 by object size (val)", "COCO mAP"),
    ("size/fg_{b}", "share of positive anchors", "share"),
    ("size/unassigned_{b}", "objects without a positive anchor", "share of objects"),
    ("size/pos_per_gt_{b}", "positive anchors per object", "anchors"),
    ("size/score_{b}", "mean target score of the positives", "score"),
)
COLORS = {"small": "tab:red", "medium": "tab:orange", "large": "tab:blue"}


def _read(csv_file: Path) -> dict[str, list[float]]:
    with open(csv_file, encoding="utf-8") as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]

    def number(v) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return {k: [number(r.get(k)) for r in rows] for k in (rows[0] if rows else {})}


@plt_settings()
def plot_size_metrics(csv_file: str | Path, on_plot: Callable | None = None) -> Path | None:
    """Draw ``size_metrics.png`` next to ``csv_file``; return its path, or None when the CSV has no rows.

    One panel per quantity, one line per size bucket; COCO's -1 (a bucket without objects in the validation set)
    and NaN (a bucket without objects in an epoch) are left out. A panel whose columns are absent says so.
    """
    import matplotlib.pyplot as plt

    csv_file = Path(csv_file)
    data = _read(csv_file)
    if not data.get("epoch"):
        return None
    epochs = data["epoch"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), tight_layout=True)
    axes = axes.ravel()
    for ax, (template, title, ylabel) in zip(axes, PANELS):
        drawn = False
        for b in BUCKET_NAMES:
            ys = data.get(template.format(b=b))
            points = [(e, y) for e, y in zip(epochs, ys or []) if not math.isnan(y) and y >= 0]
            if points:
                ax.plot(*zip(*points), marker=".", color=COLORS[b], label=b)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if drawn:
            ax.set_ylim(bottom=0)
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not recorded in this run\n(Ultralytics gives per-size mAP for detect)", ha="center",
                    va="center", transform=ax.transAxes)
    weight = [(e, y) for e, y in zip(epochs, data.get("size/mean_fg_weight", [])) if not math.isnan(y)]
    ax = axes[-1]
    if weight:
        ax.plot(*zip(*weight), marker=".", color="black")
    ax.set_title("mean bucket weight of the positives")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight")
    fig.suptitle(f"Size-adaptive diagnostics: {csv_file.parent.name}")
    out = csv_file.with_name("size_metrics.png")
    fig.savefig(out, dpi=150)
    plt.close(fig)
    if on_plot:
        on_plot(out)
    return out
