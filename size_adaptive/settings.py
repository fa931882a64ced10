"""The ``size_*`` settings: defaults, parsing, validation, and their split from Ultralytics' own keys.

Settings travel on ``model.args`` next to the stock gains (``box``, ``cls``, ``dfl``), so they reach the loss,
``args.yaml``, checkpoints, resumed runs and DDP workers the same way stock settings do.

| key                     | meaning                                                         | default      |
|-------------------------|-----------------------------------------------------------------|--------------|
| ``size_weights``        | loss weights of small, medium, large objects, each > 0          | 2.0,1.5,1.0  |
| ``size_thresholds``     | small/medium and medium/large edges as side lengths, px         | 32,96        |
| ``size_space``          | ``original``: thresholds in original-image px (COCO), converted | original     |
|                         | once to network-input px; ``input``: network-input px directly  |              |
| ``size_norm``           | rescale the foreground weights per batch so that their          | False        |
|                         | target-score-weighted sum is the stock one (balance only)       |              |
| ``size_terms``          | loss terms that carry the weights: ``cls``, ``box``, ``dfl``    | cls,box,dfl  |
| ``size_assign``         | the assigner: ``stock``; ``fixed`` (zero-metric candidates in   | stock        |
|                         | an object's region stay selectable, contested anchors go to a   |              |
|                         | claimant); ``nwd`` (``fixed`` with NWD as the overlap)          |              |
| ``size_min_pos``        | top up objects with fewer positives from free anchors, int >= 0 | 0            |
| ``size_box_nwd``        | r in [0, 1]: box term (1 - r)(1 - CIoU) + r(1 - NWD)            | 0.0          |
| ``size_nwd_c``          | NWD's constant C in network-input px, > 0, or ``auto`` (the     | auto         |
|                         | training labels' mean box side)                                 |              |
| ``size_input_thresholds``| resolved network-input thresholds, written by the trainer      | (resolved)   |
| ``size_nwd_input_c``    | resolved C in network-input px, written by the trainer          | (resolved)   |

Units: ``px`` are pixels; "original" px are those of the image files, "input" px those of the network input.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULTS: dict[str, Any] = {
    "size_weights": [2.0, 1.5, 1.0],
    "size_thresholds": [32.0, 96.0],
    "size_space": "original",
    "size_norm": False,
    "size_terms": ["cls", "box", "dfl"],
    "size_assign": "stock",
    "size_min_pos": 0,
    "size_box_nwd": 0.0,
    "size_nwd_c": "auto",
    "size_input_thresholds": None,
    "size_nwd_input_c": None,
}
KEYS = tuple(DEFAULTS)
SPACES = ("original", "input")
ASSIGNERS = ("stock", "fixed", "nwd")
RESOLVED = ("size_input_thresholds", "size_nwd_input_c")  # written by the trainer, not given by users
TERMS = ("cls", "box", "dfl")  # classification BCE; CIoU (ProbIoU and angle for OBB); DFL (L1 when reg_max is 1)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _numbers(key: str, value: Any, n: int, what: str, example: str) -> list[float]:
    """Parse ``value`` (``"2,1.5,1"``, ``"[2, 1.5, 1]"``, a list or tuple) into ``n`` positive finite floats."""
    expected = f"{n} {what}, e.g. {key}={example}"
    items = value
    if isinstance(value, str):
        items = [s for s in value.strip().strip("[]()").split(",") if s.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    if not isinstance(items, (list, tuple)) or len(items) != n:
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    out = []
    for item in items:
        try:
            x = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected {expected}; got {value!r} ({item!r} is not a number)") from None
        if isinstance(item, bool) or not math.isfinite(x) or x <= 0:
            raise ValueError(f"{key}: expected {expected}; got {value!r} ({item!r} is not a positive finite number)")
        out.append(x)
    return out


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{key}: expected True or False; got {value!r}")


def _thresholds(key: str, value: Any) -> list[float]:
    t = _numbers(key, value, 2, "side lengths in px (small/medium edge, medium/large edge), > 0", "32,96")
    if not t[0] < t[1]:
        raise ValueError(f"{key}: expected 2 strictly increasing side lengths in px, e.g. {key}=32,96; got {value!r}")
    return t


def _terms(key: str, value: Any) -> tuple[str, ...]:
    """Parse ``"box,dfl"`` or a list into distinct known terms, in the canonical order of ``TERMS``."""
    items = value
    if isinstance(value, str):
        items = [s.strip() for s in value.strip().strip("[]()").split(",")]
    expected = f"a comma-separated, non-empty list of distinct terms from {list(TERMS)}, e.g. {key}=box,dfl"
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    names = [str(t).strip().lower() if isinstance(t, str) else t for t in items]
    unknown = [t for t in names if t not in TERMS]
    if unknown:
        raise ValueError(f"{key}: expected {expected}; got {value!r} ({unknown[0]!r} is not a term)")
    if len(set(names)) != len(names):
        raise ValueError(f"{key}: expected {expected}; got {value!r} (a term is repeated)")
    return tuple(t for t in TERMS if t in names)


def _real(key: str, value: Any, expected: str) -> float:
    """``value`` as a float (NaN for a bool), or a ``ValueError`` naming ``key`` and what was ``expected``."""
    try:
        return float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {expected}; got {value!r}") from None


def _int_at_least_0(key: str, value: Any) -> int:
    expected = f"an integer >= 0, e.g. {key}=3"
    x = _real(key, value, expected)
    if not (math.isfinite(x) and x >= 0 and x == int(x)):
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    return int(x)


def _unit_float(key: str, value: Any) -> float:
    expected = f"a number in [0, 1], e.g. {key}=0.2"
    x = _real(key, value, expected)
    if not (0.0 <= x <= 1.0):
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    return x


def _nwd_c(key: str, value: Any, allow_auto: bool = True) -> float | None:
    """``auto`` (None) or a positive finite number of px."""
    if allow_auto and isinstance(value, str) and value.strip().lower() == "auto":
        return None
    expected = ("'auto' or " if allow_auto else "") + f"a positive number of network-input px, e.g. {key}=12"
    x = _real(key, value, expected)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    return x


@dataclass(frozen=True)
class SizeSettings:
    """Validated size settings.

    Attributes:
        weights: (small, medium, large) loss weights, each > 0.
        thresholds: (small/medium, medium/large) edges as side lengths, px in ``space``.
        space: ``"original"`` or ``"input"``: the pixel space of ``thresholds``.
        norm: rescale the foreground weights per batch so that their target-score-weighted sum equals the stock
            one; background anchors and the normalisers stay stock.
        terms: the loss terms that carry the weights, a subset of ``TERMS``; the others stay exactly stock.
        assign: ``"stock"``, ``"fixed"`` or ``"nwd"``: the assigner (``assign``).
        min_pos: top up every object with fewer positive anchors than this from free anchors in its region (0: off).
        box_nwd: r, the share of ``1 - NWD`` in the box term: (1 - r)(1 - CIoU) + r(1 - NWD); 0 is stock.
        nwd_c: NWD's constant C in network-input px; ``None`` for ``auto`` (resolved by the trainer).
        input_thresholds: ``thresholds`` in network-input px, once resolved (``None`` before).
        nwd_input_c: C in network-input px, once resolved (``nwd_c`` when given; ``None`` before).
    """

    weights: tuple[float, float, float] = (2.0, 1.5, 1.0)
    thresholds: tuple[float, float] = (32.0, 96.0)
    space: str = "original"
    norm: bool = False
    terms: tuple[str, ...] = TERMS
    assign: str = "stock"
    min_pos: int = 0
    box_nwd: float = 0.0
    nwd_c: float | None = None
    input_thresholds: tuple[float, float] | None = None
    nwd_input_c: float | None = None

    @property
    def uses_nwd(self) -> bool:
        """Whether any setting computes NWD (and so needs C)."""
        return self.assign == "nwd" or self.box_nwd > 0

    @property
    def patches_assigner(self) -> bool:
        """Whether the assigner is replaced (any setting but the stock one)."""
        return self.assign != "stock" or self.min_pos > 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SizeSettings:
        """Validate ``size_*`` values (missing keys take their defaults); raise ``ValueError`` naming the setting."""
        check_keys(values)
        v = {**DEFAULTS, **{k: x for k, x in values.items() if x is not None or k in RESOLVED}}
        space = str(v["size_space"]).strip().lower()
        if space not in SPACES:
            raise ValueError(f"size_space: expected one of {list(SPACES)}; got {v['size_space']!r}")
        weights = _numbers(
            "size_weights", v["size_weights"], 3, "positive finite weights (small, medium, large)", "2,1.5,1"
        )
        thresholds = _thresholds("size_thresholds", v["size_thresholds"])
        resolved = v["size_input_thresholds"]
        if resolved is not None:
            resolved = tuple(_thresholds("size_input_thresholds", resolved))
        elif space == "input":
            resolved = tuple(thresholds)
        norm, terms = _bool("size_norm", v["size_norm"]), _terms("size_terms", v["size_terms"])
        assign = str(v["size_assign"]).strip().lower() if isinstance(v["size_assign"], str) else v["size_assign"]
        if assign not in ASSIGNERS:
            raise ValueError(f"size_assign: expected one of {list(ASSIGNERS)}; got {v['size_assign']!r}")
        min_pos = _int_at_least_0("size_min_pos", v["size_min_pos"])
        box_nwd = _unit_float("size_box_nwd", v["size_box_nwd"])
        nwd_c = _nwd_c("size_nwd_c", v["size_nwd_c"])
        nwd_input_c = v["size_nwd_input_c"]
        if nwd_input_c is not None:
            nwd_input_c = _nwd_c("size_nwd_input_c", nwd_input_c, allow_auto=False)
        elif nwd_c is not None:
            nwd_input_c = nwd_c
        return cls(tuple(weights), tuple(thresholds), space, norm, terms, assign, min_pos, box_nwd, nwd_c,
                   resolved, nwd_input_c)

    @classmethod
    def from_args(cls, args: Any) -> SizeSettings:
        """Read the settings from an args namespace or dict (``model.args``); absent keys take defaults."""
        get = args.get if isinstance(args, Mapping) else lambda k, d=None: getattr(args, k, d)
        return cls.from_dict({k: get(k, DEFAULTS[k]) for k in KEYS})

    def as_args(self) -> dict[str, Any]:
        """Return the ``size_*`` keys as plain YAML-safe values (lists, not tuples)."""
        return {
            "size_weights": list(self.weights),
            "size_thresholds": list(self.thresholds),
            "size_space": self.space,
            "size_norm": self.norm,
            "size_terms": list(self.terms),
            "size_assign": self.assign,
            "size_min_pos": self.min_pos,
            "size_box_nwd": self.box_nwd,
            "size_nwd_c": "auto" if self.nwd_c is None else self.nwd_c,
            "size_input_thresholds": list(self.input_thresholds) if self.input_thresholds else None,
            "size_nwd_input_c": self.nwd_input_c,
        }

    def describe(self) -> str:
        """One log line: the rule as it will be applied."""
        t0, t1 = self.thresholds
        rule = f"{t0:g}/{t1:g} px {self.space}"
        if self.space == "original" and self.input_thresholds:
            rule += " -> {:.1f}/{:.1f} px input".format(*self.input_thresholds)
        w = ", ".join(f"{n} x{x:g}" for n, x in zip(("small", "medium", "large"), self.weights))
        line = f"thresholds {rule}; weights {w} on {'+'.join(self.terms)}; size_norm={self.norm}"
        if self.patches_assigner:
            line += f"; assigner {self.assign}" + (f", at least {self.min_pos} positives" if self.min_pos else "")
        if self.box_nwd:
            line += f"; box term {1 - self.box_nwd:g}(1 - CIoU) + {self.box_nwd:g}(1 - NWD)"
        if self.uses_nwd:
            c = "auto" if self.nwd_input_c is None else f"{self.nwd_input_c:.1f} px"
            line += f"; NWD C {c}" + (" (mean label side)" if self.nwd_c is None and self.nwd_input_c else "")
        return line


def check_keys(values: Mapping[str, Any]) -> None:
    """Refuse unknown ``size_*`` keys with a close-match suggestion."""
    for key in values:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"'{key}' is not a valid size-adaptive setting: expected one of {list(KEYS)}.{hint}")


def split_size_keys(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a dict of overrides into (``size_*`` keys, all other keys)."""
    size = {k: v for k, v in overrides.items() if str(k).startswith("size_")}
    return size, {k: v for k, v in overrides.items() if k not in size}
