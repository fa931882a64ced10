"""The statistics and the report of ``yolo-sa compare``: summarise the runs of every arm, write markdown, JSON, chart.

Running arms is ``compare``'s job; this module only reads the numbers it hands over. The first arm is the baseline;
every other arm is paired with it by seed. For each metric and arm the per-seed differences arm - baseline give a
mean, a sample std, n and the 95 % confidence interval of the mean difference,

    mean ± t.ppf(0.975, n - 1) · std / √n        (Student's t, n - 1 degrees of freedom; no interval for n = 1)

A difference is named in the verdict only where its interval excludes zero.

Input (``summarise``): ``runs[arm][seed]`` is a dict with
    ``metrics``      {label: float | None}: the run's metric (mean over its last epochs); ``None`` where COCO wrote -1
                     (no objects of that size in the validation set); a label absent where the run has no such column
    ``diagnostics``  {``size/*`` column: float}: the run's mean over the same epochs; NaN where undefined
    ``args``         the run's resolved ``args.yaml``; anything else in the dict is carried into the JSON.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .diagnostics import ALL_DIAGNOSTIC_COLUMNS
from .runs import finite_mean
from .weighting import bin_names

CONFIDENCE = 0.95


def mean_std(xs: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (``None`` for one value) and n."""
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def paired_difference(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std, n and the 95 % t interval ``ci95: [lo, hi]`` of per-seed differences (``None`` for n = 1)."""
    from scipy.stats import t

    out = {**mean_std(diffs), "ci95": None}
    n = out["n"]
    if n > 1:
        half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * out["std"] / math.sqrt(n)
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def excludes_zero(d: Mapping[str, Any]) -> bool:
    """True where the difference has an interval and zero lies outside it."""
    ci = d.get("ci95")
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def summarise(
    runs: Mapping[str, Mapping[int, dict]],
    seeds: Sequence[int],
    definitions: Mapping[str, dict] | None = None,
    common_args: Mapping[str, Any] | None = None,
    size_settings: Mapping[str, Any] | None = None,
    last_epochs: int | None = None,
) -> dict:
    """Per arm: mean ± std of every metric, diagnostics, and the paired difference to the first arm (the baseline).

    Args:
        runs: ``runs[arm][seed]`` (see the module docstring); arms in report order, the first is the baseline.
        seeds: the seeds, each present for every arm.
        definitions: per arm, how it was defined (trainer, its own keys), carried into the report.
        common_args, size_settings: the keys shared by every arm, and the shared size settings.
        last_epochs: how many last epochs each run's numbers average.

    Only metrics present in every run are reported; those with no objects in the validation set (COCO -1) are listed
    under ``left_out`` instead of being averaged.
    """
    arms = list(runs)
    baseline, everything = arms[0], [runs[a][s] for a in arms for s in seeds]
    labels = [k for k in everything[0]["metrics"] if all(k in r["metrics"] for r in everything)]
    left_out = [k for k in labels if any(r["metrics"][k] is None for r in everything)]
    metrics = [k for k in labels if k not in left_out]
    report: dict[str, Any] = {
        "seeds": list(seeds),
        "baseline": baseline,
        "last_epochs": last_epochs,
        "metrics": metrics,
        "left_out": {k: "no objects of this size in the validation set (COCO -1)" for k in left_out},
        "common_args": dict(common_args or {}),
        "size_settings": dict(size_settings or {}),
        "arms": {},
    }
    for arm in arms:
        per_seed = {s: runs[arm][s] for s in seeds}
        entry: dict[str, Any] = {
            "definition": dict((definitions or {}).get(arm, {})),
            "runs": {str(s): r for s, r in per_seed.items()},
            "metrics": {k: mean_std([r["metrics"][k] for r in per_seed.values()]) for k in metrics},
            "diagnostics": {},
        }
        for col in ALL_DIAGNOSTIC_COLUMNS:  # those the runs logged (size_bins=aitod: very tiny and tiny too)
            values = [r.get("diagnostics", {}).get(col) for r in per_seed.values()]
            if any(v is not None for v in values):
                entry["diagnostics"][col] = finite_mean(values)
        if arm != baseline:
            entry["diff_to_baseline"] = {}
            for k in metrics:
                diffs = {s: per_seed[s]["metrics"][k] - runs[baseline][s]["metrics"][k] for s in seeds}
                d = paired_difference(list(diffs.values()))
                entry["diff_to_baseline"][k] = {**d, "per_seed": {str(s): x for s, x in diffs.items()}}
        if all("uniform_weight" in r for r in per_seed.values()):
            entry["uniform_weight"] = {str(s): r["uniform_weight"] for s, r in per_seed.items()}
        report["arms"][arm] = entry
    report["verdict"] = _verdict(report)
    return report


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _effect(arm: str, metric: str, d: Mapping[str, Any], baseline: str) -> str:
    lo, hi = d["ci95"]
    return f"{arm}: {metric} {_signed(d['mean'])} (95 % CI {_signed(lo)} to {_signed(hi)}) vs {baseline}"


def _verdict(report: dict) -> dict:
    """The differences whose 95 % interval excludes zero, and a plain sentence about them."""
    baseline, n = report["baseline"], len(report["seeds"])
    diffs = [(arm, k, d) for arm, e in report["arms"].items() for k, d in e.get("diff_to_baseline", {}).items()]
    named = [(arm, k, d) for arm, k, d in diffs if excludes_zero(d)]
    if n < 2:
        text = (f"With 1 seed there are no confidence intervals: no difference to `{baseline}` can be told apart from "
                "seed noise. Run seeds=3 or more.")
    elif not named:
        text = (f"No difference to `{baseline}` is distinguishable from seed noise: every 95 % interval contains zero "
                f"({n} seeds).")
    else:
        text = (f"Distinguishable from seed noise (95 % interval excludes zero, {n} seeds): "
                + "; ".join(_effect(arm, k, d, baseline) for arm, k, d in named) + ". "
                + ("No other difference is distinguishable from seed noise. " if len(named) < len(diffs) else "")
                + f"Of {len(diffs)} intervals, about 1 in 20 excludes zero by chance alone when nothing differs.")
    return {
        "distinguishable": [{"arm": arm, "metric": k, "mean": d["mean"], "ci95": d["ci95"]} for arm, k, d in named],
        "text": text,
    }


def _fmt_mean_std(ms: Mapping[str, Any]) -> str:
    return f"{ms['mean']:.4f} ± " + ("n/a" if ms["std"] is None else f"{ms['std']:.4f}")


def _fmt_diff(d: Mapping[str, Any]) -> str:
    ci = d["ci95"]
    return _signed(d["mean"]) + (" [n/a]" if ci is None else f" [{_signed(ci[0])}, {_signed(ci[1])}]")


def _diagnostic_bins(arms: Mapping[str, Any]) -> tuple[str, ...]:
    """The size bins of the diagnostics table: AI-TOD's too where any arm logged them."""
    aitod = any("size/fg_very_tiny" in e["diagnostics"] for e in arms.values())
    return bin_names("aitod" if aitod else "coco")


def _triple(values: Mapping[str, float], what: str, fmt: str, scale: float = 1.0,
            names: Sequence[str] = bin_names("coco")) -> str:
    xs = [values.get(f"size/{what}_{b}", math.nan) for b in names]
    return "/".join("n/a" if not math.isfinite(x) else format(x * scale, fmt) for x in xs)


def _table(labels: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    return [
        "| arm | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        *(f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows),
        "",
    ]


def _keys_text(definition: Mapping[str, Any]) -> str:
    if definition.get("builtin"):
        return "built-in: " + definition.get("description", "")
    keys = definition.get("keys") or {}
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or "(shared keys only)"


def markdown(report: dict) -> str:
    """The report as markdown: arms, metrics per arm, paired differences with 95 % intervals, diagnostics, verdict."""
    seeds, arms, baseline = report["seeds"], report["arms"], report["baseline"]
    metrics, args, last = report["metrics"], report["common_args"], report.get("last_epochs")
    others = [a for a in arms if a != baseline]
    plural = "seed" if len(seeds) == 1 else "seeds"
    epochs = f"its last {last} validated epochs (all when it has fewer)" if last else "its validated epochs"
    lines = [
        f"# Size-adaptive loss: comparison over {len(seeds)} {plural} ({', '.join(map(str, seeds))})",
        "",
        (f"model `{args.get('model')}`, data `{args.get('data')}`, epochs {args.get('epochs', '(default)')}, "
        f"imgsz {args.get('imgsz', '(default)')}; shared size settings {report['size_settings']}. "
        f"Every number of a run is its mean over {epochs}, which reduces the noise of a single last epoch (COCO mAP; "
        "small/medium/large by area in original px)."),
        "",
        "| arm | trainer | its own keys |",
        "|---|---|---|",
        *(f"| {a} | {e['definition'].get('trainer', '?')} | {_keys_text(e['definition'])} |" for a, e in arms.items()),
        "",
        f"`{baseline}` (the first arm) is the baseline.",
        "",
    ]
    if report["left_out"]:
        lines += [f"Left out: {', '.join(report['left_out'])} (no objects of that size in the validation set).", ""]
    lines += ["Metrics, mean ± sample std over seeds:", ""]
    lines += _table(metrics, [(a, [_fmt_mean_std(e["metrics"][k]) for k in metrics]) for a, e in arms.items()])
    if others:
        lines += [
            f"Paired difference to `{baseline}` (same seed): mean [95 % CI] of the per-seed differences, "
            f"t distribution with n - 1 = {len(seeds) - 1} degrees of freedom"
            + (" (1 seed: no interval, n/a)" if len(seeds) < 2 else "") + ":",
            "",
        ]
        lines += _table(metrics, [(a, [_fmt_diff(arms[a]["diff_to_baseline"][k]) for k in metrics]) for a in others])
    for a, e in arms.items():
        if "uniform_weight" in e:
            lines += [f"`{a}` constant per seed (mean foreground weight of the same seed's size run): "
                      + ", ".join(f"seed {s}: {w:.4f}" for s, w in e["uniform_weight"].items()), ""]
    names = _diagnostic_bins(arms)
    lines += [
        (f"Assignment diagnostics ({'/'.join(b.replace('_', ' ') for b in names)}; mean over seeds of each run's mean "
         "over the same epochs; n/a: no objects or no positives in that bucket):"),
        "",
    ]
    diag_labels = ["positives %", "mean fg weight", "objects without a positive %", "positives per object",
                   "mean target score", "mean IoU"]
    rows = []
    for a, e in arms.items():
        v = e["diagnostics"]
        w = v.get("size/mean_fg_weight", math.nan)
        rows.append((a, [_triple(v, "fg", ".1f", 100, names), "n/a" if not math.isfinite(w) else f"{w:.3f}",
                         _triple(v, "unassigned", ".1f", 100, names), _triple(v, "pos_per_gt", ".2f", names=names),
                         _triple(v, "score", ".3g", names=names), _triple(v, "iou", ".3g", names=names)]))
    lines += _table(diag_labels, rows)
    reading = f"Reading: {report['verdict']['text']}"
    if "size" in arms and "uniform" in arms:
        reading += " `size` against `uniform` isolates the re-balancing between sizes from the larger overall gain."
    lines += [reading, ""]
    return "\n".join(lines)


def _jsonable(x):
    """NaN -> ``None`` (JSON has no NaN), tuples -> lists, recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def chart(report: dict, path: Path) -> None:
    """Write the chart: per-metric bars (mean ± std per arm) above the paired differences to the baseline with their
    95 % intervals and a zero line, in % of the baseline's mean. Metrics left out of the report (COCO -1) are left out
    here too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms, metrics, baseline = list(report["arms"]), report["metrics"], report["baseline"]
    others, n = [a for a in arms if a != baseline], len(report["seeds"])
    colors = {a: f"C{i % 10}" for i, a in enumerate(arms)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, 1.3 * len(metrics) * max(len(arms), 3) / 3), 8))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        ms = [report["arms"][arm]["metrics"][k] for k in metrics]
        x = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(metrics))]
        top.bar(x, [m["mean"] for m in ms], width, yerr=[m["std"] or 0.0 for m in ms], capsize=3, label=arm,
                color=colors[arm])
    top.set_xticks(range(len(metrics)), metrics)
    top.set_ylabel("mAP")
    top.set_ylim(bottom=0)
    last = report.get("last_epochs")
    title = f"mAP per arm: mean ± std over {n} seed{'s' * (n != 1)}"
    title += f" (each run: mean of up to its last {last} epochs)" if last else ""
    if report["left_out"]:
        title += f"\nleft out (no objects of that size in the validation set): {', '.join(report['left_out'])}"
    top.set_title(title)
    top.legend(fontsize="small")
    step = 0.8 / max(len(others), 1)
    # Relative to the baseline's mean, so that metrics of different sizes (mAP small ~0.02, mAP large ~0.3) share
    # one axis; the interval scales by the same constant, so whether it excludes zero does not change.
    scale = {k: 100 / abs(report["arms"][baseline]["metrics"][k]["mean"] or math.nan) for k in metrics}
    for i, arm in enumerate(others):
        ds = [report["arms"][arm]["diff_to_baseline"][k] for k in metrics]
        x = [j + (i - (len(others) - 1) / 2) * step for j in range(len(metrics))]
        mean = [d["mean"] * scale[k] for d, k in zip(ds, metrics)]
        err = [[(d["mean"] - d["ci95"][0]) * scale[k] if d["ci95"] else 0.0 for d, k in zip(ds, metrics)],
               [(d["ci95"][1] - d["mean"]) * scale[k] if d["ci95"] else 0.0 for d, k in zip(ds, metrics)]]
        bottom.errorbar(x, mean, yerr=err, fmt="o", capsize=4, color=colors[arm], label=f"{arm} - {baseline}")
    bottom.axhline(0.0, color="0.3", linewidth=1)
    bottom.set_xticks(range(len(metrics)), metrics)
    bottom.set_xlim(top.get_xlim())
    bottom.set_ylabel(f"% of {baseline}'s mean")
    bottom.set_title(f"paired difference to {baseline}, in % of its mean: mean and 95 % CI (t, {n - 1} d.f.)"
                     if n > 1 else f"paired difference to {baseline}, in % of its mean (1 seed: no interval)")
    if others:
        bottom.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, folder: Path) -> None:
    """Write ``comparison.md``, ``comparison.json`` and ``comparison.png`` into ``folder``."""
    folder = Path(folder)
    (folder / "comparison.md").write_text(markdown(report), encoding="utf-8")
    text = json.dumps(_jsonable(report), indent=2, default=str, allow_nan=False)
    (folder / "comparison.json").write_text(text + "\n", encoding="utf-8")
    chart(report, folder / "comparison.png")
