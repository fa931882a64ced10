"""``yolo-sa compare``: train control arms over several seeds and report them side by side.

Arms (same model, data, epochs, image size and every other training key; one run per arm and seed):

- ``stock``: Ultralytics' own trainer and loss;
- ``size``: the size-adaptive loss with the given ``size_*`` settings;
- ``uniform``: every foreground anchor weighted by one constant, the mean weight that the ``size`` run of the same
  seed gave its foreground anchors (the mean of its ``size/mean_fg_weight`` column): the same overall gain as
  ``size`` without the re-balancing between sizes, so ``size - uniform`` isolates the re-balancing;
- ``size_norm`` (optional): the ``size`` arm with ``size_norm=True``, the re-balancing at the stock loss scale.

Each run's metrics are those of its last epoch in ``results.csv`` (mAP50-95, mAP50, COCO mAP small/medium/large).
The report gives their mean ± sample std over seeds and the paired per-seed difference to ``stock``. Outputs, in the
comparison folder: ``comparison.md``, ``comparison.png``, ``comparison.json`` (all numbers and every run's resolved
``args.yaml``). Finished runs are reused, so an interrupted comparison continues where it stopped; an unfinished run
is trained again from the start.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import yaml
from ultralytics.utils import LOGGER, colorstr

from .demo import resolve_data
from .settings import SizeSettings, split_size_keys

ARMS = ("stock", "size", "uniform", "size_norm")
DEFAULT_ARMS = ("stock", "size", "uniform")
METRICS = {
    "mAP50-95": "metrics/mAP50-95(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP small": "metrics/mAP_small(B)",
    "mAP medium": "metrics/mAP_medium(B)",
    "mAP large": "metrics/mAP_large(B)",
}
PREFIX = colorstr("compare:")


def parse_arms(value: Any) -> tuple[str, ...]:
    """``"stock,size,uniform"`` or a sequence -> validated arm names; ``stock`` is always included."""
    arms = [a.strip() for a in (value.split(",") if isinstance(value, str) else value) if str(a).strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ValueError(f"arms: expected a comma-separated subset of {list(ARMS)}; got {value!r}")
    if "uniform" in arms and "size" not in arms:
        raise ValueError(f"arms: 'uniform' takes its constant from the 'size' arm, add it; got {value!r}")
    return tuple(dict.fromkeys(["stock", *arms]))  # stock first, for the paired differences


def parse_seeds(value: Any) -> tuple[int, ...]:
    """``3`` -> seeds 0, 1, 2; ``"0,5,9"`` or a sequence -> those seeds."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            seeds = tuple(range(value))
        else:
            seeds = tuple(int(s) for s in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        seeds = ()
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds: expected a number of seeds >= 1 or distinct seeds >= 0, e.g. seeds=3; got {value!r}")
    return seeds


def check_args(arms: Any = DEFAULT_ARMS, seeds: Any = 3, **train_args: Any):
    """Validate a comparison's arguments before anything trains; return (arms, seeds, size settings, other keys)."""
    arms, seeds = parse_arms(arms), parse_seeds(seeds)
    size_keys, common = split_size_keys(train_args)
    settings = SizeSettings.from_dict(size_keys)
    for key in ("seed", "project", "name", "exist_ok", "resume", "trainer"):
        if key in common:
            raise ValueError(f"{key}: set by 'compare' for each run; got {key}={common[key]!r}")
    if common.get("val", True) is not True:
        raise ValueError(f"val: expected True (stock Ultralytics writes a validated row's per-size metrics into "
                         f"the wrong columns of results.csv when earlier epochs were not validated); got {common['val']!r}")
    return arms, seeds, settings, common


def compare(
    model: str = "yolo12n.yaml",
    data: str = "demo",
    seeds: Any = 3,
    arms: Any = DEFAULT_ARMS,
    project: str | Path = "runs/compare",
    name: str = "compare",
    **train_args: Any,
) -> dict:
    """Train every arm for every seed (reusing finished runs) and write the report; return its numbers.

    Args:
        model, data: as for ``yolo train``; ``data="demo"`` is the built-in demo data.
        seeds: number of seeds (0..N-1) or the seeds themselves.
        arms: subset of ``ARMS``; ``stock`` is always trained.
        project, name: the comparison folder is ``project/name``; runs are ``<arm>-seed<k>`` inside it.
        train_args: any other ``yolo train`` keys (shared by every arm) and the ``size_*`` keys (size arms).
    """
    arms, seeds, settings, common = check_args(arms, seeds, **train_args)
    common = {"model": model, "data": resolve_data(data), **common, "save_json": True}
    folder = Path(project) / name
    folder.mkdir(parents=True, exist_ok=True)

    plan = [(arm, seed) for seed in seeds for arm in arms]
    runs: dict[str, dict[int, dict]] = {arm: {} for arm in arms}
    for i, (arm, seed) in enumerate(plan, 1):
        size_args = _size_args(arm, settings, runs.get("size", {}).get(seed))
        runs[arm][seed] = _train_or_reuse(folder, arm, seed, {**common, **size_args}, f"[{i}/{len(plan)}]")

    report = summarise(runs, arms, seeds, common, settings)
    write_report(report, folder)
    LOGGER.info(f"{PREFIX} report in {folder / 'comparison.md'}, {folder / 'comparison.png'}, {folder / 'comparison.json'}")
    return report


def _size_args(arm: str, settings: SizeSettings, size_run: dict | None) -> dict:
    if arm == "stock":
        return {}
    if arm == "uniform":
        c = size_run["mean_fg_weight"]
        return {**settings.as_args(), "size_weights": [c, c, c], "size_norm": False}
    return {**settings.as_args(), "size_norm": arm == "size_norm"}


def _train_or_reuse(folder: Path, arm: str, seed: int, args: dict, step: str) -> dict:
    run_dir = folder / f"{arm}-seed{seed}"
    expected = {**args, "seed": seed}
    if _finished(run_dir, expected):
        LOGGER.info(f"{PREFIX} {step} {arm} seed {seed}: finished earlier, reused {run_dir}")
        return _read_run(run_dir)
    if run_dir.exists():
        LOGGER.info(f"{PREFIX} {step} {arm} seed {seed}: unfinished run in {run_dir}, training it again")
        shutil.rmtree(run_dir)
    LOGGER.info(f"{PREFIX} {step} {arm} seed {seed}: training ...")
    t0 = time.time()
    if arm == "stock":
        from ultralytics import YOLO as Trainee
    else:
        from .model import YOLO as Trainee
    Trainee(args["model"]).train(**{k: v for k, v in args.items() if k != "model"}, seed=seed,
                                 project=str(folder), name=run_dir.name, exist_ok=True)
    run = _read_run(run_dir)
    LOGGER.info(f"{PREFIX} {step} {arm} seed {seed}: done in {time.time() - t0:.0f} s, "
                + ", ".join(f"{k} {run['metrics'][k]:.4f}" for k in METRICS))
    return run


def _finished(run_dir: Path, expected: dict) -> bool:
    """A run that trained all its epochs with the expected settings; other settings in the same folder are refused."""
    args_file, csv_file = run_dir / "args.yaml", run_dir / "results.csv"
    if not (args_file.exists() and csv_file.exists()):
        return False
    args = yaml.safe_load(args_file.read_text())
    different = {  # model and data are resolved to paths, None-valued keys (size_input_thresholds) by the trainer
        k: (args.get(k), v) for k, v in expected.items()
        if k not in ("model", "data") and v is not None and _differs(args.get(k), v)
    }
    if different:
        raise ValueError(
            f"{run_dir} holds a run with other settings {different} (recorded, requested); choose another "
            f"name= for this comparison or remove that folder"
        )
    rows = _rows(csv_file)
    return len(rows) >= int(args.get("epochs", 0)) and any((run_dir / "weights" / w).exists() for w in ("best.pt", "last.pt"))


def _differs(recorded, requested) -> bool:
    if isinstance(requested, (list, tuple)) and isinstance(recorded, (list, tuple)):
        return len(recorded) != len(requested) or any(_differs(a, b) for a, b in zip(recorded, requested))
    if isinstance(requested, float) or isinstance(recorded, float):
        try:
            return not math.isclose(float(recorded), float(requested), rel_tol=1e-9)
        except (TypeError, ValueError):
            return True
    return recorded != requested


def _rows(csv_file: Path) -> list[dict[str, str]]:
    with open(csv_file, encoding="utf-8") as f:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]


