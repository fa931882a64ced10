"""The arms of ``yolo-sa compare``: parsing ``arms=`` (its own YAML loader, which refuses a name given twice) and
checking each arm's name and keys.

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
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ultralytics.utils import DEFAULT_CFG_DICT

from .checks import check_value
from .settings import KEYS as SIZE_KEYS
from .settings import SizeSettings, split_size_keys

ARMS = ("stock", "size", "uniform", "size_norm")  # the built-in arms
DEFAULT_ARMS = ("stock", "size", "uniform")
ARM_KEYS = ("trainer", "slice", "slice_whole")  # an arm's keys that are not training keys
TRAINERS = ("stock", "size")  # an arm's ``trainer``: Ultralytics' own, or the size-adaptive one
PER_RUN_KEYS = ("seed", "project", "name", "exist_ok", "resume")  # set by compare for each run
SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
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
        slice: the slice size (px) of the arm's evaluation on the whole images at the end (``compare``); 0: the whole
            image in one pass at the arm's ``imgsz``.
        slice_whole: with ``slice``, also merge one whole-image pass (as ``yolo-sa val slice_whole=True``).
    """

    name: str
    trainer: str = "size"
    keys: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    size: dict | None = None
    uniform: bool = False
    slice: int = 0
    slice_whole: bool = True

    @property
    def builtin(self) -> bool:
        return self.name in ARMS and not self.keys

    def describe(self) -> dict:
        """How the arm is defined, for the report."""
        out = {"trainer": self.trainer, "keys": dict(self.keys), "builtin": self.builtin}
        return {**out, "description": _BUILTIN_TEXT[self.name]} if self.builtin else out


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

    allowed = {*DEFAULT_CFG_DICT, *SIZE_KEYS, *ARM_KEYS}
    for key in keys:
        if not isinstance(key, str) or key not in allowed:
            hint = similar_keys(str(key), sorted(allowed))
            raise refuse(str(key), f"an Ultralytics training key, a size_* key, or one of {list(ARM_KEYS)}",
                         f"'{key}'.{hint}")
        if key in PER_RUN_KEYS:
            raise refuse(key, f"no '{key}' in an arm: compare sets it for each run")
        if key == "val" and keys[key] is not True:
            raise refuse(key, "True or no 'val' (every arm validates every epoch, for its metrics)")
    trainer = keys.get("trainer", "size")
    if trainer not in TRAINERS:
        raise refuse("trainer", f"one of {list(TRAINERS)} (Ultralytics' own trainer, or the size-adaptive one)")
    size, args = split_size_keys({k: v for k, v in keys.items() if k not in ARM_KEYS})
    slice_px = keys.get("slice", 0)
    if isinstance(slice_px, bool) or not isinstance(slice_px, int) or slice_px < 0:
        raise refuse("slice", "a whole number of px >= 0 (0: the whole image in one pass)")
    slice_whole = keys.get("slice_whole", True)
    if not isinstance(slice_whole, bool):
        raise refuse("slice_whole", "True or False (merge one whole-image pass with the slices)")
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
        return Arm(name, "stock", keys, args, slice=slice_px, slice_whole=slice_whole)
    try:
        resolved = SizeSettings.from_dict({**shared_size, **size}).as_args()
    except ValueError as e:
        raise ValueError(f"arms: arm '{name}': its size keys with the shared ones: {e}") from None
    return Arm(name, "size", keys, args, resolved, slice=slice_px, slice_whole=slice_whole)


def _builtin(name: str, shared_size: Mapping[str, Any]) -> Arm:
    if name == "stock":
        return Arm(name, "stock")
    size = SizeSettings.from_dict({**shared_size, **({"size_norm": True} if name == "size_norm" else {})})
    return Arm(name, "size", size=size.as_args(), uniform=name == "uniform")


def similar_keys(key: str, candidates: Sequence[str]) -> str:
    """An Ultralytics-style hint naming the candidates closest to an unknown ``key`` (with their defaults), or ''."""
    close = difflib.get_close_matches(key, candidates)
    return f" Similar keys: {', '.join(_with_default(k) for k in close)}." if close else ""


def _with_default(key: str) -> str:
    default = DEFAULT_CFG_DICT.get(key)
    return f"{key}={default}" if default is not None else key


def _check_value(key: str, value: Any, where: str) -> None:
    """Ultralytics' own type and range check of one training key (``checks.check_value``), the refusal naming
    ``where`` (the arm and the key)."""
    try:
        check_value(key, value)
    except ValueError as e:
        msg = str(e).removeprefix(f"{key}: ").replace(f"got {key}={value!r}", f"got {value!r}")
        raise ValueError(f"{where}: {msg}") from None
