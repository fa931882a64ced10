"""Overhead of the size-adaptive loss against stock Ultralytics, measured in one run.

    python scripts/bench_loss.py                 # bs 16, imgsz 640, 10 classes, on CUDA if present, else CPU
    python scripts/bench_loss.py --device cpu --reps 11 --loss-reps 60
    python scripts/bench_loss.py --size-norm --size-terms box   # a variant: one BboxLoss call more, the balance
    python scripts/bench_loss.py --size-assign nwd --size-min-pos 3 --size-box-nwd 0.2   # assignment settings
    python scripts/bench_loss.py --batch 16,64 --settings each --json bench.json   # every preset at two batch sizes

Stock ``v8DetectionLoss`` and ``SizeAdaptiveDetectionLoss`` get the same model, predictions and targets (about 60
boxes per image, 80 % of them small, as in drone imagery). Calls alternate between the two (stock, ours, stock, ...)
so drifts in clock speed or load hit both alike; the times are medians over the repetitions and the ratio is the
median of the repetitions' ratios ours / stock. On CUDA the time is
the GPU time between two CUDA events recorded around the call (``--clock events``; ``--clock wall``: wall-clock time
between synchronisations). On CPU torch runs one thread (``--threads``) and the time is the CPU time
of this process (``time.process_time``), which time slices given to other processes on a shared machine do not
inflate; with one thread each op costs its own work rather than thread wake-ups, which weigh on the many small ops of
the assignment settings far more than on upstream's large dense ones (``--threads 2 --clock wall`` measures what a
2-core training process sees). Two measurements:

- loss: one criterion call on fixed head outputs (forward only, as a training step calls it);
- step: a full training step, model forward + loss + backward.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` around one step of each; on CPU the peak resident set size
of a fresh process that runs one step of each (the ratios are of the whole process, interpreter included).
Prints the ratios ours / stock; targets are at most 1.02 for the loss with the weighting alone (1.05 with an
assignment, NWD or ``size_bins=aitod`` setting) and 1.01 for the step.

``--settings`` measures named presets (``SETTINGS``; ``each``: all of them) instead of the ``--size-*`` options, and
``--bs``/``--batch`` takes a comma list: every (batch, setting) pair is measured in turn, each with its own table, then
a summary table; ``--json`` writes every pair's figures (times in s, memory in bytes) for scripts
(``scripts/gpu_check.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402

NC = 10
# Named settings for --settings: bench variant keys (norm, terms, assign, min_pos, box_nwd, nwd_c, bins) over the
# defaults.
SETTINGS = {
    "default": {},
    "size_norm": {"norm": True},
    "terms_box": {"terms": "box"},
    "assign_fixed": {"assign": "fixed"},
    "assign_nwd": {"assign": "nwd"},
    "min_pos3": {"min_pos": 3},
    "box_nwd": {"box_nwd": 0.2},
    "assign_nwd_relative": {"assign": "nwd", "nwd_c": "relative"},
    "box_nwd_relative": {"box_nwd": 0.2, "nwd_c": "relative"},
    "assign_nwd_small": {"assign": "nwd_small"},
    "assign_simd": {"assign": "simd"},
    "bins_aitod": {"bins": "aitod"},
}
VARIANT_DEFAULTS = {"norm": False, "terms": "cls,box,dfl", "assign": "stock", "min_pos": 0, "box_nwd": 0.0,
                    "nwd_c": "12", "bins": "coco"}
SIMD_MN = "6.13,4.59"  # SimD's constants for the bench (the published ones; a training run fits its own)


def setup(bs: int, imgsz: int, device: str, seed: int = 0, norm: bool = False, terms: str = "cls,box,dfl",
          assign: str = "stock", min_pos: int = 0, box_nwd: float = 0.0, nwd_c: str = "12", bins: str = "coco"):
    """Model, images, batch and the two criteria, all on ``device``."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import LOGGER
    from ultralytics.utils.loss import v8DetectionLoss

    from size_adaptive.loss import SizeAdaptiveDetectionLoss
    from size_adaptive.settings import SizeSettings

    LOGGER.setLevel("ERROR")
    g = torch.Generator().manual_seed(seed)
    model = DetectionModel("yolo11n.yaml", nc=NC, verbose=False).to(device).train()
    model.args = get_cfg()
    images = torch.rand(bs, 3, imgsz, imgsz, generator=g).to(device)
    sides = []  # box sides in px: 80 % small (4-31 px), 15 % medium (32-95 px), 5 % large (96-300 px)
    per_image = 60
    for lo, hi, share in ((4, 31, 0.80), (32, 95, 0.15), (96, 300, 0.05)):
        n = round(bs * per_image * share)
        sides.append(lo + torch.rand(n, 2, generator=g) * (hi - lo))
    wh = torch.cat(sides)[torch.randperm(bs * per_image, generator=g)] / imgsz
    xy = wh / 2 + torch.rand(len(wh), 2, generator=g) * (1 - wh)
    batch = {
        "batch_idx": torch.arange(bs).repeat_interleave(per_image).float().to(device),
        "cls": torch.randint(0, NC, (len(wh), 1), generator=g).float().to(device),
        "bboxes": torch.cat((xy, wh), 1).to(device),
        "img": images,
    }
    settings = SizeSettings.from_dict({"size_space": "input", "size_norm": norm, "size_terms": terms,
                                       "size_assign": assign, "size_min_pos": min_pos, "size_box_nwd": box_nwd,
                                       "size_nwd_c": nwd_c, "size_simd_mn": SIMD_MN if assign == "simd" else None,
                                       "size_bins": bins})
    return model, batch, v8DetectionLoss(model), SizeAdaptiveDetectionLoss(model, settings=settings)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time, "events": "events"}  # events: CUDA events


