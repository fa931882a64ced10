"""``yolo-sa``: the ``yolo`` command with the size-adaptive loss.

``yolo-sa train model=yolo12n.yaml data=VisDrone.yaml epochs=300 size_weights=2,1.5,1``: every ``yolo`` argument works
as in ``yolo`` (this runs Ultralytics' own CLI entrypoint), plus the ``size_*`` keys and the demo data keywords
(``data=demo``, ``demo-seg``, ``demo-pose``, ``demo-obb``). Detect, segment, pose and OBB models train with the
size-adaptive loss; other tasks are refused by name. ``val``, ``predict`` and ``export`` behave as in ``yolo``; ``val``
also reports mAP small/medium/large (every box task).
"""

from __future__ import annotations

import contextlib
import sys

from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER

from .checks import load_cfg
from .settings import DEFAULTS, help_lines, split_size_keys

HELP_WORDS = {"help", "-h", "--help", "h"}
DEFAULT_TRAIN = {"model": "yolo12n.yaml", "data": "demo"}

HELP = """\
yolo-sa: Ultralytics 'yolo' with size-adaptive loss weighting.

    yolo-sa [TASK] MODE ARGS      MODE: train, val, predict, export, ...; ARGS: any 'yolo' key=value

    yolo-sa train model=yolo12n.yaml data=VisDrone.yaml epochs=300 imgsz=640 size_weights=2,1.5,1
    yolo-sa train data=demo epochs=40 imgsz=256 nbs=16 # built-in synthetic small-object data
    yolo-sa train model=yolo11n-seg.yaml data=demo-seg size_terms=box,dfl   # also -pose/demo-pose, -obb/demo-obb
    yolo-sa train model=yolo11n-p2.yaml data=demo      # P2 (stride-4) heads for YOLO11/12, n/s/m/l/x, shipped here
    yolo-sa val model=runs/detect/train/weights/best.pt data=demo
    yolo-sa train resume model=runs/detect/train/weights/last.pt
    yolo-sa compare model=yolo11n.yaml data=demo epochs=40 imgsz=256 seeds=3 arms=cfg/study.yaml name=study

  Without model= or data=, 'yolo-sa train' uses model=yolo12n.yaml and the demo data of the model's task.

  Size-adaptive settings (train):
{weighting}

  Assignment and box term (train; defaults are stock):
{assignment}

  Per-size evaluation (train, val):
{evaluation}

  What to try first on aerial data: size_terms=box,dfl, and a P2 head (model=yolo11n-p2.yaml) with
  'yolo-sa compare' against stock; the default rule has not lifted mAP small on real aerial data.

  compare (see size_adaptive/compare.py): trains every arm over seeds with the shared training keys and reports
  each arm's per-seed paired difference to the first arm (the baseline) with its 95 % confidence interval.
    arms=stock,size,uniform    built-in arms (stock always included, first; also size_norm), or
    arms=arms.yaml             arm name -> its own keys: size_* keys, any 'yolo' train key, trainer: stock|size
    seeds=3                    number of seeds (0..N-1), or the seeds, e.g. seeds=0,5,9
    last_epochs=5              each run's numbers are its mean over its last N validated epochs
  Reuses finished runs; writes comparison.md/.png/.json to project/name, placed as yolo train places a run
  (default runs/detect/compare; a relative project goes under Ultralytics' runs_dir/<task>).

  Large images (see docs/large_images.md; data=demo-large: built-in whole images of 1,600-2,048 px):
    yolo-sa advise data=aerial.yaml imgsz=640 [model=...]     object sizes at native res. and after the resize; a lever
    yolo-sa tile data=aerial.yaml tile=640 overlap=0.2 min_visible=0.6 background=0.1 out=aerial_tiles [task=obb]
                               a tiled copy (detect, segment, OBB) whose data.yaml names the whole val set (val_whole)
    yolo-sa val model=best.pt data=aerial_tiles/data.yaml slice=640 overlap=0.2 slice_whole=True batch=16
                               slices of the whole images, merged; per-size mAP in original px (slice=0: as yolo)
    yolo-sa predict model=best.pt source=DIR slice=640 save_txt=True
                               slice by slice; images and YOLO labels in the original images' px
    In compare, an arm may set its own data (the tiles) and slice: every arm is then also judged on the whole images.

  The stock 'yolo' help follows.
""".format(weighting="\n".join(help_lines("weighting")),
           assignment="\n".join(help_lines("assignment")), evaluation="\n".join(help_lines("evaluation")))


COMMANDS = {"tile": ".tile", "advise": ".advise"}  # yolo-sa MODE key=value ...: the module's run(**keys)
SLICED = {"val": ("sliced_val", "val"), "predict": ("sliced", "predict")}  # yolo-sa val|predict slice=N (N > 0)


