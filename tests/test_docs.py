"""The README and docs/: links that resolve, a README that stays short, a settings table that matches the code, and a
layout page that names every module and script."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from size_adaptive.settings import DEFAULTS, KEYS, RESOLVED

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 260
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target "title")
FENCE = re.compile(r"^\s*(```|~~~)")
SETTING_ROW = re.compile(r"^\|\s*`(size_\w+)`\s*\|\s*`([^`]*)`\s*\|")  # | `size_key` | `default` | meaning |


def _prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: link targets and markup dropped, lowercase, punctuation other than '-' and '_'
    removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, duplicates numbered as GitHub numbers them (``x``, ``x-1``, ``x-2``)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            a = _anchor(m.group(1))
            out.add(a if a not in seen else f"{a}-{seen[a]}")
            seen[a] = seen.get(a, 0) + 1
    return out


def _links(page: Path) -> list[str]:
    return [m.group(1) for line in _prose(page.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def test_anchor_rule_follows_github():
    # The rule the link check relies on, on headings of these pages: backticks, colons, parentheses and commas go,
    # hyphens and underscores stay, each space becomes one hyphen.
    assert _anchor("Evidence: `yolo-sa compare`") == "evidence-yolo-sa-compare"
    assert _anchor("The assignment study on the demo data (CPU, 10 seeds)") == (
        "the-assignment-study-on-the-demo-data-cpu-10-seeds")
    assert _anchor("A P2 head: the larger lever for tiny objects") == "a-p2-head-the-larger-lever-for-tiny-objects"
    assert _anchor("`size_min_pos` and [NWD](nwd.md)") == "size_min_pos-and-nwd"


def test_docs_pages_exist_and_have_a_title():
    assert PAGES[1:], "docs/ holds no page"
    for page in PAGES:
        lines = _prose(page.read_text(encoding="utf-8"))
        assert lines and lines[0].startswith("# "), f"{page.relative_to(ROOT)} does not start with a '# ' title"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail into docs/ (at most {MAX_README_LINES})"


def _normalised(value):
    """A default as comparable data: lists item by item, numbers as floats, booleans and words in lowercase."""
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return float(value)
    return str(value).strip().lower()


def _parsed(text: str):
    """A README default in the CLI form (``2,1.5,1``, ``cls,box,dfl``, ``False``, ``auto``) as comparable data."""
    items = [s.strip() for s in text.split(",")]
    parsed = []
    for s in items:
        try:
            parsed.append(float(s))
        except ValueError:
            parsed.append(s.lower())
    return parsed if len(items) > 1 else parsed[0]


def _equal(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return a == b


def test_parsed_defaults_compare_by_value():
    # The comparison is exact in value but not in spelling: 2,1.5,1 is [2.0, 1.5, 1.0]; 0 is 0.0; False is False.
    assert _equal(_parsed("2,1.5,1"), _normalised([2.0, 1.5, 1.0]))
    assert _equal(_parsed("0"), _normalised(0.0)) and _equal(_parsed("False"), _normalised(False))
    assert not _equal(_parsed("2,1.5"), _normalised([2.0, 1.5, 1.0]))
    assert not _equal(_parsed("2,1.5,1.1"), _normalised([2.0, 1.5, 1.0]))
    assert not _equal(_parsed("box,dfl"), _normalised(["cls", "box", "dfl"]))
    assert not _equal(_parsed("0"), _normalised(False))  # 0.0 against "false"


def test_readme_settings_table_matches_the_code():
    rows = [m.groups() for line in _prose(README.read_text(encoding="utf-8")) if (m := SETTING_ROW.match(line))]
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), f"a size_* key has two rows in README.md: {keys}"
    user_keys = [k for k in KEYS if k not in RESOLVED]
    assert sorted(keys) == sorted(user_keys), f"README.md's settings table lists {keys}; the code declares {user_keys}"
    for key, text in rows:
        assert _equal(_parsed(text), _normalised(DEFAULTS[key])), (
            f"README.md: {key} default `{text}`; the code's is {DEFAULTS[key]!r}")
    readme = README.read_text(encoding="utf-8")
    assert all(k in readme for k in RESOLVED), "README.md does not name the keys the trainer resolves"


def test_layout_names_every_module_and_script():
    layout = (DOCS / "layout.md").read_text(encoding="utf-8")
    files = [*sorted((ROOT / "size_adaptive").glob("*.py")), *sorted(p for p in (ROOT / "scripts").iterdir()
                                                                    if p.is_file() and p.suffix != ".pyc")]
    missing = [str(f.relative_to(ROOT)) for f in files if f"`{f.relative_to(ROOT).as_posix()}`" not in layout]
    assert not missing, f"docs/layout.md does not name: {', '.join(missing)}"
