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
| ``size_input_thresholds``| resolved network-input thresholds, written by the trainer      | (resolved)   |

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
    "size_input_thresholds": None,
}
KEYS = tuple(DEFAULTS)
SPACES = ("original", "input")
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
        input_thresholds: ``thresholds`` in network-input px, once resolved (``None`` before).
    """

    weights: tuple[float, float, float] = (2.0, 1.5, 1.0)
    thresholds: tuple[float, float] = (32.0, 96.0)
    space: str = "original"
    norm: bool = False
    terms: tuple[str, ...] = TERMS
    input_thresholds: tuple[float, float] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SizeSettings:
        """Validate ``size_*`` values (missing keys take their defaults); raise ``ValueError`` naming the setting."""
        check_keys(values)
        v = {**DEFAULTS, **{k: x for k, x in values.items() if x is not None or k == "size_input_thresholds"}}
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
        return cls(tuple(weights), tuple(thresholds), space, norm, terms, resolved)

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
            "size_input_thresholds": list(self.input_thresholds) if self.input_thresholds else None,
        }

    def describe(self) -> str:
        """One log line: the rule as it will be applied."""
        t0, t1 = self.thresholds
        rule = f"{t0:g}/{t1:g} px {self.space}"
        if self.space == "original" and self.input_thresholds:
            rule += " -> {:.1f}/{:.1f} px input".format(*self.input_thresholds)
        w = ", ".join(f"{n} x{x:g}" for n, x in zip(("small", "medium", "large"), self.weights))
        return f"thresholds {rule}; weights {w} on {'+'.join(self.terms)}; size_norm={self.norm}"


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