def main(argv: list[str] | None = None) -> int:
    """Run ``yolo-sa``; return the exit status (2 for a usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].lower() in HELP_WORDS:
        print(HELP)
        from ultralytics.cfg import CLI_HELP_MSG

        print(CLI_HELP_MSG)
        return 0
    if args[0] in COMMANDS:
        return _command(args[0], args[1:])
    if "compare" in args:
        return _compare(args)
    try:  # usage errors that we find before Ultralytics starts anything: no run folder yet
        mode = _mode(args)
        given = _given(args)
        if mode in SLICED and str(given.get("slice", 0)).strip() not in {"0", ""}:
            return _sliced(mode, given)
        args = [a for a in args if not a.startswith("slice=")]  # slice=0: today's whole-image val/predict
        _check_run({k: v for k, v in given.items() if k != "slice"}, mode)
        args = _with_train_defaults(args)
    except (ValueError, SyntaxError) as e:
        return _usage_error(e)
    try:
        with _yolo_sa_entrypoint(args):
            from ultralytics.cfg import entrypoint

            entrypoint()
    except (ValueError, SyntaxError) as e:  # Ultralytics' unknown-key errors and ours raised in training's setup
        if not _is_usage_error(e):
            raise
        return _usage_error(e)
    return 0


def _usage_error(e: Exception) -> int:
    """Print one ``yolo-sa: error: ...`` line for a usage error; return the exit status 2."""
    print(f"yolo-sa: error: {e}".strip().replace("\n", " "), file=sys.stderr)
    return 2


def _command(mode: str, args: list[str]) -> int:
    """``yolo-sa tile`` / ``advise``: key=value arguments (strings) to the module's ``run``, which checks them all
    before it writes anything."""
    import importlib

    try:
        words = [a for a in args if "=" not in a]
        if words:
            raise ValueError(f"{mode}: expected key=value arguments after '{mode}'; got {words}")
        importlib.import_module(COMMANDS[mode], __package__).run(**_key_values(args))
    except (ValueError, SyntaxError) as e:
        return _usage_error(e)
    return 0


def _sliced(mode: str, given: dict) -> int:
    """``yolo-sa val|predict slice=N``: slice by slice on whole images (``sliced_val.val``, ``sliced.predict``), with
    the keys given on the command line (their own defaults for the rest); a key that they do not take is refused."""
    import importlib
    import inspect

    module, name = SLICED[mode]
    func = getattr(importlib.import_module(f".{module}", __package__), name)
    accepted = set(inspect.signature(func).parameters)
    keys = {k: v for k, v in given.items() if k not in ("mode", "task")}
    try:
        unknown = sorted(set(keys) - accepted)
        if unknown:
            raise ValueError(f"{unknown[0]}: expected a key of sliced {mode} ({', '.join(sorted(accepted))}); got "
                             f"{unknown[0]}={keys[unknown[0]]!r}")
        func(**keys)
    except (ValueError, SyntaxError) as e:
        return _usage_error(e)
    return 0


def _mode(args: list[str]) -> str | None:
    """The Ultralytics mode word of the command line (``train``, ``val``, ...), or ``mode=``; None when absent."""
    from ultralytics.cfg import MODES

    words = [a for a in args if "=" not in a]
    return next((w for w in words if w in MODES), _key_values(args).get("mode"))


def _given(args: list[str]) -> dict:
    """The keys of a command line as Ultralytics parses them (``parse_key_value_pair``), on top of a ``cfg=`` yaml's
    keys (the command line wins, as in Ultralytics' entrypoint); ``size_*`` values as typed. A malformed pair is
    skipped: Ultralytics' own parser says what is wrong with it."""
    from ultralytics.cfg import merge_equals_args, parse_key_value_pair

    given = {}
    if cfg := _key_values(args).get("cfg"):
        given.update(load_cfg(cfg))
    for a in merge_equals_args(args):
        if "=" in a:
            try:
                given.update([parse_key_value_pair(a)])
            except (AssertionError, NameError, SyntaxError, ValueError):
                continue
    given.update(split_size_keys(_key_values(args))[0])  # as typed: our parsers read the text ('2,1.5,1')
    if "resume" in args:
        given["resume"] = True
    return given


def _compare(args: list[str]) -> int:
    """``yolo-sa compare``: parse and check everything first (usage errors exit 2), then train the arms."""
    from ultralytics.cfg import (
        check_dict_alignment,
        merge_equals_args,
        parse_key_value_pair,
    )

    from .compare import DEFAULT_ARMS, DEFAULT_LAST_EPOCHS, check_args, compare

    try:
        words = [a for a in merge_equals_args(args) if "=" not in a and a != "compare"]
        if words:
            raise ValueError(f"compare: expected key=value arguments after 'compare'; got {words}")
        kv = dict(parse_key_value_pair(a) for a in merge_equals_args(args) if "=" in a)
        compare_keys = {"seeds": 3, "arms": ",".join(DEFAULT_ARMS), "last_epochs": DEFAULT_LAST_EPOCHS}
        check_dict_alignment({**DEFAULT_CFG_DICT, **DEFAULTS, **compare_keys}, kv)
        if "cfg" in kv:  # its keys are shared keys like the command line's (size keys: for the size arms)
            cfg = kv.pop("cfg")
            kv = {**load_cfg(cfg), **kv}
            check_dict_alignment({**DEFAULT_CFG_DICT, **DEFAULTS, **compare_keys}, kv)
        kv = {**DEFAULT_TRAIN, **kv}
        check_args(**kv)  # every arm and key, before anything trains or is created
        compare(**kv)
    except (ValueError, SyntaxError) as e:
        if not _is_usage_error(e):
            raise
        return _usage_error(e)
    return 0


def _is_usage_error(e: Exception) -> bool:
    """Errors that name a bad argument: ours (a key, the demo size, the task, demo data of another task) and
    Ultralytics' key/value checks."""
    from ultralytics.cfg import MODES

    if isinstance(e, SyntaxError):
        return True
    if str(e).startswith("'size_"):  # an unknown size key ('size_nrom' is not a valid size-adaptive setting: ...)
        return True
    word = str(e).split(":", 1)[0].strip("'") if ":" in str(e) else ""
    return word in DEFAULT_CFG_DICT or word in DEFAULTS or word in MODES or word in {
        "YOLO_SA_DEMO_SIZE", "cfg", "task", "data", "compare", "arms", "seeds", "last_epochs", *COMMANDS}


def _key_values(args: list[str]) -> dict[str, str]:
    from ultralytics.cfg import merge_equals_args

    return dict(a.split("=", 1) for a in merge_equals_args(args) if "=" in a)


def _with_train_defaults(args: list[str]) -> list[str]:
    """``yolo-sa train`` without model=/data= trains yolo12n.yaml on the demo data of the model's task, and
    ``resume=last.pt`` resumes that checkpoint: no download of Ultralytics' default model and data."""
    if "train" not in args:
        return args
    given = _key_values(args)
    resume = given.get("resume", "")
    if resume.lower() not in {"", "true", "false"} and "model" not in given:
        return args + [f"model={resume}"]  # resume=last.pt: its model, not a download of yolo26n.pt
    resuming = "resume" in args or resume.lower() == "true"
    missing = {k: v for k, v in DEFAULT_TRAIN.items() if k not in given and not resuming}
    if "data" in missing:  # the demo data of the model's task: demo-seg for a -seg model, ...
        missing["data"] = _demo_data_for(given)
        if missing["data"] is None:  # a task without boxes: refused by YOLO.train, with the task named
            del missing["data"]
    for k, v in missing.items():
        LOGGER.warning(f"'{k}' argument is missing. Using 'yolo-sa' default '{k}={v}'.")
    return args + [f"{k}={v}" for k, v in missing.items()]


def _demo_data_for(given: dict) -> str | None:
    from .cfg import model_task
    from .demo import DEMO_KEYWORDS

    task = given.get("task") or model_task(given.get("model", DEFAULT_TRAIN["model"]))
    return DEMO_KEYWORDS.get(task)


def _check_run(given: dict, mode: str | None) -> None:
    """Validate the keys of the command line and of a ``cfg=`` yaml (``_given``) before Ultralytics starts anything:
    the size keys, Ultralytics' value checks, the model and data (and, to train, what ``checks.check_run_args``
    checks), and a checkpoint to resume that has nothing left to train."""
    from .checks import check_model_file, check_resume, check_run_args

    given = dict(given)  # the train defaults are added to a copy
    size = split_size_keys(given)[0]
    resume = given.get("resume")
    if mode == "train" and resume not in (None, False, "False", "false", ""):
        check_resume(resume if isinstance(resume, str) and resume.lower() != "true" else given.get("model"))
    elif mode == "train":  # the defaults that _with_train_defaults adds
        given.setdefault("model", DEFAULT_TRAIN["model"])
        check_model_file(given["model"])  # before its task is read for the demo data
        if "data" not in given:
            given["data"] = _demo_data_for(given)
    check_run_args(given, mode or "")
    ignored = sorted(k for k in size if not (k == "size_bins" and mode == "val"))  # val reports mAP in size_bins
    if ignored and mode != "train":
        LOGGER.warning(f"size_* settings only act in training; ignored here: {ignored}")


@contextlib.contextmanager
def _yolo_sa_entrypoint(args: list[str]):
    """Let Ultralytics' CLI entrypoint run as the ``yolo`` command with our ``YOLO`` and keys; restored afterwards."""
    import ultralytics

    from .model import YOLO

    missing = object()
    saved_argv, saved_yolo = sys.argv[:], ultralytics.__dict__.get("YOLO", missing)
    added = [k for k in DEFAULTS if k not in DEFAULT_CFG_DICT]
    # Ultralytics reads the command line from sys.argv (aliased as ARGV in its modules) and decides from argv[0]
    # whether it runs as 'yolo' (predict then saves and streams as on the command line), so edit the list in place.
    sys.argv[:] = ["yolo", *args]
    ultralytics.YOLO = YOLO  # the entrypoint builds the model with 'from ultralytics import YOLO'
    DEFAULT_CFG_DICT.update({k: DEFAULTS[k] for k in added})  # accepted keys, with close-match suggestions
    try:
        yield
    finally:
        sys.argv[:] = saved_argv
        if saved_yolo is missing:
            del ultralytics.YOLO
        else:
            ultralytics.YOLO = saved_yolo
        for k in added:
            DEFAULT_CFG_DICT.pop(k, None)


if __name__ == "__main__":
    sys.exit(main())
