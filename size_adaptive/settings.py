"""The ``size_*`` settings, each declared once: its default, its parser and its help line (``Setting``), as a field of
``SizeSettings``; the key is ``size_`` + the field name. ``DEFAULTS``, ``KEYS``, parsing (``SizeSettings.from_dict``),
``as_args``, ``yolo-sa help`` (``help_lines``) and the README's settings table (checked by ``tests/test_docs.py``)
all come from these declarations: a new setting is one field plus its parser.

Settings travel on ``model.args`` next to the stock gains (``box``, ``cls``, ``dfl``), so they reach the loss,
``args.yaml``, checkpoints, resumed runs and DDP workers the same way stock settings do.

Units: ``px`` are pixels; "original" px are those of the image files, "input" px those of the network input. A value
the user gives (``nwd_c``, ``None`` for ``auto``) and the value the trainer resolves from it (``nwd_input_c``, px) have
different names everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

SPACES = ("original", "input")
ASSIGNERS = ("stock", "fixed", "nwd", "nwd_small", "simd")
NWD_ASSIGNERS = ("nwd", "nwd_small")  # the assigners that compute NWD (and so need its C)
BINS = ("coco", "aitod")  # size_bins: COCO's small/medium/large; aitod adds AI-TOD's very tiny and tiny
TERMS = ("cls", "box", "dfl")  # classification BCE; CIoU (ProbIoU and angle for OBB); DFL (L1 when reg_max is 1)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    """The parser of a choice-valued key: one of ``choices``, case and spaces ignored."""

    def parse(key: str, value: Any) -> str:
        name = value.strip().lower() if isinstance(value, str) else value
        if name not in choices:
            raise ValueError(f"{key}: expected one of {list(choices)}; got {value!r}")
        return name

    return parse


def _optional(parse: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """A resolved key's parser: ``None`` (not resolved yet) or what ``parse`` accepts."""
    return lambda key, value: None if value is None else parse(key, value)


def _listed(value: Any) -> Any:
    """A field's value as YAML-safe ``args.yaml`` holds it: tuples as lists."""
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Setting:
    """The declaration of one ``size_*`` key.

    Attributes:
        default: the default as ``args.yaml`` holds it (``DEFAULTS``).
        parse: ``(key, value) -> field value``, raising a ``ValueError`` that names the key, what was expected and
            what was given; takes the command line's text and Python values alike.
        help: what the key does, for ``yolo-sa help``.
        group: the heading it is listed under in ``yolo-sa help``.
        dump: field value -> the YAML-safe value of ``as_args``.
        resolved: written by the trainer (a value resolved from the data), not given by users.
    """

    default: Any
    parse: Callable[[str, Any], Any]
    help: str
    group: str = "weighting"
    dump: Callable[[Any], Any] = _listed
    resolved: bool = False

    @property
    def typed(self) -> str:
        """The default as typed on the command line: ``2,1.5,1``."""
        d = self.default
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in d) if isinstance(d, list) else f"{d}"


def setting(default: Any, parse: Callable[[str, Any], Any], help: str, **kw: Any) -> Any:  # noqa: A002
    """A ``SizeSettings`` field declared by its ``Setting``; the field's own default is the parsed ``default``."""
    spec = Setting(default, parse, help, **kw)
    value = None if default is None or default == "auto" else parse("", default)
    return field(default=value, metadata={"setting": spec})


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


def _positive(key: str, value: Any, expected: str) -> float:
    """``value`` as a positive finite float, or a ``ValueError`` naming ``key`` and what was ``expected``."""
    x = _real(key, value, expected)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    return x


def _simd_mn(key: str, value: Any) -> tuple[float, float]:
    return tuple(_numbers(key, value, 2, "positive finite constants (m for x and w, n for y and h)", "6.13,4.59"))


def _unit_float(key: str, value: Any) -> float:
    expected = f"a number in [0, 1], e.g. {key}=0.2"
    x = _real(key, value, expected)
    if not (0.0 <= x <= 1.0):
        raise ValueError(f"{key}: expected {expected}; got {value!r}")
    return x


