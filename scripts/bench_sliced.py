"""Speed and memory of sliced prediction (``size_adaptive.sliced``) against SAHI's own ``get_sliced_prediction``.

One run, one model, the same images: SAHI 0.12's per-slice loop (``batch_size=1``, its default; and its batch N),
ours with batch 1 and batch N, each with and without the whole-image pass, on square images. Reported per image size:
seconds per image, images/s, ms per slice, the ratio to SAHI's loop, and the cost of the whole-image pass in forward
passes of the whole image. Then the peak memory at 2k, 4k and 8k px: each run in a fresh process, its peak resident
memory (VmHWM) above what it held before the call, with the model loaded, warmed up and the image read (the image is
the caller's in every case: 8k x 8k x 3 bytes = 192 MB).

The model is an untrained ``yolo11n.yaml`` (fine for timing) whose class scores are raised (``--bias``) so that every
slice fills Ultralytics' per-pass cap, as a trained model does at validation's confidence of 0.001: the merge then
works on as many detections as in a real validation. The images are random noise (decoding is not timed). Timings are
the CPU time of the process (wall clock in brackets: the machine may be shared), the fastest of ``--repeats`` calls
taken in turn, with the torch threads Ultralytics sets on CPU (cores - 1).

    python scripts/bench_sliced.py                       # about 20 minutes on a 2-core machine
    python scripts/bench_sliced.py --sizes 1024 --memory-sizes 1024,2048 --batch 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("YOLO_OFFLINE", "1")


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset the process's peak resident memory (VmHWM) to its current value; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn):
    """(wall seconds, CPU seconds, peak MB above the resident memory before, result) of one call."""
    import gc

    gc.collect()
    reset_peak()
    before = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, rss_mb("VmHWM") - before, result


def build_model(bias: float, seed: int = 0):
    """An untrained yolo11n (80 classes) whose class scores sit around sigmoid(bias), spread by random weights."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    model = YOLO("yolo11n.yaml")
    head = model.model.model[-1]
    for seq in head.one2many["cls_head"]:
        seq[-1].weight.data.normal_(0, 0.05)
        seq[-1].bias.data[: head.nc] = bias
    return model


RUNS = ("SAHI loop (batch 1)", "SAHI batch N", "ours batch 1", "ours batch 1, no whole", "ours batch N",
        "ours batch N, no whole", "one whole-image forward", "ours, whole-image pass only")


def make_runs(args, side: int, names=RUNS) -> tuple[dict, int]:
    """The runs on a random ``side`` x ``side`` image (name -> call returning the number of detections), after
    Ultralytics' predictor is set up and warmed up once on each path, and the number of slices."""
    import numpy as np
    from sahi.models.ultralytics import UltralyticsDetectionModel
    from sahi.predict import get_sliced_prediction

    from size_adaptive.sliced import forward, from_result, predict_image, slice_windows, sliced_settings

    logging.getLogger("sahi").setLevel(logging.ERROR)  # its switch to NMS/IOU at conf < 0.1, once per call
    model = build_model(args.bias)
    sahi_model = UltralyticsDetectionModel(model=model, confidence_threshold=args.conf, image_size=args.imgsz,
                                           device="cpu")
    # SAHI's wrapper leaves Ultralytics' max_det (300 per pass); ours is set to the same for the same work.
    ours = {(b, whole): sliced_settings(args.slice, 0.2, whole, b, args.imgsz, args.conf, max_det=300, device="cpu")
            for b in (1, args.batch) for whole in (True, False)}
    rng = np.random.default_rng(side)
    image = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)  # BGR for ours
    rgb = np.ascontiguousarray(image[..., ::-1])  # SAHI's wrapper takes RGB

    def sahi(batch=1, whole=True, im=rgb):
        return len(get_sliced_prediction(im, sahi_model, args.slice, args.slice, 0.2, 0.2, perform_standard_pred=whole,
                                         verbose=0, batch_size=batch).object_prediction_list)

    def run_ours(batch, whole, im=image):
        return len(predict_image(model, im, ours[batch, whole], "detect"))

    warm = rng.integers(0, 255, (args.slice * 3 // 2,) * 2 + (3,), dtype=np.uint8)  # 4 slices: every path, merge too
    b = args.batch
    if any(k.startswith("ours") for k in names):  # the setup and first-call allocations of the runs to be measured
        run_ours(b if any(k.startswith("ours batch N") for k in names) else 1, True, warm)
    if any(k.startswith("SAHI") for k in names):
        sahi(b if "SAHI batch N" in names else 1, True, warm[..., ::-1].copy())
    runs = {"SAHI loop (batch 1)": sahi, "SAHI batch N": lambda: sahi(b),
            "ours batch 1": lambda: run_ours(1, True), "ours batch 1, no whole": lambda: run_ours(1, False),
            "ours batch N": lambda: run_ours(b, True), "ours batch N, no whole": lambda: run_ours(b, False),
            "one whole-image forward": lambda: len(model.predict(image, imgsz=args.imgsz, conf=args.conf,
                                                                 verbose=False)[0].boxes),
            "ours, whole-image pass only":  # what slice_whole adds to predict_image, but the merge's growth
                lambda: len(from_result(forward(model, [image], ours[1, True])[0], (0, 0), "detect"))}
    return {k: runs[k] for k in names}, len(slice_windows(side, side, args.slice, 0.2))


def timing(args, side: int) -> str:
    """Print the timing rows of one image size; return its summary line."""
    import torch

    runs, n = make_runs(args, side)
    best = {k: [float("inf"), float("inf"), 0] for k in runs}  # wall, cpu, detections
    for _ in range(args.repeats):  # in turn: every run sees the same machine load
        for name, fn in runs.items():
            wall, cpu, _, dets = measure(fn)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu), dets]
    cpu = {k: v[1] for k, v in best.items()}
    b = args.batch
    for name, (wall, seconds, dets) in best.items():
        slices = 1 if "whole-image" in name else n
        print(f"{side:>6} {name.replace('batch N', f'batch {b}'):<28} {slices:>6} {seconds:>8.2f} "
              f"{f'({wall:.2f})':>8} {1 / seconds:>7.3f} {1000 * seconds / slices:>8.1f} "
              f"{cpu['SAHI loop (batch 1)'] / seconds:>7.2f}x {dets:>5}", flush=True)
    forward, loop = cpu["one whole-image forward"], cpu["SAHI loop (batch 1)"]
    whole_pass = cpu["ours, whole-image pass only"]
    return (f"{side} px ({torch.get_num_threads()} torch thread(s)), CPU time: ours batch 1 is "
            f"{loop / cpu['ours batch 1']:.2f}x and batch {b} {loop / cpu['ours batch N']:.2f}x as fast as SAHI's loop "
            f"(SAHI batch {b}: {loop / cpu['SAHI batch N']:.2f}x); the whole-image pass costs "
            f"{whole_pass / forward:.2f} whole-image forwards of {1000 * forward:.0f} ms (the totals with and without "
            f"it differ by {(cpu['ours batch 1'] - cpu['ours batch 1, no whole']) / forward:.2f} (batch 1) and "
            f"{(cpu['ours batch N'] - cpu['ours batch N, no whole']) / forward:.2f} (batch {b}) forwards)")


