"""``yolo-sa compare``: train several arms (variants) over N seeds on the same data and report them side by side.

This module checks the arguments into a ``Plan`` and runs the train-or-reuse loop. The arms are parsed and checked in
``arms``, finished runs are read in ``runs``, and the statistics and the report are in ``report``.

Every arm shares ``data``, the command line's training keys and ``val=True``; the keys that ``compare`` sets per run
(``seed``, ``project``, ``name``, ``exist_ok``, ``resume``) cannot be given. Everything is checked before anything
trains (``check_args``): arm names given twice in the file, keys and values, each arm's model (it exists and its
task has boxes) and the data; a refusal is a ``ValueError`` naming the arm and the key.

Runs are ``<arm>-seed<k>`` folders in the comparison folder, placed as ``yolo train`` places a run
(``comparison_folder``). Finished runs are reused, so an interrupted comparison continues where it stopped; an
unfinished run is trained again from the start.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER, colorstr

from .arms import DEFAULT_ARMS, PER_RUN_KEYS, Arm, check_arms, load_arms, similar_keys
from .cfg import model_task, model_yaml
from .checks import check_run_args, check_value, load_cfg
from .demo import resolve_data
from .report import summarise, write_report
from .runs import DEFAULT_LAST_EPOCHS, finished, read_run
from .settings import SizeSettings, split_size_keys
from .whole import check_whole_images, describe, evaluate

PREFIX = colorstr("compare:")


@dataclass(frozen=True)
class Plan:
    """A checked comparison: arms (the first is the baseline), seeds, shared keys; nothing trained or created yet."""

    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    settings: SizeSettings  # the shared size settings (a stock arm's diagnostics use its thresholds)
    shared_size: dict  # the shared size_* keys as given
    common: dict  # the shared Ultralytics keys, ``model`` and ``data`` (not yet resolved) included
    last_epochs: int = DEFAULT_LAST_EPOCHS
    whole: tuple[str, ...] | None = None  # the whole images every run is judged on at the end (``whole``), or None

    def order(self) -> list[Arm]:
        """Training order within a seed: as given, except that ``uniform`` follows the ``size`` run it needs."""
        arms = [a for a in self.arms if not a.uniform]
        for u in (a for a in self.arms if a.uniform):
            arms.insert(next(i for i, a in enumerate(arms) if a.name == "size") + 1, u)
        return arms

    def run_args(self, arm: Arm, size_run: dict | None = None) -> dict:
        """The training keys of one run of ``arm`` (without the per-run keys); ``uniform`` needs its seed's size run."""
        if arm.trainer == "stock":
            args = {**self.common, **arm.args}
        elif not arm.uniform:
            args = {**self.common, **arm.args, **arm.size}
        else:
            base = self.arm("size")
            c = size_run["mean_fg_weight"]
            args = {**self.common, **base.args, **base.size, "size_weights": [c, c, c], "size_norm": False}
        return {**args, "model": model_yaml(args["model"])}  # yolo11n-p2.yaml: this package's yaml, for either trainer

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


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


