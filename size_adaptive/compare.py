"""``yolo-sa compare``: train several arms (variants) over N seeds on the same data and report them side by side.

This module plans, trains (or reuses) and reads the runs; the statistics and the report are in ``report``.

Arms. ``arms=`` is either a comma list of built-in arms (``stock`` is then always included, and first)::

    arms=stock,size,uniform,size_norm

or a YAML file (in Python also a dict) that maps arm names to their own training keys; the FIRST arm is the
baseline, every other arm is paired with it by seed::

    stock:                     # no keys and a built-in name: the built-in arm
    box_dfl:
      size_terms: box,dfl      # size_* keys, on top of the shared size_* keys of the command line (the arm's win)
    p2:
      trainer: stock           # Ultralytics' own trainer and loss (default: size, the size-adaptive trainer)
      model: yolo11n-p2.yaml   # any Ultralytics training key, on top of the shared keys (this P2 yaml: the package's)

Built-in arms (an arm with a built-in name and no keys):

- ``stock``: Ultralytics' own trainer and loss;
- ``size``: the size-adaptive loss with the shared ``size_*`` settings;
- ``uniform``: the ``size`` arm with every foreground anchor weighted by one constant, the mean weight that the
  ``size`` run of the same seed gave its foreground anchors (the mean of its ``size/mean_fg_weight`` column), and
  ``size_norm=False``: the same overall gain as ``size`` without the re-balancing between sizes, so ``size`` against
  ``uniform`` isolates the re-balancing; it needs a ``size`` arm;
- ``size_norm``: the ``size`` arm with ``size_norm=True``, the re-balancing at the stock loss scale.

Every arm shares ``data``, the command line's training keys and ``val=True``; the keys that ``compare`` sets per run
(``seed``, ``project``, ``name``, ``exist_ok``, ``resume``) cannot be given. Everything is checked before anything
trains (``check_args``): arm names given twice in the file, keys and values, each arm's model (it exists and its
task has boxes) and the data; a refusal is a ``ValueError`` naming the arm and the key.

Runs are ``<arm>-seed<k>`` folders in ``project/name``. Each run's numbers are its mean over its last ``last_epochs``
validated epochs (default 5; all when it has fewer): mAP50-95 and mAP50 (box), COCO mAP small/medium/large, mask or
pose mAP50-95 where present, and the ``size/*`` assignment diagnostics. Stock arms record those diagnostics with
``observe_assignment`` in ``size_diagnostics.csv``, without changing their training. Outputs, in the comparison folder:
``comparison.md``, ``comparison.png``, ``comparison.json`` (all numbers and every run's resolved ``args.yaml``).
Finished runs are reused, so an interrupted comparison continues where it stopped; an unfinished run is trained again
from the start; a folder holding a run whose ``args.yaml`` differs from the arm's full resolved settings (Ultralytics'
defaults and the size defaults included, so a key removed from an arm counts) is refused, naming the key.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER, colorstr

from .cfg import model_task, model_yaml
from .checks import check_run_args, load_cfg
from .demo import resolve_data
from .report import summarise, write_report
from .settings import DEFAULTS as SIZE_DEFAULTS
from .settings import KEYS as SIZE_KEYS
from .settings import SizeSettings, split_size_keys
from .trainer import DIAGNOSTICS_FILE

ARMS = ("stock", "size", "uniform", "size_norm")  # the built-in arms
DEFAULT_ARMS = ("stock", "size", "uniform")
TRAINERS = ("stock", "size")  # an arm's ``trainer``: Ultralytics' own, or the size-adaptive one
PER_RUN_KEYS = ("seed", "project", "name", "exist_ok", "resume")  # set by compare for each run
# Not compared on reuse: where a run is (its folder is the one being reused) and the machine it ran on (the device
# and the loader processes; BaseTrainer 8.4.190 canonicalises the device and sets workers=0 on CPU).
NOT_COMPARED = ("project", "name", "exist_ok", "save_dir", "device", "workers")
DEFAULT_LAST_EPOCHS = 5
METRICS = {  # report label -> results.csv column; reported where present in every run
    "mAP50-95": "metrics/mAP50-95(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP small": "metrics/mAP_small(B)",
    "mAP medium": "metrics/mAP_medium(B)",
    "mAP large": "metrics/mAP_large(B)",
    "mask mAP50-95": "metrics/mAP50-95(M)",
    "mask mAP small": "metrics/mAP_small(M)",
    "mask mAP medium": "metrics/mAP_medium(M)",
    "mask mAP large": "metrics/mAP_large(M)",
    "pose mAP50-95": "metrics/mAP50-95(P)",
}
VALIDATED = METRICS["mAP50-95"]  # a row with a value here is a validated epoch
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
PREFIX = colorstr("compare:")
_BUILTIN_TEXT = {
    "stock": "Ultralytics' own trainer and loss",
    "size": "the size-adaptive loss with the shared size settings",
    "uniform": "`size` with one constant weight per seed (that seed's `size` run's mean foreground weight), "
    "size_norm=False",
    "size_norm": "`size` with size_norm=True",
}


@dataclass(frozen=True)
class Arm:
    """One arm of a comparison.

    Attributes:
        name: the arm's name; its runs are ``<name>-seed<k>``.
        trainer: ``"stock"`` (Ultralytics' own trainer and loss) or ``"size"`` (the size-adaptive trainer).
        keys: its own keys as given (``{}`` for a built-in arm).
        args: its own Ultralytics training keys, on top of the shared ones.
        size: the resolved ``size_*`` settings of a size arm (shared keys, then its own); ``None`` for a stock arm.
        uniform: the built-in ``uniform`` arm: the ``size`` arm with one constant weight per seed, from its run.
    """

    name: str
    trainer: str = "size"
    keys: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    size: dict | None = None
    uniform: bool = False

    @property
    def builtin(self) -> bool:
        return self.name in ARMS and not self.keys

    def describe(self) -> dict:
        """How the arm is defined, for the report."""
        out = {"trainer": self.trainer, "keys": dict(self.keys), "builtin": self.builtin}
        return {**out, "description": _BUILTIN_TEXT[self.name]} if self.builtin else out


@dataclass(frozen=True)
class Plan:
    """A checked comparison: arms (the first is the baseline), seeds, shared keys; nothing trained or created yet."""

    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    settings: SizeSettings  # the shared size settings (a stock arm's diagnostics use its thresholds)
    shared_size: dict  # the shared size_* keys as given
    common: dict  # the shared Ultralytics keys, ``model`` and ``data`` (not yet resolved) included
    last_epochs: int = DEFAULT_LAST_EPOCHS

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


def load_arms(value: Any) -> dict[str, Any]:
    """``arms=`` -> ``{name: own keys or None}``: a comma list (or sequence) of built-in names, a YAML path or a dict.

    A comma list always includes ``stock``, first. A YAML file or dict is taken as given (its first arm is the
    baseline); it must map arm names to mappings of keys (or to nothing, for a built-in arm), each name once and each
    key once per arm.
    """
    source = "the arms mapping"
    if isinstance(value, (str, Path)) and _is_file_name(value):
        source = f"'{value}'"
        try:
            value = yaml.load(Path(value).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
        except _DuplicateKey as e:
            what = f"arm '{e.key}'" if e.top_level else f"key '{e.key}'"
            raise ValueError(f"arms: {what} is given twice in {source} (lines {e.first_line} and {e.line}): expected "
                             f"each {'arm name' if e.top_level else 'key of an arm'} once; got a second '{e.key}' at "
                             f"line {e.line}") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"arms: cannot read {source}: expected a readable YAML file; got {type(e).__name__}: "
                             f"{e}".replace("\n", " ")) from None
        if value is None:
            raise ValueError(f"arms: expected a YAML mapping of arm names to their keys; got an empty file {source}")
    elif isinstance(value, (str, list, tuple)):
        names = [str(a).strip() for a in (value.split(",") if isinstance(value, str) else value) if str(a).strip()]
        unknown = [a for a in names if a not in ARMS]
        if unknown or not names:
            close = difflib.get_close_matches(unknown[0], ARMS, n=1) if unknown else []
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"arms: expected a comma-separated subset of {list(ARMS)} or an arms YAML file; got "
                             f"{value!r}.{hint}")
        return dict.fromkeys(["stock", *names])  # stock first: the baseline of the paired differences
    if not isinstance(value, Mapping):  # a usage error like every other refusal: ValueError, not TypeError
        raise ValueError(  # noqa: TRY004
            "arms: expected a mapping of arm names to their keys (a YAML file, a dict or a comma list of built-in "
            f"arms); got {type(value).__name__} {value!r} in {source}"
        )
    if not value:
        got = "an empty mapping" + ("" if source == "the arms mapping" else f" in {source}")
        raise ValueError(f"arms: expected at least 2 arms (the first is the baseline); got {got}")
    return dict(value)


class _DuplicateKey(ValueError):
    """A mapping in an arms YAML that names a key twice; lines are 1-based."""

    def __init__(self, key: Any, first_line: int, line: int, top_level: bool):
        super().__init__(f"duplicate key {key!r} at lines {first_line} and {line}")
        self.key, self.first_line, self.line, self.top_level = key, first_line, line, top_level


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's ``SafeLoader``, except that a mapping naming a key twice raises ``_DuplicateKey`` (``SafeLoader``
    keeps the last value silently, so a repeated arm would vanish into one)."""

    def construct_document(self, node):
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line, node is getattr(self, "_root", None))
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader refuses it itself
                    break
        return super().construct_mapping(node, deep=deep)