def _timed(fn, device: str, clock=time.perf_counter) -> float:
    """Seconds that ``fn()`` takes: GPU time between two CUDA events (``clock="events"``), else ``clock()`` time."""
    if clock == "events":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # ms -> s
    _sync(device)
    t = clock()
    fn()
    _sync(device)
    return clock() - t


def bench(bs: int, imgsz: int, device: str, reps: int, loss_reps: int, clock: str = "wall", **variant) -> dict:
    model, batch, stock, ours = setup(bs, imgsz, device, **variant)
    with torch.no_grad():
        preds = model(batch["img"])

    def loss_call(criterion):
        return lambda: criterion(preds, batch)

    def step(criterion):
        def run():
            model.zero_grad(set_to_none=True)
            total, _ = criterion(model(batch["img"]), batch)
            total.sum().backward()

        return run

    times = {k: {"stock": [], "ours": []} for k in ("loss", "step")}
    for kind, make, n in (("loss", loss_call, loss_reps), ("step", step, reps)):
        if not n:
            times[kind] = {"stock": [float("nan")], "ours": [float("nan")]}
            continue
        for criterion in (stock, ours):  # warm-up
            make(criterion)()
        for i in range(n):
            order = (("stock", stock), ("ours", ours)) if i % 2 == 0 else (("ours", ours), ("stock", stock))
            for name, criterion in order:
                times[kind][name].append(_timed(make(criterion), device, CLOCKS[clock]))
            print(f"  {kind} {i + 1}/{n}: stock {times[kind]['stock'][-1] * 1e3:.1f} ms, "
                  f"ours {times[kind]['ours'][-1] * 1e3:.1f} ms", flush=True)
    out = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in times.items()}
    for k, d in times.items():  # each repetition's two calls ran back to back: their ratio cancels slower drifts
        out[k]["ratio"] = statistics.median(o / s for s, o in zip(d["stock"], d["ours"]))
    return out


def _variant_args(norm: bool, terms: str, assign: str, min_pos: int, box_nwd: float, nwd_c: str,
                  bins: str) -> list[str]:
    return ["--size-terms", terms, "--size-assign", assign, "--size-min-pos", str(min_pos), "--size-box-nwd",
            str(box_nwd), "--size-nwd-c", str(nwd_c), "--size-bins", bins] + (["--size-norm"] if norm else [])


