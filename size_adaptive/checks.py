"""The up-front checks of a run's keys: one rule for ``yolo-sa train``, each arm of ``yolo-sa compare`` and the
Python API, run before Ultralytics creates a run folder.

Each check raises a ``ValueError`` whose text starts with the key (``"data: expected ...; got ..."``); the CLI prints
it as one ``yolo-sa: error: ...`` line with exit status 2. What needs the data itself (the training labels, for
``size_nwd_c=auto``) is checked by the trainer, which removes the run folder it created when it refuses
(``SizeAdaptiveTraining._setup_train``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cfg import model_task, model_yaml

ARCHIVES = (".zip", ".tar", ".tgz", ".gz")  # dataset archives that Ultralytics' check_det_dataset unpacks


def check_run_args(args: Mapping[str, Any], mode: str = "train") -> None:
    """Check the keys of one ``yolo-sa`` run (a ``cfg=`` yaml's keys already merged in, the command line winning).

    Every mode: the ``size_*`` keys, Ultralytics' type and range checks of its keys (``check_cfg``, as ``get_cfg``
    runs it), ``imgsz``, and that ``model`` and ``data`` name something Ultralytics can open without a traceback.
    ``train`` (given a model and data): also a task with boxes, demo data of the model's task, training images in the
    data, and ``size_assign`` values that the model's assigner takes (no NWD for YOLO26 segment and pose).
    """
    from ultralytics.utils import DEFAULT_CFG_DICT

    from .settings import SizeSettings, split_size_keys

    size, stock = split_size_keys(args)
    settings = SizeSettings.from_dict(size)
    for key, value in stock.items():
        if key in DEFAULT_CFG_DICT and key != "cfg":
            check_value(key, value)
    check_model_file(stock.get("model"))
    check_data_file(stock.get("data"), folder_ok=mode != "train")
    if mode != "train" or stock.get("model") is None or stock.get("data") is None or _resuming(stock):
        return
    from .model import check_box_task
    from .trainer import check_demo_task

    model, data = stock["model"], stock["data"]
    task = stock.get("task") or model_task(model)
    check_box_task(task, model)
    check_demo_task(data, task)
    check_data_images(data)
    if settings.assign != "stock":
        check_assign_for_model(model, settings.assign)


def load_cfg(cfg) -> dict:
    """The keys of a ``cfg=`` yaml; a ``ValueError`` naming ``cfg`` when it is not a readable yaml mapping."""
    if not Path(cfg).is_file():
        raise ValueError(f"cfg: expected an existing yaml file; got {cfg!r}")
    try:
        from ultralytics.utils import YAML

        keys = YAML.load(cfg) or {}
    except Exception as e:  # noqa: BLE001 (YAML's own error classes)
        raise ValueError(f"cfg: expected a readable yaml file; got {cfg!r} ({type(e).__name__})") from None
    if not isinstance(keys, dict):
        raise ValueError(f"cfg: expected a yaml mapping of keys to values; got {cfg!r} holding {type(keys).__name__}")
    return keys


def check_value(key: str, value: Any) -> None:
    """Ultralytics' own type and range check of one key (``check_cfg``), and ``imgsz``, which it does not check."""
    from ultralytics.cfg import check_cfg

    if key == "imgsz":
        sides = list(value) if isinstance(value, (list, tuple)) else [value]
        if not 1 <= len(sides) <= 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                               for s in sides):
            raise ValueError(f"imgsz: expected a whole number of px > 0 (or two, h,w); got imgsz={value!r}")
        return
    try:
        check_cfg({key: value})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: expected a value that Ultralytics accepts for '{key}'; got {key}={value!r} "
                         f"({e})") from None


def _resuming(stock: Mapping[str, Any]) -> bool:
    resume = stock.get("resume")
    return resume is True or (isinstance(resume, (str, Path)) and str(resume).lower() not in {"", "false"})


def check_resume(checkpoint: Any) -> None:
    """Refuse to resume a checkpoint with nothing left to train, before Ultralytics would start a new run from it (and
    fall back to its default data): a finished run's ``last.pt`` or ``best.pt`` (``strip_optimizer``, 8.4.190, drops
    the optimizer and sets ``epoch`` to -1) or a checkpoint without training state. A path that does not exist is left
    to Ultralytics' own "Resume checkpoint not found"."""
    from ultralytics.utils.patches import torch_load

    if not isinstance(checkpoint, (str, Path)) or not Path(checkpoint).is_file():
        return
    try:
        ckpt = torch_load(checkpoint, map_location="cpu")
    except Exception as e:  # noqa: BLE001 (unpickling raises many kinds)
        raise ValueError(f"resume: expected a training checkpoint (last.pt); got {checkpoint} ({type(e).__name__}: "
                         f"{e})") from None
    if not isinstance(ckpt, dict) or (ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None):
        return
    epochs = (ckpt.get("train_args") or {}).get("epochs")
    if epochs:
        raise ValueError(f"resume: {checkpoint} finished its {epochs} epochs: nothing to resume")
    raise ValueError(f"resume: expected the last.pt of an unfinished training run; got {checkpoint} (no training "
                     f"state: nothing to resume)")