def _is_file_name(value: str | Path) -> bool:
    s = str(value)
    return isinstance(value, Path) or s.lower().endswith((".yaml", ".yml")) or "/" in s or Path(s).is_file()


def check_arms(arms: Mapping[str, Any], shared_size: Mapping[str, Any]) -> tuple[Arm, ...]:
    """Validate every arm's name and keys; return the arms, the first being the baseline."""
    out = [_check_arm(name, keys, shared_size) for name, keys in arms.items()]
    if len(out) < 2:
        raise ValueError(f"arms: expected at least 2 arms (the first is the baseline); got {list(arms)}")
    names = [a.name for a in out]
    for a in out:
        if a.uniform and ("size" not in names or next(b for b in out if b.name == "size").trainer != "size"):
            raise ValueError(f"arms: arm 'uniform' (built-in) takes its constant weight from the 'size' arm's run of "
                             f"the same seed: expected a 'size' arm with the size-adaptive trainer; got arms {names}")
    return tuple(out)


def _check_arm(name: Any, keys: Any, shared_size: Mapping[str, Any]) -> Arm:
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"arms: arm {name!r}: expected a name of letters, digits, '_', '-' and '.' (it names the run "
                         f"folders '<arm>-seed<k>'); got {name!r}")
    if keys is None:
        keys = {}
    if not isinstance(keys, Mapping):  # a usage error like every other refusal: ValueError, not TypeError
        raise ValueError(  # noqa: TRY004
            f"arms: arm '{name}': expected a mapping of training keys (or nothing, for a built-in arm {list(ARMS)}); "
            f"got {type(keys).__name__} {keys!r}"
        )
    keys = dict(keys)
    if not keys and name in ARMS:
        return _builtin(name, shared_size)

    def refuse(key: str, expected: str, got: Any = None) -> ValueError:
        return ValueError(f"arms: arm '{name}', key '{key}': expected {expected}; got {got or f'{key}={keys[key]!r}'}")

    allowed = {*DEFAULT_CFG_DICT, *SIZE_KEYS, "trainer"}
    for key in keys:
        if not isinstance(key, str) or key not in allowed:
            hint = _similar_keys(str(key), sorted(allowed))
            raise refuse(str(key), "an Ultralytics training key, a size_* key or 'trainer'", f"'{key}'.{hint}")
        if key in PER_RUN_KEYS:
            raise refuse(key, f"no '{key}' in an arm: compare sets it for each run")
        if key == "data":
            raise refuse(key, "the data shared by every arm (give data= on the command line)")
        if key == "val" and keys[key] is not True:
            raise refuse(key, "True or no 'val' (every arm validates every epoch, for its metrics)")
    trainer = keys.get("trainer", "size")
    if trainer not in TRAINERS:
        raise refuse("trainer", f"one of {list(TRAINERS)} (Ultralytics' own trainer, or the size-adaptive one)")
    size, args = split_size_keys({k: v for k, v in keys.items() if k != "trainer"})
    if trainer == "stock" and size:
        key = next(iter(size))
        raise refuse(key, "no size_* keys on an arm with 'trainer: stock' (Ultralytics' own loss has no size weights)")
    for key, value in args.items():
        _check_value(key, value, f"arms: arm '{name}', key '{key}'")
    for key, value in size.items():
        try:
            SizeSettings.from_dict({key: value})
        except ValueError as e:
            msg = str(e).removeprefix(f"{key}: ")
            raise ValueError(f"arms: arm '{name}', key '{key}': {msg}") from None
    if trainer == "stock":
        return Arm(name, "stock", keys, args)
    try:
        resolved = SizeSettings.from_dict({**shared_size, **size}).as_args()
    except ValueError as e:
        raise ValueError(f"arms: arm '{name}': its size keys with the shared ones: {e}") from None
    return Arm(name, "size", keys, args, resolved)