def _read_run(run_dir: Path) -> dict:
    rows = _rows(run_dir / "results.csv")
    weights = [float(r["size/mean_fg_weight"]) for r in rows if r.get("size/mean_fg_weight")]
    return {
        "folder": str(run_dir),
        "metrics": {k: float(rows[-1][col]) for k, col in METRICS.items()},
        "mean_fg_weight": statistics.fmean(weights) if weights else None,
        "fg_shares": {s: float(rows[-1][f"size/fg_{s}"]) for s in ("small", "medium", "large")} if weights else None,
        "args": yaml.safe_load((run_dir / "args.yaml").read_text()),
    }


def _mean_std(xs: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def summarise(runs: dict, arms: Sequence[str], seeds: Sequence[int], common: dict, settings: SizeSettings) -> dict:
    """Means, spreads and paired differences to ``stock`` of every arm."""
    out = {"seeds": list(seeds), "arms": {}, "common_args": common, "size_settings": settings.as_args()}
    for arm in arms:
        per_seed = {s: runs[arm][s]["metrics"] for s in seeds}
        entry = {
            "runs": {str(s): runs[arm][s] for s in seeds},
            "metrics": {k: _mean_std([per_seed[s][k] for s in seeds]) for k in METRICS},
        }
        if arm != "stock":
            entry["diff_to_stock"] = {
                k: _mean_std([per_seed[s][k] - runs["stock"][s]["metrics"][k] for s in seeds]) for k in METRICS
            }
        if arm == "uniform":
            entry["uniform_weight"] = {str(s): runs["size"][s]["mean_fg_weight"] for s in seeds}
        out["arms"][arm] = entry
    return out


def _fmt(ms: dict, signed: bool = False) -> str:
    return f"{ms['mean']:+.4f} ± {ms['std']:.4f}" if signed else f"{ms['mean']:.4f} ± {ms['std']:.4f}"


def markdown(report: dict) -> str:
    """The report as markdown: metrics per arm, then paired differences to stock."""
    seeds, arms = report["seeds"], report["arms"]
    args = report["common_args"]
    head = "| arm | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS) + "\n"
    lines = [
        f"# Size-adaptive loss: comparison over {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        f"model `{args['model']}`, data `{args['data']}`, epochs {args.get('epochs', '(default)')}, "
        f"imgsz {args.get('imgsz', '(default)')}; size settings {report['size_settings']}. "
        "Metrics of each run's last epoch (COCO mAP; small/medium/large by area in original px), mean ± sample std "
        "over seeds.",
        "",
        head + "".join(f"| {arm} | " + " | ".join(_fmt(arms[arm]["metrics"][k]) for k in METRICS) + " |\n" for arm in arms),
    ]
    others = [a for a in arms if a != "stock"]
    if others:
        lines += [
            "Paired difference to `stock` (same seed; mean ± std of the per-seed differences):",
            "",
            head + "".join(f"| {arm} | " + " | ".join(_fmt(arms[arm]["diff_to_stock"][k], True) for k in METRICS)
                           + " |\n" for arm in others),
        ]
    if "uniform" in arms:
        weights = arms["uniform"]["uniform_weight"]
        lines += ["`uniform` constant per seed (mean weight of the `size` run's foreground anchors): "
                  + ", ".join(f"seed {s}: {w:.4f}" for s, w in weights.items()), ""]
    diffs = [(f"{arm} {k}", d) for arm in others for k, d in arms[arm]["diff_to_stock"].items()]
    noisy = [name for name, d in diffs if len(seeds) < 2 or abs(d["mean"]) <= 2 * d["std"]]
    verdict = (
        "Every difference here is more than two standard deviations from zero." if not noisy
        else "Every difference here is within about two standard deviations of zero: no evidence either way."
        if len(noisy) == len(diffs) else f"Within about two standard deviations of zero here: {', '.join(noisy)}."
    )
    lines += [
        "Reading: a difference is only evidence when it is large against its spread over seeds. " + verdict
        + " `size - uniform` isolates the re-balancing between sizes from the larger overall loss gain.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict, folder: Path) -> None:
    """Write ``comparison.md``, ``comparison.json`` and the ``comparison.png`` bar chart into ``folder``."""
    (folder / "comparison.md").write_text(markdown(report), encoding="utf-8")
    (folder / "comparison.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["mAP small", "mAP medium", "mAP large", "mAP50-95"]
    arms = list(report["arms"])
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, arm in enumerate(arms):
        ms = [report["arms"][arm]["metrics"][k] for k in keys]
        ax.bar([j + (i - (len(arms) - 1) / 2) * width for j in range(len(keys))], [m["mean"] for m in ms], width,
               yerr=[m["std"] for m in ms], capsize=3, label=arm)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel("COCO mAP (last epoch)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"mAP by object size, mean ± std over {len(report['seeds'])} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "comparison.png", dpi=120)
    plt.close(fig)
