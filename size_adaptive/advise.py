"""``yolo-sa advise``: where a dataset's objects will be at a given ``imgsz``, and which resolution lever they call for.

    yolo-sa advise data=aerial.yaml imgsz=640 [model=yolo11n-p2.yaml]

It reads the labels and the image sizes (from the file headers; no pixels decoded, no model run) of the train and
val splits and prints:

- the histograms of object sides, ``side = sqrt(area)`` px (``size_adaptive.yolo_data``: w·h of a box, a polygon's
  area, w·h of a rotated box), at native resolution and after the resize to ``imgsz``, in AI-TOD's bins (< 8, 8-16,
  16-32, 32-64, >= 64 px) and COCO's (small < 32, medium < 96, large);
- the share of objects smaller than the model's finest stride after the resize ("below the stride": no anchor point
  of the finest grid falls on more than one of them);
- the recommended lever by ``RULE``, and the ``yolo-sa`` commands that compare it against stock.

The resize is Ultralytics' (``BaseDataset.load_image``, 8.4.190): the long side of each image goes to ``imgsz``
(``r = imgsz / max(w, h)``, up or down), then letterbox padding, which does not scale. Keys: ``data`` (a dataset yaml
or a demo keyword), ``imgsz`` (640), ``model`` (optional: a model yaml or ``.pt`` whose finest stride is used;
default 8, the finest stride of Ultralytics' stock P3-P5 heads; 4 for a P2 head such as ``yolo11n-p2.yaml``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .yolo_data import (
    check_keys,
    image_files,
    image_size,
    label_files,
    load_data,
    parse_labels,
    read_label_bytes,
    row_areas,
    size_histograms,
    split_paths,
    whole_number,
)

KEYS = ("data", "imgsz", "model")
DEFAULTS = {"imgsz": 640, "model": None}
STOCK_STRIDE = 8  # the finest stride of Ultralytics' stock detection heads (P3)
OK_SHARE = 0.05  # below the stride: at most this share needs no lever
TIE = 0.02  # levers within this share of the best count as equal; the cheaper one wins
TILE_OVERLAP = 0.2
RULE = f"""\
rule: lost(lever) = share of objects whose side, at the lever's resolution, is below the lever's finest stride.
  1. lost at imgsz with the model as given <= {OK_SHARE:.0%}: no resolution lever is needed.
  2. otherwise, of these levers, the one with the lowest lost share:
       P2 head      stride 4 at imgsz (when the model's finest stride is 8);
       raise imgsz  to I2 = min(2 x imgsz, the median image long side rounded up to 32 px), when that is larger;
       tile at T    T = imgsz: objects at native resolution (an image no larger than T is resized as before),
                    when the median image long side exceeds imgsz;
       raise imgsz + P2, tile + P2;
     levers within {TIE:.0%} of the best count as equal, and the cheapest of them wins, in this order: P2, raise
     imgsz, tile, raise imgsz + P2, tile + P2.
  3. no lever, if none lowers the lost share by more than {TIE:.0%}."""


def parse_keys(**kwargs) -> dict:
    """The keys of ``run`` checked and typed; defaults filled in."""
    check_keys("advise", kwargs, KEYS)
    k = {**DEFAULTS, **kwargs}
    if k.get("data") is None:
        raise ValueError("data: expected a dataset yaml or a demo keyword, e.g. data=demo-large; got nothing")
    imgsz = whole_number("imgsz", k["imgsz"])
    model = k["model"]
    model = None if model is None or not str(model).strip() else str(model).strip()
    return {"data": k["data"], "imgsz": imgsz, "model": model, "stride": finest_stride(model)}


def finest_stride(model: str | None) -> int:
    """The finest stride of a model yaml (built, no weights) or checkpoint; ``STOCK_STRIDE`` when none is given."""
    if model is None:
        return STOCK_STRIDE
    from ultralytics.utils import LOGGER

    from .cfg import model_yaml

    path = str(model_yaml(model))
    level = LOGGER.level
    LOGGER.setLevel("ERROR")
    try:
        if path.endswith((".yaml", ".yml")):
            from ultralytics.nn.tasks import DetectionModel

            net = DetectionModel(path, verbose=False)
        elif path.endswith(".pt") and Path(path).is_file():
            from ultralytics.nn.tasks import load_checkpoint

            net = load_checkpoint(path)[0]
        else:
            raise FileNotFoundError(path)
        return int(min(float(s) for s in net.stride))
    except Exception as e:  # not found, not a model, or no stride
        raise ValueError(f"model: expected a model yaml or .pt file whose finest stride to use (e.g. "
                         f"yolo11n-p2.yaml); got model={model!r} ({type(e).__name__}: {e})") from None
    finally:
        LOGGER.setLevel(level)


def read_objects(data) -> dict:
    """Every object's native side (px) and its image's long side (px), from the train and val splits.

    Returns:
        ``{"sides": (n,) px, "long": (n,) px, "image_long": (m,) px, "images": {split: count}, "objects": {split:
        count}, "info": the data dict}``.
    """
    info = load_data(data, ())
    nkpt = int(np.prod(info["kpt_shape"])) if info.get("kpt_shape") else 0
    sides, longs, image_longs, images, objects = [], [], [], {}, {}
    for split in ("train", "val"):
        paths = split_paths(info, split)
        if not paths or not all(Path(p).exists() for p in paths):
            continue
        files = image_files(paths, split)
        images[split], objects[split] = len(files), 0
        for image, label in zip(files, label_files(files)):
            w, h = image_size(image)
            image_longs.append(max(w, h))
            rows = parse_labels(read_label_bytes(label), label, nkpt)
            objects[split] += len(rows)
            sides.append(np.sqrt(np.clip(row_areas(rows, w, h), 0, None)))
            longs.append(np.full(len(rows), max(w, h), float))
    if not images:
        raise ValueError(f"data: expected a dataset yaml with existing train or val images; got {info['yaml_file']}")
    return {"sides": np.concatenate(sides), "long": np.concatenate(longs), "image_long": np.array(image_longs),
            "images": images, "objects": objects, "info": info}


def levers(sides: np.ndarray, longs: np.ndarray, image_long: np.ndarray, imgsz: int, stride: int) -> dict:
    """The share below the finest stride now and with each applicable lever (``RULE``), and the recommendation.

    Args:
        sides: (n,) native object sides, px; longs: (n,) their images' long sides, px.
        image_long: (m,) every image's long side, px; imgsz: network input side, px; stride: finest stride, px.

    Returns:
        ``{"lost": share now, "options": {lever: {"value", "lost"}}, "lever": "none"|"p2"|"imgsz"|"tile",
        "value": its imgsz or tile (px; None for p2 and none), "add_p2": whether a P2 head comes with it}``; the
        options are keyed ``p2``, ``imgsz``, ``tile``, ``imgsz+p2``, ``tile+p2``, in the order of cost.
    """
    def lost(scale: np.ndarray, s: int) -> float:
        return float(np.mean(sides * scale < s)) if len(sides) else 0.0

    resize = imgsz / longs  # (n,) Ultralytics' long-side resize
    now = lost(resize, stride)
    median_long = float(np.median(image_long))
    raised = min(2 * imgsz, int(math.ceil(median_long / 32) * 32))
    scales = {}  # lever -> (value, object scale (n,))
    if raised > imgsz:
        scales["imgsz"] = (raised, raised / longs)
    if median_long > imgsz:
        scales["tile"] = (imgsz, np.maximum(imgsz / longs, 1.0))
    options = {"p2": {"value": None, "lost": lost(resize, 4)}} if stride > 4 else {}
    options.update({k: {"value": v, "lost": lost(scale, stride)} for k, (v, scale) in scales.items()})
    if stride > 4:
        options.update({f"{k}+p2": {"value": v, "lost": lost(scale, 4)} for k, (v, scale) in scales.items()})
    result = {"lost": now, "options": options, "lever": "none", "value": None, "add_p2": False}
    if now <= OK_SHARE or not options:
        return result
    best = min(o["lost"] for o in options.values())
    if best >= now - TIE:
        return result
    choice = next(k for k in options if options[k]["lost"] <= best + TIE)  # options are in the order of cost
    lever = choice.removesuffix("+p2")
    result.update(lever=lever, value=options[choice]["value"], add_p2=choice.endswith("+p2"))
    return result


def p2_model(model: str | None) -> str:
    """The P2 variant of a YOLO11/12 yaml name (``yolo11s.yaml`` -> ``yolo11s-p2.yaml``), else ``yolo11n-p2.yaml``."""
    import re

    m = re.fullmatch(r"(yolo1[12][nslmx]?)\.yaml", Path(model).name) if model else None
    return f"{m.group(1)}-p2.yaml" if m else "yolo11n-p2.yaml"


def commands(data: str, imgsz: int, model: str | None, advice: dict, tiled_yaml: str) -> list[str]:
    """The shell commands that compare the recommended lever against stock (``yolo-sa compare`` with an arms file)."""
    lever, value = advice["lever"], advice["value"]
    if lever == "none":
        return []
    base = model or "yolo11n.yaml"
    p2 = p2_model(model)
    arms = {"p2": {"trainer": "stock", "model": p2},
            "imgsz": {"trainer": "stock", "imgsz": value},
            "tile": {"trainer": "stock", "data": tiled_yaml, "slice": value}}
    name = {"p2": "p2", "imgsz": f"imgsz{value}", "tile": f"tiles{value}"}[lever]
    own = {name: arms[lever]}
    if advice["add_p2"]:
        own[f"{name}_p2"] = {**arms[lever], "model": p2}
    text = "stock:\\n" + "".join(f"{a}:\\n" + "".join(f"  {k}: {v}\\n" for k, v in keys.items())
                                  for a, keys in own.items())
    lines = []
    if lever == "tile":
        lines.append(f"yolo-sa tile data={data} tile={value} overlap={TILE_OVERLAP}")
    lines.append(f"printf '{text}' > arms_{name}.yaml")
    lines.append(f"yolo-sa compare model={base} data={data} imgsz={imgsz} seeds=3 arms=arms_{name}.yaml "
                 f"name={name}")
    return lines


def run(**kwargs) -> dict:
    """``yolo-sa advise``: print the size histograms, the share below the stride, the recommendation and its commands;
    return them as a dict."""
    from .tile import default_out

    keys = parse_keys(**kwargs)
    imgsz, stride = keys["imgsz"], keys["stride"]
    objs = read_objects(keys["data"])
    sides, longs = objs["sides"], objs["long"]
    resized = sides * imgsz / longs if len(sides) else sides
    advice = levers(sides, longs, objs["image_long"], imgsz, stride)
    tiled = str(default_out(keys["data"], objs["info"], imgsz) / "data.yaml")
    cmds = commands(str(keys["data"]).strip(), imgsz, keys["model"], advice, tiled)
    result = {"imgsz": imgsz, "stride": stride, "images": objs["images"], "objects": objs["objects"],
              "image_long_px": {"min": int(objs["image_long"].min()), "median": float(np.median(objs["image_long"])),
                                "max": int(objs["image_long"].max())},
              "native": size_histograms(sides), "resized": size_histograms(resized),
              "below_stride": advice["lost"], **{k: advice[k] for k in ("options", "lever", "value", "add_p2")},
              "commands": cmds}
    print(report(result))
    return result


def report(r: dict) -> str:
    """The printed text of ``run``'s result."""
    n = sum(r["objects"].values())
    counts = ", ".join(f"{r['images'][s]} {s} images ({r['objects'][s]} objects)" for s in r["images"])
    lines = [f"advise: {counts}; image long side {r['image_long_px']['min']}-{r['image_long_px']['max']} px, median "
             f"{r['image_long_px']['median']:g}",
             f"object side = sqrt(area) px, native and after the resize to imgsz={r['imgsz']} (long side to imgsz):"]
    for bins in ("ai_tod", "coco"):
        labels = list(r["native"][bins])
        lines.append(f"  {'AI-TOD' if bins == 'ai_tod' else 'COCO':<8}" + "".join(f"{k:>9}" for k in labels))
        for where in ("native", "resized"):
            lines.append(f"  {where:<8}" + "".join(f"{_share(r[where][bins][k], n):>9}" for k in labels))
    lines.append(f"below the finest stride ({r['stride']} px) after the resize: {r['below_stride']:.1%} of {n} objects")
    for lever, o in r["options"].items():
        base, _, p2 = lever.partition("+")
        what = {"p2": "a P2 head (stride 4)", "imgsz": f"imgsz={o['value']}", "tile": f"tiles of {o['value']} px"}[base]
        lines.append(f"  with {what + (' + P2' if p2 else ''):<24} {o['lost']:.1%} below the stride")
    none = (f"none needed: at most {OK_SHARE:.0%} of the objects are below the stride at imgsz={r['imgsz']}"
            if r["below_stride"] <= OK_SHARE else "none: no lever brings the objects above the stride")
    lever = {"none": none,
             "p2": "a P2 head (stride 4)", "imgsz": f"raise imgsz to {r['value']}",
             "tile": f"tile at {r['value']} px (yolo-sa tile), sliced validation on the whole images"}[r["lever"]]
    lines.append(f"recommended: {lever}{' + a P2 head' if r['add_p2'] else ''}")
    lines.append(RULE)
    if r["commands"]:
        lines.append("compare it against stock:")
        lines += [f"  {c}" for c in r["commands"]]
    return "\n".join(lines)


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "-"