def parse_last_epochs(value: Any) -> int:
    """The number of last validated epochs that each run's numbers average, >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"last_epochs: expected a whole number of epochs >= 1, e.g. last_epochs=5; got {value!r}")
    return value


def check_args(
    model: str | None = None,
    data: str | None = None,
    seeds: Any = 3,
    arms: Any = DEFAULT_ARMS,
    last_epochs: Any = DEFAULT_LAST_EPOCHS,
    project: Any = None,
    name: Any = None,
    **train_args: Any,
) -> Plan:
    """Validate a comparison's arguments before anything trains or is created; return the plan.

    ``model`` and ``data`` default to ``yolo12n.yaml`` and ``demo`` (or to those of a ``cfg=`` yaml, whose keys are
    shared keys like the other ``train_args``, the ones given winning). Every arm's full training keys pass the checks
    of ``yolo-sa train`` (``checks.check_run_args``). ``project`` and ``name`` are accepted (they name the comparison
    folder) and not checked here.
    """
    model, data, train_args = _with_cfg(model, data, train_args)
    seeds, last_epochs = parse_seeds(seeds), parse_last_epochs(last_epochs)
    shared_size, common = split_size_keys(train_args)
    settings = SizeSettings.from_dict(shared_size)
    for key, value in common.items():
        if key not in DEFAULT_CFG_DICT:
            hint = similar_keys(key, list(DEFAULT_CFG_DICT))
            raise ValueError(f"{key}: expected an Ultralytics training key or a size_* key; got '{key}'.{hint}")
        if key in (*PER_RUN_KEYS, "trainer"):
            raise ValueError(f"{key}: set by 'compare' for each run (or per arm, for 'trainer'); got {key}={value!r}")
        check_value(key, value)
    if common.get("val", True) is not True:
        raise ValueError(f"val: expected True (stock Ultralytics writes a validated row's per-size metrics into the "
                         f"wrong columns of results.csv when earlier epochs were not validated); got {common['val']!r}")
    checked = check_arms(load_arms(arms), shared_size)
    plan = Plan(checked, seeds, settings, shared_size, {"model": model, "data": data, **common}, last_epochs)
    for arm in checked:  # each arm's own run keys, checked as 'yolo-sa train' checks them
        try:
            check_run_args(plan.run_args(arm, {"mean_fg_weight": 1.0}), "train")
        except ValueError as e:
            raise ValueError(f"{e} (arm '{arm.name}')") from None
    datasets = {a.name: plan.run_args(a, {"mean_fg_weight": 1.0})["data"] for a in checked}
    whole = check_whole_images(datasets, sliced=any(a.slice for a in checked))
    return replace(plan, whole=whole)


def _with_cfg(model: Any, data: Any, train_args: dict) -> tuple[Any, Any, dict]:
    """``model``, ``data`` and the shared keys with a ``cfg=`` yaml's keys under them (as ``yolo-sa train`` takes
    them), and the defaults ``yolo12n.yaml`` and ``demo`` under both."""
    train_args = dict(train_args)
    file_keys = load_cfg(train_args.pop("cfg")) if train_args.get("cfg") else {}
    train_args = {**{k: v for k, v in file_keys.items() if k not in ("model", "data")}, **train_args}
    model = model if model is not None else file_keys.get("model", "yolo12n.yaml")
    data = data if data is not None else file_keys.get("data", "demo")
    return model, data, train_args


def comparison_folder(project: Any, name: Any, task: str) -> Path:
    """The comparison folder, by the rule of ``yolo train``'s run folder (Ultralytics' ``get_save_dir``, 8.4.190):
    ``project/name``, a relative (or no) ``project`` under Ultralytics' ``runs_dir`` and the task
    (``runs/detect/compare`` by default). Never incremented: a comparison folder is reused to continue."""
    from ultralytics.cfg import get_save_dir

    args = SimpleNamespace(project=str(project) if project else None, name=str(name or "compare"), task=task,
                           mode="train", exist_ok=True, save_dir=None)
    return Path(get_save_dir(args))


def compare(
    model: str | None = None,
    data: str | None = None,
    seeds: Any = 3,
    arms: Any = DEFAULT_ARMS,
    project: str | Path | None = None,
    name: str = "compare",
    last_epochs: int = DEFAULT_LAST_EPOCHS,
    **train_args: Any,
) -> dict:
    """Train every arm for every seed (reusing finished runs) and write the report; return its numbers.

    Args:
        model, data: as for ``yolo train``, shared by every arm (an arm may set its own ``model``); ``data="demo"``
            is the built-in demo data. Defaults: ``yolo12n.yaml`` and ``demo``, or those of ``cfg=``.
        seeds: number of seeds (0..N-1) or the seeds themselves.
        arms: a comma list or sequence of built-in arms (``ARMS``; ``stock`` is then always included, first), or a
            YAML file path or dict mapping arm names to their own keys (see the module docstring). The first arm is
            the baseline of the paired differences.
        project, name: the comparison folder, by ``yolo train``'s rule (``comparison_folder``): ``project/name``, a
            relative project under Ultralytics' ``runs_dir/<task>`` (default ``runs/detect/compare``); runs are
            ``<arm>-seed<k>`` inside it.
        last_epochs: each run's numbers are its mean over its last ``last_epochs`` validated epochs.
        train_args: any other ``yolo train`` keys and ``size_*`` keys, shared by every arm (size keys: size arms),
            ``cfg=`` a yaml of such keys.

    Raises:
        ValueError: a bad argument or arm, before anything trains or is created (``check_args``); or a run folder
            that holds a run with other settings, before anything trains.
    """
    plan = check_args(model, data, seeds, arms, last_epochs, **train_args)
    arms_resolved = tuple(replace(a, args={**a.args, "data": resolve_data(a.args["data"])}) if "data" in a.args else a
                          for a in plan.arms)  # an arm's own data: a demo keyword resolved, as the shared data
    plan = replace(plan, arms=arms_resolved,
                   common={**plan.common, "data": resolve_data(plan.common["data"]), "save_json": True})
    folder = comparison_folder(project, name, model_task(plan.run_args(plan.arms[0], {"mean_fg_weight": 1.0})["model"]))
    for arm in plan.arms:  # refuse runs with other settings before anything trains (uniform: at its turn)
        for seed in plan.seeds:
            if not arm.uniform:
                finished(folder / f"{arm.name}-seed{seed}", {**plan.run_args(arm), "seed": seed}, arm.trainer)
    LOGGER.info(f"{PREFIX} comparison folder {folder}")
    folder.mkdir(parents=True, exist_ok=True)

    steps = [(arm, seed) for seed in plan.seeds for arm in plan.order()]
    runs: dict[str, dict[int, dict]] = {arm.name: {} for arm in plan.arms}  # report order: as given
    for i, (arm, seed) in enumerate(steps, 1):
        args = plan.run_args(arm, runs.get("size", {}).get(seed))
        run = _train_or_reuse(folder, arm, seed, args, plan, f"[{i}/{len(steps)}]")
        if arm.uniform:
            run["uniform_weight"] = run["args"]["size_weights"][0]
        runs[arm.name][seed] = run
    if plan.whole:
        LOGGER.info(f"{PREFIX} every run's last.pt on the same {describe(plan.whole)}")
        for i, (arm, seed) in enumerate(steps, 1):
            args = runs[arm.name][seed]["args"]
            how = f"{arm.slice} px slices{' + a whole-image pass' * arm.slice_whole}" if arm.slice else "one pass"
            LOGGER.info(f"{PREFIX} [{i}/{len(steps)}] {arm.name} seed {seed}: whole images, {how} at imgsz "
                        f"{args['imgsz']}")
            runs[arm.name][seed]["metrics"].update(
                evaluate(folder / f"{arm.name}-seed{seed}", args["data"], args["imgsz"], arm.slice, arm.slice_whole,
                         bins=plan.settings.bins))

    report = summarise(
        runs, plan.seeds, definitions={a.name: a.describe() for a in plan.arms}, common_args=plan.common,
        size_settings=plan.settings.as_args(), last_epochs=plan.last_epochs,
    )
    write_report(report, folder)
    outputs = ", ".join(str(folder / f"comparison.{ext}") for ext in ("md", "png", "json"))
    LOGGER.info(f"{PREFIX} report in {outputs}")
    return report


def _train_or_reuse(folder: Path, arm: Arm, seed: int, args: dict, plan: Plan, step: str) -> dict:
    run_dir = folder / f"{arm.name}-seed{seed}"
    what = f"{PREFIX} {step} {arm.name} seed {seed}"
    if finished(run_dir, {**args, "seed": seed}, arm.trainer):
        LOGGER.info(f"{what}: finished earlier, reused {run_dir}")
        return read_run(run_dir, plan.last_epochs)
    if run_dir.exists():
        LOGGER.info(f"{what}: unfinished run in {run_dir}, training it again")
        shutil.rmtree(run_dir)
    LOGGER.info(f"{what}: training ...")
    t0 = time.time()
    if arm.trainer == "stock":
        from ultralytics import YOLO

        from .trainer import observe_assignment
        from .validator import per_size_in_stock_training

        trainee = YOLO(args["model"])
        observe_assignment(trainee, plan.settings)  # size_diagnostics.csv; the training stays stock
        per_size_in_stock_training(trainee, plan.settings.bins)  # segment, pose, OBB (detect has COCO's already)
    else:
        from .model import YOLO

        trainee = YOLO(args["model"])
    trainee.train(**{k: v for k, v in args.items() if k != "model"}, seed=seed, project=str(folder),
                  name=run_dir.name, exist_ok=True)
    run = read_run(run_dir, plan.last_epochs)
    metrics = ", ".join(f"{k} {'n/a' if v is None else format(v, '.4f')}" for k, v in run["metrics"].items())
    LOGGER.info(f"{what}: done in {time.time() - t0:.0f} s, {metrics}")
    return run