def _builtin(name: str, shared_size: Mapping[str, Any]) -> Arm:
    if name == "stock":
        return Arm(name, "stock")
    size = SizeSettings.from_dict({**shared_size, **({"size_norm": True} if name == "size_norm" else {})})
    return Arm(name, "size", size=size.as_args(), uniform=name == "uniform")


def _similar_keys(key: str, candidates: Sequence[str]) -> str:
    """An Ultralytics-style hint naming the candidates closest to an unknown ``key`` (with their defaults), or ''."""
    close = difflib.get_close_matches(key, candidates)
    return f" Similar keys: {', '.join(_with_default(k) for k in close)}." if close else ""


def _with_default(key: str) -> str:
    default = DEFAULT_CFG_DICT.get(key)
    return f"{key}={default}" if default is not None else key


def _check_value(key: str, value: Any, where: str) -> None:
    """Ultralytics' own type and range check of one training key (``check_cfg``, as ``get_cfg`` runs it)."""
    from ultralytics.cfg import check_cfg

    try:
        check_cfg({key: value})
    except (TypeError, ValueError) as e:
        expected = f"expected a value that Ultralytics accepts for '{key}'"
        raise ValueError(f"{where}: {expected}; got {value!r} ({e})") from None


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
            hint = _similar_keys(key, list(DEFAULT_CFG_DICT))
            raise ValueError(f"{key}: expected an Ultralytics training key or a size_* key; got '{key}'.{hint}")
        if key in (*PER_RUN_KEYS, "trainer"):
            raise ValueError(f"{key}: set by 'compare' for each run (or per arm, for 'trainer'); got {key}={value!r}")
        _check_value(key, value, key)
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
    return plan


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
    plan = Plan(plan.arms, plan.seeds, plan.settings, plan.shared_size,
                {**plan.common, "data": resolve_data(plan.common["data"]), "save_json": True}, plan.last_epochs)
    folder = comparison_folder(project, name, model_task(plan.run_args(plan.arms[0], {"mean_fg_weight": 1.0})["model"]))
    for arm in plan.arms:  # refuse runs with other settings before anything trains (uniform: at its turn)
        for seed in plan.seeds:
            if not arm.uniform:
                _finished(folder / f"{arm.name}-seed{seed}", {**plan.run_args(arm), "seed": seed}, arm.trainer)
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
    if _finished(run_dir, {**args, "seed": seed}, arm.trainer):
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
        per_size_in_stock_training(trainee)  # mAP per size for segment, pose and OBB (detect has it already)
    else:
        from .model import YOLO

        trainee = YOLO(args["model"])
    trainee.train(**{k: v for k, v in args.items() if k != "model"}, seed=seed, project=str(folder),
                  name=run_dir.name, exist_ok=True)
    run = read_run(run_dir, plan.last_epochs)
    metrics = ", ".join(f"{k} {'n/a' if v is None else format(v, '.4f')}" for k, v in run["metrics"].items())
    LOGGER.info(f"{what}: done in {time.time() - t0:.0f} s, {metrics}")
    return run