def peak_memory(bs: int, imgsz: int, device: str, **variant) -> dict:
    """Peak memory of one training step with each criterion."""
    if device.startswith("cuda"):
        model, batch, stock, ours = setup(bs, imgsz, device, **variant)
        out = {}
        for name, criterion in (("stock", stock), ("ours", ours)):
            model.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            total, _ = criterion(model(batch["img"]), batch)
            total.sum().backward()
            torch.cuda.synchronize()
            out[name] = torch.cuda.max_memory_allocated()
        return out
    out = {}
    for name in ("stock", "ours"):
        cmd = [sys.executable, __file__, "--child", name, "--bs", str(bs), "--imgsz", str(imgsz), "--device", device,
               *_variant_args(**variant)]
        out[name] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    return out


def child(name: str, bs: int, imgsz: int, device: str, **variant) -> None:
    model, batch, stock, ours = setup(bs, imgsz, device, **variant)
    total, _ = (stock if name == "stock" else ours)(model(batch["img"]), batch)
    total.sum().backward()
    print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def _batch_sizes(text: str) -> list[int]:
    """``"16"`` or ``"16,64"`` -> batch sizes >= 1."""
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes >= 1, e.g. 16 or 16,64; got {text!r}")
    return sizes


def _setting_names(text: str) -> list[str]:
    """``"each"`` or a comma list of ``SETTINGS`` names."""
    names = list(SETTINGS) if text == "each" else [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected 'each' or a comma list of {list(SETTINGS)}; got {text!r}")
    return names


def measure(bs: int, imgsz: int, device: str, reps: int, loss_reps: int, clock: str, variant: dict) -> dict:
    """One (batch, setting) pair: times, ratios and peak memory, printed as a table and returned."""
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"bs {bs}, imgsz {imgsz}, {NC} classes on {name}; torch {torch.__version__}; medians of {loss_reps} loss "
          f"calls and {reps} training steps, interleaved, {clock} time; ours with size_norm={variant['norm']} "
          f"size_terms={variant['terms']} size_assign={variant['assign']} size_min_pos={variant['min_pos']} "
          f"size_box_nwd={variant['box_nwd']} size_nwd_c={variant['nwd_c']} size_bins={variant['bins']}", flush=True)
    t = bench(bs, imgsz, device, reps, loss_reps, clock, **variant)
    mem = peak_memory(bs, imgsz, device, **variant) if reps else {"stock": float("nan"), "ours": float("nan")}
    unit = "allocated on the GPU" if cuda else "peak RSS of a fresh process"
    print()
    print(f"{'':14s}{'stock':>12s}{'ours':>12s}{'ratio':>8s}  target")
    # 1.02 for the weighting alone; 1.05 with an assignment, NWD or AI-TOD bins setting on top
    more = variant["assign"] != "stock" or variant["min_pos"] or variant["box_nwd"] or variant["bins"] != "coco"
    targets = {"loss": 1.05 if more else 1.02, "step": 1.01}
    for kind, target in targets.items():
        s, o = t[kind]["stock"], t[kind]["ours"]
        print(f"{kind + ' (ms)':14s}{s * 1e3:12.2f}{o * 1e3:12.2f}{t[kind]['ratio']:8.3f}  <= {target}")
    derived = float("nan")
    if reps and loss_reps:  # the step differs from stock only in the loss: its extra time over the step's
        derived = 1 + (t["loss"]["ours"] - t["loss"]["stock"]) / t["step"]["stock"]
        print(f"{'step, derived':14s}{'':24s}{derived:8.3f}  (1 + extra loss time / stock step)")
    print(f"{'peak (MiB)':14s}{mem['stock'] / 2**20:12.1f}{mem['ours'] / 2**20:12.1f}"
          f"{mem['ours'] / mem['stock']:8.3f}  ({unit})", flush=True)
    return {"bs": bs, "imgsz": imgsz, "device": name, "clock": clock, "variant": dict(variant), "loss": t["loss"],
            "step": t["step"], "step_derived_ratio": derived, "targets": targets,
            "memory": {**mem, "ratio": mem["ours"] / mem["stock"], "unit": unit}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bs", "--batch", type=_batch_sizes, default=[16],
                   help="batch size, or a comma list measured in turn (default 16)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=None,
                   help="training-step repetitions (default 50 on CUDA, 11 on CPU; 0 skips the step)")
    p.add_argument("--loss-reps", type=int, default=None, help="loss-call repetitions (default 200 on CUDA, 60 on CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on CPU: each op then costs its own work, not thread wake-ups; "
                        "torch's default on CUDA)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default=None,
                   help="events: GPU time between CUDA events; wall: wall-clock time; cpu: CPU time of this process "
                        "(default: events on CUDA, cpu on CPU)")
    p.add_argument("--size-norm", action="store_true", help="measure size_norm=True")
    p.add_argument("--size-terms", default="cls,box,dfl", help="size_terms of the measured loss (default cls,box,dfl)")
    p.add_argument("--size-assign", default="stock", choices=("stock", "fixed", "nwd", "nwd_small", "simd"),
                   help=f"size_assign (default stock; simd with m, n = {SIMD_MN})")
    p.add_argument("--size-min-pos", type=int, default=0, help="size_min_pos (default 0)")
    p.add_argument("--size-box-nwd", type=float, default=0.0, help="size_box_nwd (default 0)")
    p.add_argument("--size-nwd-c", default="12", help="size_nwd_c: px or 'relative' (default 12)")
    p.add_argument("--size-bins", default="coco", choices=("coco", "aitod"),
                   help="size_bins: the diagnostics' counts (aitod: two more bins; default coco)")
    p.add_argument("--settings", type=_setting_names, default=None,
                   help=f"measure these named settings instead of the --size-* options: 'each' or a comma list of "
                        f"{', '.join(SETTINGS)}")
    p.add_argument("--json", default=None, help="also write every measurement's figures to this JSON file")
    p.add_argument("--child", choices=("stock", "ours"), help=argparse.SUPPRESS)
    a = p.parse_args()
    variant = {"norm": a.size_norm, "terms": a.size_terms, "assign": a.size_assign, "min_pos": a.size_min_pos,
               "box_nwd": a.size_box_nwd, "nwd_c": a.size_nwd_c, "bins": a.size_bins}
    if a.child:
        return child(a.child, a.bs[0], a.imgsz, a.device, **variant)
    cuda = a.device.startswith("cuda")
    clock = a.clock or ("events" if cuda else "cpu")
    threads = a.threads if a.threads is not None else (None if cuda else 1)
    if threads is not None:
        if threads < 1:
            p.error(f"--threads: expected an integer >= 1; got {threads}")
        torch.set_num_threads(threads)
    if cuda and clock == "cpu":
        p.error("--clock: expected events or wall on CUDA (CPU time does not see the GPU's work); got cpu")
    if not cuda and clock == "events":
        p.error(f"--clock: expected cpu or wall on {a.device} (CUDA events need a CUDA device); got events")
    reps = a.reps if a.reps is not None else (50 if cuda else 11)
    loss_reps = a.loss_reps if a.loss_reps is not None else (200 if cuda else 60)
    named = {n: {**VARIANT_DEFAULTS, **SETTINGS[n]} for n in a.settings} if a.settings else {"given": variant}
    results = []
    for bs in a.bs:
        for setting, v in named.items():
            if len(a.bs) * len(named) > 1:
                print(f"\n== bs {bs}, setting {setting} ==", flush=True)
            results.append({"setting": setting, **measure(bs, a.imgsz, a.device, reps, loss_reps, clock, v)})
    if len(results) > 1:
        print(f"\n{'bs':>4s}  {'setting':20s}{'loss':>8s}{'step':>8s}{'derived':>9s}{'peak':>8s}  "
              "(ratios ours / stock)")
        for r in results:
            print(f"{r['bs']:4d}  {r['setting']:20s}{r['loss']['ratio']:8.3f}{r['step']['ratio']:8.3f}"
                  f"{r['step_derived_ratio']:9.3f}{r['memory']['ratio']:8.3f}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
