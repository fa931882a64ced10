"""size_metrics.png: drawn from results.csv, with whole-number epoch ticks."""

from __future__ import annotations

import csv

import matplotlib.figure

from size_adaptive.plots import plot_size_metrics


def test_epoch_axes_have_whole_number_ticks(tmp_path, monkeypatch):
    # Two epochs: matplotlib's default locator puts ticks at 1.0, 1.2, ... 2.0 (labels 1.5 and the like).
    rows = [{"epoch": e, "metrics/mAP_small(B)": 0.1 * e, "size/fg_small": 0.5, "size/mean_fg_weight": 1.5}
            for e in (1, 2)]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figures = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: (figures.append(fig), savefig(fig, *a, **k))[1])
    out = plot_size_metrics(tmp_path / "results.csv")
    assert out == tmp_path / "size_metrics.png" and out.read_bytes()[:4] == b"\x89PNG"
    (fig,) = figures
    assert len(fig.axes) == 7  # six panels and the mean weight
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_panels_draw_every_bin_the_run_logged(tmp_path, monkeypatch):
    # size_bins=aitod: very tiny and tiny lines beside COCO's in the mAP and diagnostics panels; a run without them
    # (size_bins=coco) draws small, medium, large only.
    names = ("very_tiny", "tiny", "small", "medium", "large")
    rows = [{"epoch": e, **{f"metrics/mAP_{b}(B)": 0.1 * e for b in names},
             **{f"size/fg_{b}": 0.2 for b in names}} for e in (1, 2)]
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    plot_size_metrics(tmp_path / "results.csv")
    for ax in figures[0].axes[:2]:  # mAP by size, share of positives
        assert [line.get_label() for line in ax.get_lines()] == ["very tiny", "tiny", "small", "medium", "large"]
