"""The Ultralytics versions this package is tested against, checked once at import."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

TESTED = ("8.4.190", "8.5")  # [lowest tested, first untested): keep in step with pyproject.toml


def _parse(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".")[:3] if p.isdigit())


def check_ultralytics_version(installed: str | None = None) -> None:
    """Raise ``ImportError`` naming both versions when the installed Ultralytics is outside the tested range."""
    if installed is None:
        try:
            installed = version("ultralytics")
        except PackageNotFoundError:
            raise ImportError("size_adaptive needs ultralytics>=8.4.190,<8.5; it is not installed") from None
    lo, hi = TESTED
    if not _parse(lo) <= _parse(installed) < _parse(hi):
        raise ImportError(
            f"size_adaptive is tested with ultralytics>={lo},<{hi}; found ultralytics {installed}. "
            f"Install a tested version: pip install 'ultralytics>={lo},<{hi}'"
        )