def child(args) -> int:
    """One memory run in this fresh process: print ``{"peak_mb", "cpu_s", "slices", "dets"}`` as JSON."""
    name, side = args.child[0], int(args.child[1])
    runs, n = make_runs(args, side, (name,))
    _, cpu, peak, dets = measure(runs[name])
    print(json.dumps({"peak_mb": peak, "cpu_s": cpu, "slices": n, "dets": dets}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,4096", help="image sides timed in every configuration, px")
    parser.add_argument("--memory-sizes", default="2048,4096,8192", help="image sides of the memory runs, px")
    parser.add_argument("--slice", type=int, default=640)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--bias", type=float, default=-4.0, help="class-score bias of the untrained model (logit)")
    parser.add_argument("--repeats", type=int, default=3, help="calls per timed configuration (the fastest counts)")
    parser.add_argument("--child", nargs=2, metavar=("RUN", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.batch, args.slice, args.repeats) < 1 or args.imgsz < 32:
        parser.error("--batch, --slice and --repeats must be >= 1, --imgsz >= 32")
    if args.child:
        return child(args)
    print(f"slice {args.slice} px, imgsz {args.imgsz}, conf {args.conf}, overlap 0.2, batch N = {args.batch}; "
          f"CPU seconds of this process (wall in brackets), fastest of {args.repeats} taken in turn\n")
    header = (f"{'image':>6} {'run':<28} {'slices':>6} {'s/image':>8} {'(wall)':>8} {'img/s':>7} {'ms/slice':>8} "
              f"{'vs SAHI':>8} {'dets':>5}")
    print(header + "\n" + "-" * len(header))
    summary = [timing(args, side) for side in (int(x) for x in args.sizes.split(",") if x)]
    print("\n" + "\n".join(summary))

    print(f"\npeak resident memory above the process's before the call (fresh process per run), MB\n"
          f"{'image':>6} {'image MB':>9} {'run':<28} {'slices':>6} {'peak MB':>8} {'CPU s':>7}")
    flags = [f"--slice={args.slice}", f"--imgsz={args.imgsz}", f"--batch={args.batch}", f"--conf={args.conf}",
             f"--bias={args.bias}"]
    for side in (int(x) for x in args.memory_sizes.split(",") if x):
        for name in ("SAHI loop (batch 1)", "ours batch 1", "ours batch N"):
            out = subprocess.run([sys.executable, __file__, *flags, "--child", name, str(side)], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{side:>6} {side * side * 3 / 2**20:>9.0f} {name.replace('batch N', f'batch {args.batch}'):<28} "
                  f"{r['slices']:>6} {r['peak_mb']:>8.0f} {r['cpu_s']:>7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
