"""``size_metrics.png``: per-size mAP and the size diagnostics of a run over its epochs, from ``results.csv``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ultralytics.utils import plt_settings

from .runs import number, read_rows
from .weighting import bin_names

PANELS = (  # (column template, title, y label); {b} is the bucket
    ("metrics/mAP_{b}(B)", "mAP50-95 by object size (val)", "COCO mAP"),
    ("size/fg_{b}", "share of positive anchors", "share"),
    ("size/unassigned_{b}", "objects without a positive anchor", "share of objects"),
    ("size/pos_per_gt_{b}", "positive anchors per object", "anchors"),
    ("size/score_{b}", "mean target score of the positives", "score"),
    ("size/iou_{b}", "mean IoU of the positives' predicted boxes", "CIoU (OBB: ProbIoU)"),
)
COLORS = {"very_tiny": "tab:purple", "tiny": "tab:pink", "small": "tab:red", "medium": "tab:orange",
          "large": "tab:blue"}  # every bin of size_bins=aitod; a run draws those it logged
MASK_LINES = {"metrics/mAP_{b}(B)": "metrics/mAP_{b}(M)"}  # drawn dashed in the same panel (segment's mask mAP)


def _read(csv_file: Path) -> dict[str, list[float]]:
    rows = read_rows(csv_file)
    return {k: [number(r.get(k)) for r in rows] for k in (rows[0] if rows else {})}


@plt_settings()
def plot_size_metrics(csv_file: str | Path, on_plot: Callable | None = None) -> Path | None:
    """Draw ``size_metrics.png`` next to ``csv_file``; return its path, or None when the CSV has no rows.

    One panel per quantity, one line per size bucket the run logged (``size_bins=aitod``: very tiny and tiny too;
    segment's mask mAP dashed next to its box mAP); COCO's -1 (a
    bucket without objects in the validation set) and NaN (a bucket without objects in an epoch) are left out. A panel
    whose columns are absent says so.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    csv_file = Path(csv_file)
    data = _read(csv_file)
    if not data.get("epoch"):
        return None
    epochs = data["epoch"]
    fig, axes = plt.subplots(2, 4, figsize=(20, 8), tight_layout=True)
    axes = axes.ravel()
    for ax in axes[len(PANELS):-1]:
        fig.delaxes(ax)
    for ax, (template, title, ylabel) in zip(axes, PANELS):
        drawn = False
        columns = [(template, "-", "")] + ([(MASK_LINES[template], "--", " (mask)")] if template in MASK_LINES else [])
        for column, style, what in columns:
            for b in bin_names("aitod"):
                ys = data.get(column.format(b=b))
                points = [(e, y) for e, y in zip(epochs, ys or []) if not math.isnan(y) and y >= 0]
                if points:
                    ax.plot(*zip(*points), style, marker=".", color=COLORS[b], label=b.replace("_", " ") + what)
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 1.5, 2.5 ticks
        ax.set_ylabel(ylabel)
        if drawn:
            ax.set_ylim(bottom=0)
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not recorded in this run\n(per-size mAP needs save_json=True)", ha="center",
                    va="center", transform=ax.transAxes)
    weight = [(e, y) for e, y in zip(epochs, data.get("size/mean_fg_weight", [])) if not math.isnan(y)]
    ax = axes[-1]
    if weight:
        ax.plot(*zip(*weight), marker=".", color="black")
    ax.set_title("mean bucket weight of the positives")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("weight")
    fig.suptitle(f"Size-adaptive diagnostics: {csv_file.parent.name}")
    out = csv_file.with_name("size_metrics.png")
    fig.savefig(out, dpi=150)
    plt.close(fig)
    if on_plot:
        on_plot(out)
    return out