def check_model_file(model: Any) -> None:
    """Refuse a model that Ultralytics would not find, before anything starts: a ``ValueError`` naming ``model`` and
    the value.

    A yaml is looked up as Ultralytics' ``yaml_model_load`` does (a path, a name it ships, one of this package's); a
    ``.pt`` file must exist or be a name that Ultralytics downloads (``GITHUB_ASSETS_NAMES``); a name without suffix
    must exist (an exported model folder) or be a stem that Ultralytics completes to a ``.pt`` it downloads
    (``yolo11n``). Other suffixes (exported formats) and URLs are left to Ultralytics.
    """
    from ultralytics.nn.tasks import yaml_model_load
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, GITHUB_ASSETS_STEMS

    if not isinstance(model, (str, Path)) or "://" in str(model):
        return
    path = Path(model_yaml(model))
    if path.suffix in (".yaml", ".yml"):
        try:
            yaml_model_load(path)
            return
        except FileNotFoundError:
            pass
    elif path.exists() or (path.suffix == ".pt" and str(model) in GITHUB_ASSETS_NAMES):
        return
    elif path.suffix == "" and str(model) in GITHUB_ASSETS_STEMS:
        return
    elif path.suffix not in ("", ".pt"):
        return
    raise ValueError(f"model: expected an existing model yaml or .pt file, or a name that Ultralytics ships "
                     f"(yolo11n.yaml, yolo11n.pt) or this package ships (yolo11n-p2.yaml ... yolo12x-p2.yaml); "
                     f"got '{model}' (not found)")


def check_data_file(data: Any, folder_ok: bool = True) -> None:
    """Refuse a dataset that Ultralytics would not find, before anything starts: a ``ValueError`` naming ``data``,
    what was expected and the value, with the closest demo keyword where one is near (``demo_seg``: ``demo-seg``).

    Passes: a demo keyword (``demo``, ``demo-seg``, ...), a yaml path, a yaml that Ultralytics ships with or without
    its suffix (``coco8.yaml``, ``coco8``: their images download on first use), an existing archive, a URL, and (where
    ``folder_ok``: not for training a box task) a folder holding one dataset yaml.
    """
    from ultralytics.utils.checks import check_yaml

    from .demo import demo_keywords

    if data is None or not isinstance(data, (str, Path)) or "://" in str(data):
        return
    text = str(data).strip()
    if text.lower() in demo_keywords():
        return
    path = Path(text)
    expected = (f"an existing dataset yaml, one that Ultralytics ships (coco8.yaml, VisDrone.yaml) or a demo keyword "
                f"({', '.join(demo_keywords())})")
    close = difflib.get_close_matches(text.lower(), list(demo_keywords()), n=1, cutoff=0.75)
    hint = f". Did you mean data={close[0]}?" if close else ""
    if path.is_dir():
        if folder_ok:
            return
        raise ValueError(f"data: expected {expected}; got the folder '{text}' (give its dataset yaml){hint}")
    if path.suffix in (".yaml", ".yml"):
        if check_yaml(text, hard=False):
            return
        raise ValueError(f"data: expected {expected}; got '{text}' (not found){hint}")
    if path.is_file() and text.lower().endswith(ARCHIVES):
        return
    if path.suffix == "" and any(check_yaml(f"{text}{s}", hard=False) for s in (".yaml", ".yml")):
        return  # a bare name of a yaml that Ultralytics ships: check_det_dataset adds the suffix
    got = f"'{text}' ({'not a yaml file' if path.is_file() else 'not found'})"
    raise ValueError(f"data: expected {expected}; got {got}{hint}")


def check_data_images(data: Any) -> None:
    """Refuse a dataset yaml whose ``train`` or ``val`` images are missing, or whose training images are none, with
    Ultralytics' own parsing (``check_det_dataset`` without downloads). A yaml with a ``download`` entry (Ultralytics'
    own, e.g. ``coco8.yaml``), a demo keyword and anything that is not a yaml file are left to Ultralytics."""
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    from .demo import demo_keywords

    if not isinstance(data, (str, Path)) or str(data).strip().lower() in demo_keywords():
        return
    if Path(data).suffix not in (".yaml", ".yml") or not (file := check_yaml(str(data), hard=False)):
        return
    try:
        content = YAML.load(file)
    except Exception as e:  # noqa: BLE001 (any parse error: YAML's own classes)
        raise ValueError(f"data: expected a readable dataset yaml; got '{data}' ({type(e).__name__}: {e})") from None
    if not isinstance(content, dict):
        raise ValueError(f"data: expected a dataset yaml mapping train, val and names; got '{data}' holding "
                         f"{type(content).__name__}")
    if content.get("download"):
        return
    try:
        parsed = check_det_dataset(file, autodownload=False)
    except (FileNotFoundError, SyntaxError, TypeError, AssertionError) as e:
        reason = str(e).split("\n")[0].replace("❌", "").strip()
        raise ValueError(f"data: expected a dataset yaml whose images exist; got '{data}' ({reason})") from None
    train = parsed.get("train")
    for folder in train if isinstance(train, list) else [train]:
        if not _has_images(Path(folder), IMG_FORMATS):
            raise ValueError(f"data: expected training images in '{folder}'; got none ('{data}', key 'train')")


def _has_images(path: Path, formats) -> bool:
    if path.is_dir():
        return any(p.suffix[1:].lower() in formats for p in path.rglob("*") if p.is_file())
    if path.is_file() and path.suffix == ".txt":  # a list of image files
        return any(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return False


def check_assign_for_model(model: Any, mode: str) -> None:
    """Refuse a ``size_assign`` mode that the model's assigner does not take (NWD on YOLO26 segment and pose),
    building the model from its yaml or checkpoint as training would."""
    from .assign import check_model_assign
    from .model import YOLO

    check_model_assign(YOLO(model).model, mode)
