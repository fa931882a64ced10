"""``yolo-sa tile``: a tiled copy of a YOLO dataset (detect, segment, OBB), for training at native resolution.

    yolo-sa tile data=aerial.yaml tile=640 overlap=0.2 min_visible=0.6 background=0.1 out=aerial_tiles

Keys (``run``; from the command line as text, from Python also typed):

=================  ===============  ==========================================================================
``data``           (required)       a dataset yaml or a demo keyword (``demo-large``, ...); nothing is downloaded
``tile``           640              the tile side, px (whole number > 0)
``overlap``        0.2              the overlap of neighbouring tiles, a fraction of the tile in [0, 1):
                                    a gap of ``round(overlap * tile)`` px
``min_visible``    0.6              an object is kept in a tile where at least this share of its area is inside,
                                    in (0, 1]
``background``     0.1              the share of the empty tiles kept (fixed seed), in [0, 1]
``out``            <name>_tiles<T>  the output folder; default in the working directory, ``<name>`` the yaml's
                                    stem or the demo keyword, ``<T>`` the tile
``task``           (from labels)    how 4-point rows read: ``obb`` (rotated boxes) or ``segment`` (polygons);
                                    by default ``obb`` when every row of the data is a 4-point rectangle
=================  ===============  ==========================================================================

What it writes in ``out`` (the train and val splits; a ``test`` split is not tiled):

- ``images/{train,val}/<stem>_<x0>_<y0>.<ext>`` and ``labels/{train,val}/...txt``: every window that keeps an object,
  and a seeded share of the empty ones. Windows (``size_adaptive.clip.windows``): a regular grid, the last window of
  a row or column flush with the image edge; a side shorter than ``tile`` gets one window of that side. Tiles are
  never padded or resized: an image smaller than the tile is one tile, itself. ``<ext>`` is ``.jpg`` for JPEG sources
  (quality 95: a second JPEG generation, deterministic for a given OpenCV build) and ``.png`` (lossless) for others.
- Labels: boxes clipped to the tile; polygons clipped with shapely (parts joined into one polygon); rotated boxes as
  the own-frame rectangle around their visible part (``size_adaptive.clip``); each kept where ``visible >=
  min_visible``, the visible share being the object's area inside the tile over its whole area.
- ``data.yaml``: ``train``/``val`` = the tiles, ``val_whole`` = the original whole-image val set (for sliced
  validation), ``names`` copied. Pose data (``kpt_shape``) is refused.
- ``tile_summary.json``: ``settings``, per split ``splits`` (images, windows, tiles, background tiles, objects,
  boxes written, pairs dropped by ``min_visible``, objects lost (in no tile), objects kept in more than one tile,
  the AI-TOD and COCO histograms of the written objects' sides in tile px) and ``tiles``, each
  ``{"tile": <path relative to out>, "source": <source image path>, "window": [x0, y0, x1, y1]}`` in source px.

Checks, before anything is written: every key and value, the data (both splits exist, every image's header is
readable, every label row parses) and ``out``, which must be new, empty, or hold a tiling of the same input with the
same settings (then it is reused and nothing is written). The tiles are written into a temporary folder next to
``out`` and renamed to ``out`` when complete, so a failure (an image that does not decode) leaves nothing behind.
Run twice on the same input, it writes byte-identical labels.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import clip
from .yolo_data import (
    check_keys,
    fraction,
    image_files,
    image_size,
    infer_task,
    label_files,
    load_data,
    parse_labels,
    polygon_area,
    read_label_bytes,
    size_histograms,
    split_paths,
    whole_number,
)

KEYS = ("data", "tile", "overlap", "min_visible", "background", "out", "task")
DEFAULTS = {"tile": 640, "overlap": 0.2, "min_visible": 0.6, "background": 0.1, "out": None, "task": None}
SPLITS = ("train", "val")
SEED = 0  # the background tiles' sampling seed
VERSION = 1  # of the tiling rules; a tiling of another version is not reused
SUMMARY = "tile_summary.json"
JPEG_QUALITY = 95


@dataclass
class Source:
    """One source image: its file, size (px) and label rows (norm)."""

    path: Path
    width: int
    height: int
    rows: list = field(default_factory=list)


@dataclass
class Tile:
    """One window of a source image and what it keeps: label lines (norm of the tile) and object sides (tile px)."""

    source: int  # index into the split's sources
    window: tuple[int, int, int, int]
    lines: list[str]
    sides: list[float]
    name: str = ""


def parse_keys(**kwargs) -> dict:
    """The keys of ``run`` checked and typed (text from the command line or typed values); defaults filled in."""
    check_keys("tile", kwargs, KEYS)
    k = {**DEFAULTS, **kwargs}
    if k.get("data") is None:
        raise ValueError("data: expected a dataset yaml or a demo keyword, e.g. data=demo-large; got nothing")
    task = k["task"]
    if task is not None and str(task).strip():
        task = str(task).strip().lower()
        if task not in ("detect", "segment", "obb"):
            why = " (keypoints cannot be tiled)" if task == "pose" else ""
            raise ValueError(f"task: expected detect, segment or obb; got task={k['task']!r}{why}")
    else:
        task = None
    out = k["out"]
    if out is not None and not str(out).strip():
        raise ValueError(f"out: expected a folder path; got out={out!r}")
    return {
        "data": k["data"],
        "tile": whole_number("tile", k["tile"]),
        "overlap": fraction("overlap", k["overlap"], 0, 1, False, True, "a fraction of the tile"),
        "min_visible": fraction("min_visible", k["min_visible"], 0, 1, True, False,
                                "the share of an object's area inside a tile"),
        "background": fraction("background", k["background"], 0, 1, False, False, "the share of empty tiles kept"),
        "out": None if out is None else Path(str(out).strip()),
        "task": task,
    }


def run(**kwargs) -> dict:
    """``yolo-sa tile``: check everything, then write the tiled copy (module docstring); return the summary dict
    (``tile_summary.json``'s content, plus ``out`` and ``reused``)."""
    from ultralytics.utils import LOGGER

    keys = parse_keys(**kwargs)
    info = load_data(keys["data"], SPLITS, box_tasks_only=True)
    sources, digest = {}, hashlib.sha1()
    for split in SPLITS:
        sources[split] = read_sources(split_paths(info, split), split, digest)
    task = keys["task"] or infer_task((r, (s.width, s.height)) for ss in sources.values() for s in ss for r in s.rows)
    out = (keys["out"] or default_out(keys["data"], info, keys["tile"])).resolve()
    settings = {"version": VERSION, "data": info["yaml_file"], "task": task, "tile": keys["tile"],
                "overlap": keys["overlap"], "gap": min(int(round(keys["overlap"] * keys["tile"])), keys["tile"] - 1),
                "min_visible": keys["min_visible"], "background": keys["background"], "seed": SEED,
                "input": digest.hexdigest()}
    previous = check_out(out, settings, [p for split in SPLITS for p in split_paths(info, split)])
    if previous is not None:
        LOGGER.info(f"tile: {out} holds a tiling of the same data with the same settings; reused, nothing written")
        return {**previous, "out": str(out), "reused": True}

    summary = {"settings": settings, "splits": {}, "tiles": []}
    plans = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([SEED, i])
        plans[split], summary["splits"][split] = plan_split(sources[split], task, keys, rng)
    write(out, info, sources, plans, summary)
    log_summary(summary, out)
    return {**summary, "out": str(out), "reused": False}


def default_out(data, info: dict, tile: int) -> Path:
    """``<name>_tiles<tile>`` in the working directory: ``<name>`` is the demo keyword or the yaml's stem."""
    from .demo import demo_task

    name = str(data).strip().lower() if demo_task(data) else Path(info["yaml_file"]).stem
    return Path(f"{name}_tiles{tile}")


def read_sources(paths: list[str], split: str, digest) -> list[Source]:
    """Every image of a split with its size (header only, verified) and label rows; the input's fingerprint (image
    paths and byte sizes, label bytes) goes into ``digest``."""
    from ultralytics.utils import TQDM

    images = image_files(paths, split)
    sources = []
    for image, label in TQDM(list(zip(images, label_files(images))), desc=f"tile: reading {split}"):
        width, height = image_size(image, verify=True)
        data = read_label_bytes(label)
        digest.update(f"{split}\0{image.resolve()}\0{image.stat().st_size}\0{len(data)}\0".encode() + data)
        sources.append(Source(image, width, height, parse_labels(data, label)))
    return sources


def check_out(out: Path, settings: dict, source_dirs: list[str]) -> dict | None:
    """Refuse an ``out`` that is a file, lies inside a source image folder, or holds anything but a tiling of the
    same input with the same settings; return that tiling's summary (to reuse), or ``None`` to write."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder; got out='{out}', a file")
    for d in map(Path, source_dirs):
        d = d.resolve() if d.is_dir() else d.resolve().parent
        if out == d or d in out.parents:
            raise ValueError(f"out: expected a folder outside the source images (Ultralytics would list the tiles "
                             f"with them); got out='{out}', inside {d}")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        previous = json.loads((out / SUMMARY).read_text())
        old = previous["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        names = sorted(p.name for p in out.iterdir())[:5]
        raise ValueError(f"out: expected a new or empty folder, or a previous tiling of the same data with the same "
                         f"settings; got out='{out}', which holds other files ({', '.join(names)})") from None
    if old != settings:
        diff = ", ".join(f"{k}={old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v)
        raise ValueError(f"out: expected a new or empty folder, or a previous tiling of the same data with the same "
                         f"settings; got out='{out}', a tiling with {diff}; give another out=")
    missing = [t["tile"] for t in previous.get("tiles", []) if not (out / t["tile"]).is_file()]
    if missing:
        raise ValueError(f"out: expected a complete previous tiling; got out='{out}', without {missing[0]} (and "
                         f"{len(missing) - 1} more tiles); remove it or give another out=")
    return previous


def plan_split(sources: list[Source], task: str, keys: dict, rng: np.random.Generator) -> tuple[list[Tile], dict]:
    """The tiles to write for a split (labelled windows, and a seeded share of the empty ones) and its statistics."""
    tiles, empty, stats = [], [], {"dropped": 0, "lost": 0, "in_several": 0, "objects": 0, "windows": 0}
    for i, src in enumerate(sources):
        found, counts = tile_labels(src, task, keys["tile"], keys["overlap"], keys["min_visible"])
        stats["objects"] += len(src.rows)
        stats["windows"] += len(found)
        stats["dropped"] += counts["dropped"]
        stats["lost"] += int((counts["kept"] == 0).sum())
        stats["in_several"] += int((counts["kept"] > 1).sum())
        for window, lines, sides in found:
            (tiles if lines else empty).append(Tile(i, window, lines, sides))
    n_keep = int(round(keys["background"] * len(empty)))
    chosen = set(rng.choice(len(empty), n_keep, replace=False).tolist()) if n_keep else set()
    background = [t for j, t in enumerate(empty) if j in chosen]
    tiles = sorted(tiles + background, key=lambda t: (t.source, t.window[1], t.window[0]))
    _name_tiles(tiles, sources)
    sides = np.array([s for t in tiles for s in t.sides])
    stats.update(images=len(sources), tiles=len(tiles), background_tiles=len(background),
                 boxes=int(sum(len(t.lines) for t in tiles)), sizes_tile_px=size_histograms(sides))
    order = ("images", "windows", "tiles", "background_tiles", "objects", "boxes", "dropped", "lost", "in_several",
             "sizes_tile_px")
    return tiles, {k: stats[k] for k in order}


def _name_tiles(tiles: list[Tile], sources: list[Source]) -> None:
    """``<stem>_<x0>_<y0><ext>``; sources that share a stem get their index in front."""
    stems = [s.path.stem for s in sources]
    shared = {s for s in stems if stems.count(s) > 1}
    for t in tiles:
        src = sources[t.source]
        stem = f"{t.source:06d}_{src.path.stem}" if src.path.stem in shared else src.path.stem
        ext = ".jpg" if src.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        t.name = f"{stem}_{t.window[0]}_{t.window[1]}{ext}"


def tile_labels(src: Source, task: str, tile: int, overlap: float, min_visible: float):
    """Every window of one image with the label lines it keeps.

    Returns:
        [(window (x0, y0, x1, y1) px, label lines, sides of the kept objects in tile px)], one per window, and
        ``{"kept": (n,) int windows that keep each object, "dropped": pairs cut below min_visible}``.
    """
    wins = clip.windows(src.width, src.height, tile, overlap)  # (m, 4)
    scale = np.array([src.width, src.height], float)
    n, m = len(src.rows), len(wins)
    kept = np.zeros(n, int)
    found = [[] for _ in range(m)]  # per window: (row index, line, side)
    dropped = 0
    kinds = np.array([_kind(r, task) for r in src.rows])
    idx = {k: np.flatnonzero(kinds == k) for k in ("box", "obb", "polygon")}
    if len(idx["box"]):
        xywh = np.stack([src.rows[i][1:5] for i in idx["box"]]) * np.tile(scale, 2)
        xyxy = np.concatenate((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)  # (nb, 4) px
        for j, win in enumerate(wins):
            clipped, visible = clip.clip_boxes(xyxy, win)
            keep = clip.kept(visible, min_visible)
            dropped += int(((visible > 0) & ~keep).sum())
            size = np.array([win[2] - win[0], win[3] - win[1]], float)
            for i, b in zip(idx["box"][keep], clipped[keep]):
                wh = b[2:] - b[:2]
                found[j].append((i, _line(src.rows[i][0], np.concatenate(((b[:2] + b[2:]) / 2, wh)) / np.tile(size, 2)),
                                 float(np.sqrt(wh[0] * wh[1]))))
                kept[i] += 1
    if len(idx["obb"]):
        corners = np.stack([src.rows[i][1:].reshape(4, 2) for i in idx["obb"]]) * scale  # (no, 4, 2) px
        visible = clip.obb_visible(corners, wins)  # (no, m)
        for j, win in enumerate(wins):
            keep = clip.kept(visible[:, j], min_visible)
            dropped += int(((visible[:, j] > 0) & ~keep).sum())
            for i, c in zip(idx["obb"][keep], corners[keep]):
                box = clip.clip_obb(c, win)
                side = np.sqrt(polygon_area(box))
                found[j].append((i, _line(src.rows[i][0], box / (win[2:] - win[:2])), float(side)))
                kept[i] += 1
    for i in idx["polygon"]:
        points = src.rows[i][1:].reshape(-1, 2) * scale
        lo, hi = points.min(0), points.max(0)
        for j in np.flatnonzero((wins[:, :2] < hi).all(1) & (wins[:, 2:] > lo).all(1)):  # windows that it reaches
            win = wins[j]
            polygon, visible = clip.clip_polygon(points, win)
            if polygon is None or not clip.kept(visible, min_visible):
                dropped += int(visible > 0)
                continue
            found[j].append((i, _line(src.rows[i][0], polygon / (win[2:] - win[:2])), np.sqrt(polygon_area(polygon))))
            kept[i] += 1
    result = []
    for win, items in zip(wins, found):
        items.sort(key=lambda x: x[0])  # the source's row order
        result.append((tuple(int(v) for v in win), [x[1] for x in items], [float(x[2]) for x in items]))
    return result, {"kept": kept, "dropped": dropped}


def _kind(row: np.ndarray, task: str) -> str:
    return "box" if len(row) == 5 else "obb" if task == "obb" and len(row) == 9 else "polygon"


def _line(cls: float, values: np.ndarray) -> str:
    """One label line: the class and the values in norm, 6 decimals (-0 written as 0)."""
    values = np.round(np.ravel(values), 6) + 0.0
    return f"{int(cls)} " + " ".join(f"{v:.6f}" for v in values)


def write(out: Path, info: dict, sources: dict, plans: dict, summary: dict) -> None:
    """Write every split's tiles, ``data.yaml`` and ``tile_summary.json`` into a temporary folder, then rename it to
    ``out``; on any failure remove what was made."""
    import cv2
    import yaml
    from ultralytics.utils import TQDM
    from ultralytics.utils.patches import imread

    made = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for split, tiles in plans.items():
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            by_source = {}
            for t in tiles:
                by_source.setdefault(t.source, []).append(t)
            for i, group in TQDM(list(by_source.items()), desc=f"tile: writing {split}"):
                src = sources[split][i]
                image = imread(str(src.path))
                if image is None or image.shape[1::-1] != (src.width, src.height):
                    got = "no image" if image is None else f"{image.shape[1]}x{image.shape[0]} px"
                    raise ValueError(f"data: expected readable images; got {src.path}, which does not decode to its "
                                     f"header's {src.width}x{src.height} px ({got})")
                for t in group:
                    x0, y0, x1, y1 = t.window
                    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if t.name.endswith(".jpg") else []
                    if not cv2.imwrite(str(tmp / "images" / split / t.name), image[y0:y1, x0:x1], params):
                        raise OSError(f"could not write {tmp / 'images' / split / t.name}")
                    text = "".join(line + "\n" for line in t.lines)
                    (tmp / "labels" / split / Path(t.name).with_suffix(".txt")).write_text(text)
                    summary["tiles"].append({"tile": f"images/{split}/{t.name}", "source": str(src.path.resolve()),
                                             "window": list(t.window)})
        whole = split_paths(info, "val")
        spec = {"path": str(out), "train": "images/train", "val": "images/val",
                "val_whole": whole[0] if len(whole) == 1 else whole, "names": dict(info["names"])}
        if info.get("channels", 3) != 3:
            spec["channels"] = info["channels"]
        (tmp / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1))
        if out.exists():
            out.rmdir()  # empty (checked); rename cannot replace a folder everywhere
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in made:
            shutil.rmtree(p, ignore_errors=True)
        raise


def log_summary(summary: dict, out: Path) -> None:
    """Print the per-split table and the size histogram of the written objects (tile px)."""
    from ultralytics.utils import LOGGER

    s = summary["settings"]
    LOGGER.info(f"tile: {s['task']} labels, tile={s['tile']} px, overlap={s['overlap']:g} (gap {s['gap']} px), "
                f"min_visible={s['min_visible']:g}, background={s['background']:g} -> {out}")
    head = ("split", "images", "windows", "tiles", "background", "objects", "boxes", "dropped", "lost", "in >1 tile")
    LOGGER.info("  ".join(f"{h:>10}" for h in head))
    for split, st in summary["splits"].items():
        values = (split, st["images"], st["windows"], st["tiles"], st["background_tiles"], st["objects"], st["boxes"],
                  st["dropped"], st["lost"], st["in_several"])
        LOGGER.info("  ".join(f"{v:>10}" for v in values))
    for split, st in summary["splits"].items():
        sizes = st["sizes_tile_px"]
        ai_tod = ", ".join(f"{k} {v}" for k, v in sizes["ai_tod"].items())
        coco = ", ".join(f"{k} {v}" for k, v in sizes["coco"].items())
        LOGGER.info(f"  {split} object sides in tile px (sqrt of area): {ai_tod}; COCO {coco}")
        if not st["tiles"]:
            LOGGER.warning(f"tile: the {split} split has no tiles (no window keeps an object and background="
                           f"{s['background']:g}): training or validating on it fails; raise background")
        if st["lost"]:
            LOGGER.info(f"  {split}: {st['lost']} objects are in no tile (cut below min_visible by every window, or "
                        f"larger than the tile): raise tile or overlap, or lower min_visible")
    LOGGER.info(f"tile: wrote {out / 'data.yaml'} (val_whole: the whole-image val set) and {out / SUMMARY}")