def _finished(run_dir: Path, expected: dict, trainer: str) -> bool:
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
    rows = _rows(csv_file)
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


def _rows(csv_file: Path) -> list[dict[str, str]]:
    with open(csv_file, encoding="utf-8") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _mean(xs: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there are none (a bucket without objects in every epoch)."""
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.fmean(xs) if xs else math.nan


def read_run(run_dir: Path, last_epochs: int = DEFAULT_LAST_EPOCHS) -> dict:
    """A run's numbers: its mean over its last ``last_epochs`` validated epochs (all when it has fewer).

    Returns a dict with ``metrics`` ({label: float, or ``None`` where COCO wrote -1: no objects of that size in the
    validation set}; labels of ``METRICS`` that the run has), ``diagnostics`` (the ``size/*`` columns of
    ``results.csv``, or of ``size_diagnostics.csv`` for a stock run, over the same epochs; NaN where undefined),
    ``epochs`` (those averaged), ``mean_fg_weight`` (over all epochs: the ``uniform`` constant), ``args``, ``folder``.
    """
    run_dir = Path(run_dir)
    rows = [r for r in _rows(run_dir / "results.csv") if math.isfinite(_number(r.get(VALIDATED)))]
    last = rows[-last_epochs:]
    metrics = {}
    for label, col in METRICS.items():
        values = [_number(r.get(col)) for r in last]
        if last and all(math.isfinite(x) for x in values):
            metrics[label] = None if any(x < 0 for x in values) else statistics.fmean(values)
    epochs = [int(_number(r.get("epoch"))) for r in last]
    size_rows = {int(_number(r.get("epoch"))): r for r in rows if "size/fg_small" in r}
    observed = run_dir / DIAGNOSTICS_FILE
    if not size_rows and observed.exists():
        size_rows = {int(_number(r.get("epoch"))): r for r in _rows(observed)}
    diag_rows = [size_rows[e] for e in epochs if e in size_rows]
    columns = [c for c in (diag_rows[0] if diag_rows else {}) if c.startswith("size/")]
    weights = [_number(r.get("size/mean_fg_weight")) for r in rows if r.get("size/mean_fg_weight")]
    return {
        "folder": str(run_dir),
        "epochs": epochs,
        "metrics": metrics,
        "diagnostics": {c: _mean([_number(r.get(c)) for r in diag_rows]) for c in columns},
        "mean_fg_weight": statistics.fmean(weights) if weights else None,
        "args": yaml.safe_load((run_dir / "args.yaml").read_text()),
    }