def _nwd_c(key: str, value: Any, allow_auto: bool = True) -> float | str | None:
    """``auto`` (None), ``relative`` or a positive finite number of px."""
    if allow_auto and isinstance(value, str) and value.strip().lower() in ("auto", "relative"):
        return None if value.strip().lower() == "auto" else "relative"
    expected = f"a positive number of network-input px, e.g. {key}=12"
    return _positive(key, value, f"'auto', 'relative' or {expected}" if allow_auto else expected)


@dataclass(frozen=True)
class SizeSettings:
    """Validated size settings; each field is the key ``size_<field>``, declared with its ``Setting``.

    ``thresholds`` are px in ``space``; ``input_thresholds`` and ``nwd_input_c`` are the values the trainer resolves
    in network-input px (``None`` before; ``space=input`` and a numeric ``nwd_c`` resolve at once).
    """

    weights: tuple[float, float, float] = setting(
        [2.0, 1.5, 1.0], lambda k, v: tuple(_numbers(k, v, 3, "positive finite weights (small, medium, large)",
                                                     "2,1.5,1")),
        "loss weights of small, medium and large objects, each > 0")
    thresholds: tuple[float, float] = setting(
        [32.0, 96.0], lambda k, v: tuple(_thresholds(k, v)),
        "small/medium and medium/large edges, as box side lengths in px")
    space: str = setting(
        "original", _choice(SPACES),
        "'original': thresholds in original-image px (the COCO definition of mAP_small), converted once to "
        "network-input px; 'input': network-input px as given")
    norm: bool = setting(
        False, lambda k, v: _bool(k, v),
        "True: rescale the foreground weights per batch to the stock target-score-weighted sum (balance only); "
        "background anchors and normalisers stay stock")
    terms: tuple[str, ...] = setting(
        list(TERMS), lambda k, v: _terms(k, v),
        "loss terms that carry the weights (OBB's angle term follows box); the others stay exactly stock")
    assign: str = setting(
        "stock", _choice(ASSIGNERS),
        "'fixed': zero-metric candidates in an object's region stay selectable (nearest centre first), a contested "
        "anchor goes to a claimant; 'nwd': 'fixed' with NWD as the assigner's overlap; 'nwd_small': NWD for objects "
        "of the small bucket, CIoU (ProbIoU) for the rest; 'simd': 'fixed' with SimD (constants fitted on the "
        "training labels; not for OBB). nwd, nwd_small and simd are not for YOLO26 segment/pose",
        group="assignment")
    min_pos: int = setting(
        0, lambda k, v: _int_at_least_0(k, v),
        "top up every object with fewer positives from free anchors of its region", group="assignment")
    box_nwd: float = setting(
        0.0, lambda k, v: _unit_float(k, v), "r in [0, 1]: box term (1 - r)(1 - CIoU) + r(1 - NWD)",
        group="assignment")
    nwd_c: float | str | None = setting(
        "auto", lambda k, v: _nwd_c(k, v),
        "NWD's C in network-input px; auto: the training labels' mean box side; relative: C = size_nwd_k * "
        "sqrt(w*h) of each ground-truth box (scale-invariant)",
        group="assignment", dump=lambda c: "auto" if c is None else c)
    nwd_k: float = setting(
        1.0, lambda k, v: _positive(k, v, f"a positive finite number, e.g. {k}=1"),
        "k of size_nwd_c=relative (> 0; another value without relative is refused): NWD is 1/e at a W2 "
        "distance of k times the object's own side",
        group="assignment")
    bins: str = setting(
        "coco", _choice(BINS),
        "per-size mAP and diagnostics: 'coco' small/medium/large (32/96 px original); 'aitod' adds very tiny "
        "(< 8 px) and tiny (8-16 px) inside small", group="evaluation")
    input_thresholds: tuple[float, float] | None = setting(
        None, _optional(lambda k, v: tuple(_thresholds(k, v))),
        "the thresholds in network-input px, resolved by the trainer", resolved=True)
    nwd_input_c: float | None = setting(
        None, _optional(lambda k, v: _nwd_c(k, v, allow_auto=False)),
        "NWD's C in network-input px, resolved by the trainer", resolved=True)
    simd_mn: tuple[float, float] | None = setting(
        None, _optional(_simd_mn), "SimD's constants m, n, fitted by the trainer on the training labels",
        group="assignment", resolved=True)

    @property
    def uses_nwd(self) -> bool:
        """Whether any setting computes NWD (and so needs C)."""
        return self.assign in NWD_ASSIGNERS or self.box_nwd > 0

    @property
    def nwd_relative(self) -> bool:
        """Whether NWD's C is relative to each ground-truth box (``size_nwd_c=relative``)."""
        return self.nwd_c == "relative"

    @property
    def patches_assigner(self) -> bool:
        """Whether the assigner is replaced (any setting but the stock one)."""
        return self.assign != "stock" or self.min_pos > 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SizeSettings:
        """Validate ``size_*`` values (missing keys take their defaults); raise ``ValueError`` naming the setting."""
        check_keys(values)
        given = {**DEFAULTS, **{k: x for k, x in values.items() if x is not None or k in RESOLVED}}
        parsed = {f.name: _spec(f).parse(_key(f), given[_key(f)]) for f in dataclasses.fields(cls)}
        if parsed["input_thresholds"] is None and parsed["space"] == "input":
            parsed["input_thresholds"] = parsed["thresholds"]
        if parsed["nwd_input_c"] is None and parsed["nwd_c"] != "relative":
            parsed["nwd_input_c"] = parsed["nwd_c"]
        if parsed["nwd_k"] != DEFAULTS["size_nwd_k"] and parsed["nwd_c"] != "relative":  # a k that would be unused
            raise ValueError(f"size_nwd_k: expected only with size_nwd_c=relative (k times each object's own side); "
                             f"got size_nwd_k={given['size_nwd_k']!r} with size_nwd_c={given['size_nwd_c']!r}")
        return cls(**parsed)

    @classmethod
    def from_args(cls, args: Any) -> SizeSettings:
        """Read the settings from an args namespace or dict (``model.args``); absent keys take defaults."""
        get = args.get if isinstance(args, Mapping) else lambda k, d=None: getattr(args, k, d)
        return cls.from_dict({k: get(k, DEFAULTS[k]) for k in KEYS})

    def as_args(self) -> dict[str, Any]:
        """Return the ``size_*`` keys as plain YAML-safe values (lists, not tuples)."""
        return {_key(f): _spec(f).dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

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
        if self.uses_nwd and self.nwd_relative:
            line += f"; NWD C {self.nwd_k:g} x sqrt(w*h) of each object"
        elif self.uses_nwd:
            c = "auto" if self.nwd_input_c is None else f"{self.nwd_input_c:.1f} px"
            line += f"; NWD C {c}" + (" (mean label side)" if self.nwd_c is None and self.nwd_input_c else "")
        if self.assign == "simd":
            line += "; SimD m, n " + ("auto" if self.simd_mn is None else "{:.3g}, {:.3g}".format(*self.simd_mn))
        if self.bins != "coco":
            line += f"; size bins {self.bins}"
        return line


def _key(f: dataclasses.Field) -> str:
    return f"size_{f.name}"


def _spec(f: dataclasses.Field) -> Setting:
    return f.metadata["setting"]


SETTINGS: dict[str, Setting] = {_key(f): _spec(f) for f in dataclasses.fields(SizeSettings)}
DEFAULTS: dict[str, Any] = {k: spec.default for k, spec in SETTINGS.items()}
KEYS = tuple(SETTINGS)
RESOLVED = tuple(k for k, spec in SETTINGS.items() if spec.resolved)  # written by the trainer, not given by users


def help_lines(group: str, width: int = 116) -> list[str]:
    """``yolo-sa help``'s lines for the user keys of one ``group``: ``key=default`` and the wrapped help text."""
    lines = []
    for key, spec in SETTINGS.items():
        if spec.group == group and not spec.resolved:
            name = f"    {key}={spec.typed}".ljust(31)
            wrapped = textwrap.wrap(spec.help, width - 31)
            lines += [name + wrapped[0], *(" " * 31 + w for w in wrapped[1:])]
    return lines


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
