"""The in-process steps of ``scripts/gpu_check.py``: no host sync in a training step, and AMP.

    python scripts/gpu_step.py sync --device cuda:0 --imgsz 640 --bs 8 --json sync.json
    python scripts/gpu_step.py amp --device cuda:0 --imgsz 640 --bs 8 --steps 200 --json amp.json

Each prints its progress and writes one JSON record: ``status`` (PASS, FAIL or SKIP), ``reason`` (one line for the
summary table) and ``figures``.

**sync.** A full training step (model forward, our criterion, backward, optimizer step) for every task's loss and every
size setting, with the code of ``size_adaptive`` under ``torch.cuda.set_sync_debug_mode("error")`` and upstream's units
under ``"default"``: a ``sys.setprofile`` hook switches the mode on every Python call by where the called function
lives (``size_adaptive/`` strict; a method of ``ultralytics/`` relaxed; anything else, module-level helpers of
``ultralytics`` such as ``bbox_iou`` included, inherits its caller's mode). Upstream's own
syncs (``get_box_metrics``' ``nonzero``, ``BboxLoss``' boolean mask) are upstream's; ours are what DESIGN.md's
invariant 7 forbids. On CPU (``--dry-run``) CUDA's mode sees nothing, so the same strict regions raise on the
host-sync ops of ``tests/test_loss.py``'s recorder (``SYNC_OPS``) instead: a proxy that proves the plumbing. A control
compiles the seed's ``if fg_mask.sum() > 0`` into a function that claims a ``size_adaptive`` file and must be caught,
and into one that claims an ``ultralytics`` file and must not.

**amp.** Training steps as Ultralytics trains (fp16 autocast, ``GradScaler``, unscale, gradient clipping at 10, step,
update) with our criterion: every loss finite, and on the same predictions all-ones weights give the stock loss.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's package; helpers and test_loss's SYNC_OPS

import helpers as h  # noqa: E402
from test_loss import SYNC_OPS  # noqa: E402
from ultralytics.utils.loss import v8DetectionLoss  # noqa: E402

import size_adaptive  # noqa: E402
import ultralytics  # noqa: E402
from size_adaptive.loss import build_criterion, size_losses  # noqa: E402

OURS = str(Path(size_adaptive.__file__).parent) + "/"
UPSTREAM = str(Path(ultralytics.__file__).parent) + "/"
ALL = dict(assign="nwd", min_pos=3, box_nwd=0.2, norm=True, terms=("box", "dfl"))
FIXED_ALL = {**ALL, "assign": "fixed"}  # YOLO26 segment and pose refuse size_assign=nwd by name
SETTINGS = {  # name -> tests/helpers.settings keywords
    "default": {}, "size_norm": dict(norm=True),
    "terms=cls": dict(terms=("cls",)), "terms=box": dict(terms=("box",)), "terms=dfl": dict(terms=("dfl",)),
    "terms=box,dfl": dict(terms=("box", "dfl")),
    "assign=fixed": dict(assign="fixed"), "assign=nwd": dict(assign="nwd"), "min_pos=3": dict(min_pos=3),
    "box_nwd=0.2": dict(box_nwd=0.2), "all": ALL, "all=fixed": FIXED_ALL,
}
TASKS = {  # model yaml -> (task, settings run on it)
    "yolo11n.yaml": ("detect", list(SETTINGS)),
    "yolo26n.yaml": ("detect", ["default", "all"]),
    "yolo11n-seg.yaml": ("segment", ["default", "all"]),
    "yolo26n-seg.yaml": ("segment", ["default", "all=fixed"]),
    "yolo11n-pose.yaml": ("pose", ["default", "all"]),
    "yolo26n-pose.yaml": ("pose", ["default", "all=fixed"]),
    "yolo11n-obb.yaml": ("obb", ["default", "all"]),
}
TOY_TASKS = {"yolo11n.yaml": ("detect", ["default", "all"]), "yolo26n-pose.yaml": ("pose", ["all=fixed"])}  # --toy


class HostSync(RuntimeError):
    """A host-device sync in a strict region (CPU proxy)."""


class SyncGuard:
    """``size_adaptive``'s frames strict, ``ultralytics``' relaxed, others inherit; CUDA's sync debug mode follows.

    Attributes:
        entered: our functions entered in strict mode (qualified name -> calls).
        syncs: host syncs seen in strict mode on CPU (op, our innermost function).
    """

    def __init__(self, cuda: bool):
        self.cuda, self.stack, self.entered, self.syncs = cuda, [("default", "")], Counter(), []
        self.mode = "default"

    def _set(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            if self.cuda:
                torch.cuda.set_sync_debug_mode(mode)

    def _profile(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            if code.co_filename.startswith(OURS):
                self.entered[name] += 1
                entry = ("error", name)
            elif code.co_filename.startswith(UPSTREAM) and _in_class(code):
                entry = ("default", "")  # an upstream unit (a method): its syncs are upstream's
            else:
                entry = self.stack[-1]
            self.stack.append(entry)
            self._set(entry[0])
        elif event == "return" and len(self.stack) > 1:
            self.stack.pop()
            self._set(self.stack[-1][0])

    def torch_op(self, name: str, args) -> None:
        """CPU proxy: refuse a host-sync op of ``SYNC_OPS`` in a strict region."""
        if self.mode == "error" and (name in SYNC_OPS or _bool_mask_index(name, args)):
            self.syncs.append((name, self.stack[-1][1]))
            raise HostSync(f"host sync '{name}' in size_adaptive's {self.stack[-1][1]}")

    @contextmanager
    def active(self):
        mode = None if self.cuda else _CpuSyncOps(self)
        if mode is not None:
            mode.__enter__()
        sys.setprofile(self._profile)  # this thread only: the loss runs in it
        try:
            yield self
        finally:
            sys.setprofile(None)
            self.stack[1:] = []
            self._set("default")
            if mode is not None:
                mode.__exit__(None, None, None)


def _in_class(code) -> bool:
    """Whether a code object is a method (or lives inside one); upstream's module-level helpers that our code calls
    (``bbox_iou``, ``probiou``) inherit our strict mode."""
    qualname = getattr(code, "co_qualname", None)  # Python 3.11+
    return "." in qualname if qualname else code.co_varnames[:1] in (("self",), ("cls",))


def _bool_mask_index(name: str, args) -> bool:
    return name == "__getitem__" and any(
        isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in _flat(args[1:]))


def _flat(xs):
    for x in xs:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


class _CpuSyncOps(torch.overrides.TorchFunctionMode):
    def __init__(self, guard: SyncGuard):
        super().__init__()
        self.guard = guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.guard.torch_op(getattr(func, "__name__", str(func)), args)
        return func(*args, **(kwargs or {}))


SEED_BUG = "def seed_bug(fg_mask):\n    if fg_mask.sum() > 0:\n        return 1\n    return 0\n"


def control(guard: SyncGuard, device: str) -> dict:
    """The seed's branch on a tensor value, compiled as if it lived in size_adaptive (caught) and in ultralytics
    (not caught)."""
    fg_mask = torch.ones(4, device=device, dtype=torch.bool)
    out = {}
    for where, root in (("ours", OURS), ("upstream", UPSTREAM)):
        ns: dict = {}
        exec(compile(SEED_BUG, root + "_gpu_check_control.py", "exec"), ns)  # noqa: S102
        try:
            with guard.active():
                ns["seed_bug"](fg_mask)
            out[where] = False
        except (HostSync, RuntimeError) as e:
            out[where] = "sync" in str(e).lower()
    guard.syncs.clear()
    guard.entered.clear()
    return {"caught_in_ours": out["ours"], "caught_in_upstream": out["upstream"]}


def boxes(bs: int, imgsz: int, per_image: int, g: torch.Generator) -> tuple:
    """xyxy px boxes, 80 % small (4-31 px sides), 15 % medium (32-95), 5 % large (96-300), clipped to the image."""
    n = bs * per_image
    lo_hi = [(4, 31)] * round(n * 0.8) + [(32, 95)] * round(n * 0.15)
    lo_hi += [(96, 300)] * (n - len(lo_hi))
    lo = torch.tensor([min(a, imgsz * 0.8) for a, _ in lo_hi])
    hi = torch.tensor([min(b, imgsz * 0.9) for _, b in lo_hi])
    wh = (lo + torch.rand(n, generator=g) * (hi - lo)).unsqueeze(1).repeat(1, 2)  # (n, 2) px
    wh[:, 1] *= 0.7 + 0.6 * torch.rand(n, generator=g)
    wh = wh.clamp(max=imgsz - 2)
    xy = torch.rand(n, 2, generator=g) * (imgsz - wh)  # top-left corner, inside the image
    return torch.cat((xy, xy + wh), 1), [i // per_image for i in range(n)]


def task_batch(task: str, bs: int, imgsz: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xyxy, idx = boxes(bs, imgsz, 12, g)
    classes = torch.randint(0, 10, (len(idx),), generator=g).tolist()
    angles = (torch.rand(len(idx), generator=g) * math.pi / 2).tolist() if task == "obb" else None
    b = h.task_batch(task, xyxy, imgsz, idx, classes=classes, angles=angles)
    b["img"] = torch.rand(bs, 3, imgsz, imgsz, generator=g)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}


def fresh_model(cfg: str, device: str):
    return copy.deepcopy(h.model(cfg)).to(device).train()


def train_step(m, criterion, b: dict, opt) -> dict:
    m.criterion = criterion
    try:
        total, items = m.loss(b)
        total.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    finally:
        del m.criterion
    for part in size_losses(criterion):
        part.reset_size_counts()  # the diagnostics' read-out, without its once-per-epoch host read
    return {"total": total.detach(), "items": items}


def run_sync(a) -> dict:
    cuda = a.device.startswith("cuda")
    guard = SyncGuard(cuda)
    ctl = control(guard, a.device)
    print(f"control: seed's branch caught in a size_adaptive frame: {ctl['caught_in_ours']}, in an ultralytics frame: "
          f"{ctl['caught_in_upstream']}", flush=True)
    results, failures = [], []
    tasks = TOY_TASKS if a.toy else TASKS
    for cfg, (task, names) in tasks.items():
        m = fresh_model(cfg, a.device)
        b = task_batch(task, a.bs, a.imgsz, a.device)
        opt = torch.optim.SGD(m.parameters(), lr=1e-4)
        for name in names:
            criterion = build_criterion(m, h.settings(**SETTINGS[name]))
            if cuda:
                train_step(m, criterion, b, opt)  # warm-up outside the guard: lazy inits, cuDNN plans
            try:
                with guard.active():
                    train_step(m, criterion, b, opt)
                error = None
            except (HostSync, RuntimeError) as e:
                error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                failures.append(f"{cfg} {name}: {error}")
            results.append({"model": cfg, "task": task, "setting": name, "error": error})
            print(f"{cfg:18s} {name:14s} {'host sync: ' + error if error else 'no host sync'}", flush=True)
    entered = dict(guard.entered)
    ours_seen = any(k.endswith("weigh") for k in entered)
    ok = not failures and ctl["caught_in_ours"] and not ctl["caught_in_upstream"] and ours_seen
    how = "torch.cuda.set_sync_debug_mode('error')" if cuda else "CPU proxy: test_loss.SYNC_OPS in strict regions"
    reason = (f"{len(results)} training steps ({len(tasks)} models, {len({r['setting'] for r in results})} settings), "
              f"{len(failures)} with a host sync in our code ({how}); control "
              f"{'caught' if ctl['caught_in_ours'] else 'MISSED'}")
    if failures:
        reason += f"; first: {failures[0]}"
    status = "PASS" if ok else "FAIL"
    if ok and not cuda:
        status, reason = "SKIP", f"needs CUDA (set_sync_debug_mode); {reason}"
    return {"status": status, "reason": reason, "figures": {
        "steps": results, "control": ctl, "our_functions_entered": entered, "imgsz": a.imgsz, "bs": a.bs,
        "device": a.device, "mode": how}}


def run_amp(a) -> dict:
    cuda = a.device.startswith("cuda")
    kind = "cuda" if cuda else "cpu"
    m = fresh_model("yolo11n.yaml", a.device)
    ours = build_criterion(m, h.settings())
    unit = build_criterion(m, h.settings(weights=(1, 1, 1)))
    stock = v8DetectionLoss(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    scaler = torch.amp.GradScaler(kind)
    batches = [task_batch("detect", a.bs, a.imgsz, a.device, seed=s) for s in range(4)]
    worst, equal, skipped, finite = 0.0, 0, 0, True
    for i in range(a.steps):
        b = batches[i % len(batches)]
        with torch.autocast(kind, dtype=torch.float16):
            preds = m(b["img"])
            total, items = ours(preds, b)
        with torch.no_grad(), torch.autocast(kind, dtype=torch.float16):
            detached = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in preds.items()}
            s_total, u_total = stock(detached, b)[0], unit(detached, b)[0]
        equal += bool(torch.equal(s_total, u_total))
        worst = max(worst, float(((u_total - s_total).abs() / s_total.abs().clamp(min=1e-12)).max()))
        finite &= bool(torch.isfinite(total).all()) and all(bool(torch.isfinite(v).all()) for v in items.values())
        scale = scaler.get_scale()
        scaler.scale(total.sum()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=10.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        skipped += scaler.get_scale() < scale
        if (i + 1) % max(1, a.steps // 10) == 0 or i + 1 == a.steps:
            print(f"step {i + 1}/{a.steps}: loss {float(total.detach().sum()):.4f}, scale {scaler.get_scale():g}, "
                  f"unit == stock so far {equal}/{i + 1}", flush=True)
    ok = finite and worst <= 1e-6
    reason = (f"{a.steps} fp16 steps with GradScaler: losses {'finite' if finite else 'NOT finite'}, all-ones "
              f"weights == stock in {equal}/{a.steps} (max rel. diff {worst:.1e}), {skipped} steps skipped by the "
              "scaler")
    status = "PASS" if ok else "FAIL"
    if ok and not cuda:
        status, reason = "SKIP", f"needs CUDA (fp16 autocast with the CUDA grad scaler); CPU proxy: {reason}"
    return {"status": status, "reason": reason, "figures": {
        "steps": a.steps, "finite": finite, "unit_equal_stock_steps": equal, "max_rel_diff": worst,
        "scaler_skipped": int(skipped), "final_scale": scaler.get_scale(), "imgsz": a.imgsz, "bs": a.bs}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("sync", "amp"))
    p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--bs", type=int, default=8)
    p.add_argument("--steps", type=int, default=200, help="amp: training steps")
    p.add_argument("--toy", action="store_true", help="sync: 3 of the settings on 2 models (gpu_check --dry-run)")
    p.add_argument("--json", required=True, help="write the step's record here")
    a = p.parse_args()
    torch.manual_seed(0)
    ultralytics.utils.LOGGER.setLevel("ERROR")
    record = (run_sync if a.step == "sync" else run_amp)(a)
    Path(a.json).write_text(json.dumps(record, indent=1))
    print(f"{a.step}: {record['status']} {record['reason']}")
    return 1 if record["status"] == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
