"""The GPU check: seven steps on a CUDA machine, each logged, then one summary table (run it as scripts/gpu_check.sh).

    sh scripts/gpu_check.sh                 # on a CUDA server: every step, results in $OUT or gpu_check/
    sh scripts/gpu_check.sh --quick         # fewer repetitions, a smaller demo run (a time-limited machine)
    sh scripts/gpu_check.sh --steps sync,amp --device cuda:1
    sh scripts/gpu_check.sh --dry-run       # every step on CPU at toy sizes, CUDA parts skipped (CI)

Steps, in priority order (docs/gpu.md says what each checks): 1 tests (the whole suite), 2 sync (no host sync in our
part of the loss, ``gpu_step.py sync``), 3 amp (``gpu_step.py amp``), 4 speed (``bench_loss.py``), 5 sliced
validation speed (once ``size_adaptive.sliced`` exists), 6 run (``yolo-sa compare`` on the demo data), 7 offline AMP
(``gpu_offline_amp.py``). Each step runs in its own process with a time limit; its output goes to ``<n>-<step>.log``
in the results folder, with ``summary.txt``, ``summary.json`` and ``environment.txt``. Exit status: 0 when no step
failed, 1 when one did, 2 for a bad argument (before anything is written).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
STEPS = {  # name -> table label, in priority order
    "tests": "1 tests", "sync": "2 no host sync", "amp": "3 AMP", "speed": "4 speed", "sliced": "5 sliced val",
    "run": "6 real run", "offline": "7 offline AMP",
}
RUN_ORDER = ("tests", "sync", "amp", "speed", "run", "sliced", "offline")  # sliced validates the run's weights
TARGETS = {"loss": 1.05, "step": 1.01, "memory": 1.01}  # ratios ours / stock (issue 22)


@dataclass
class Result:
    step: str
    status: str  # PASS, FAIL or SKIP
    reason: str
    seconds: float = 0.0
    log: str = ""
    figures: dict = field(default_factory=dict)


@dataclass
class Plan:
    out: Path
    dry: bool
    device: str
    quick: bool
    demo_size: str
    epochs: int
    steps: list

    @property
    def yolo_device(self) -> str:
        return self.device.split(":")[-1] if self.device.startswith("cuda") else "cpu"


def parse(argv: list[str]) -> Plan:
    p = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every step on CPU at toy sizes; CUDA parts skipped")
    p.add_argument("--device", default=None, help="CUDA device (default cuda:0; --dry-run: cpu)")
    p.add_argument("--steps", default=",".join(STEPS),
                   help=f"comma list of steps to run (default all: {','.join(STEPS)})")
    p.add_argument("--quick", action="store_true", help="fewer benchmark repetitions, a smaller demo run")
    p.add_argument("--demo-size", default=None, help="TRAIN,VAL demo images of the real run (default 512,128; "
                                                     "--quick 128,64; --dry-run 4,2)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the real run (default 10; --quick 3; --dry-run 1)")
    a = p.parse_args(argv)
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    if not steps or any(s not in STEPS for s in steps):
        p.error(f"--steps: expected a comma list of {', '.join(STEPS)}; got {a.steps!r}")
    if a.demo_size is not None and not re.fullmatch(r"[1-9]\d*,[1-9]\d*", a.demo_size):
        p.error(f"--demo-size: expected TRAIN,VAL image counts >= 1, e.g. 512,128; got {a.demo_size!r}")
    if a.epochs is not None and a.epochs < 1:
        p.error(f"--epochs: expected an integer >= 1; got {a.epochs}")
    device = a.device or ("cpu" if a.dry_run else "cuda:0")
    if a.dry_run and device != "cpu":
        p.error(f"--device: expected cpu (or nothing) with --dry-run; got {device!r}")
    if not a.dry_run and not re.fullmatch(r"cuda(:\d+)?", device):
        p.error(f"--device: expected a CUDA device such as cuda:0 (--dry-run checks on CPU); got {device!r}")
    out = Path(os.environ.get("OUT") or REPO / "gpu_check").resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        p.error(f"results folder {out} is not empty: move it away or set OUT to a new folder (nothing is overwritten)")
    if not a.dry_run:
        probe = subprocess.run([PY, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True,
                               text=True)
        if probe.stdout.strip() != "True":
            p.error("no CUDA device: torch.cuda.is_available() is False here; run with --dry-run to check the "
                    "script on CPU")
    demo = a.demo_size or ("4,2" if a.dry_run else "128,64" if a.quick else "512,128")
    epochs = a.epochs or (1 if a.dry_run else 3 if a.quick else 10)
    return Plan(out, a.dry_run, device, a.quick, demo, epochs, steps)


def env(plan: Plan, offline: bool = True) -> dict:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg")}
    if offline:
        e.setdefault("YOLO_OFFLINE", "1")  # no online checks on a server without a network
    else:
        e.pop("YOLO_OFFLINE", None)  # the offline AMP step meets refused sockets without Ultralytics' switch
    if plan.dry:
        e["CUDA_VISIBLE_DEVICES"] = ""  # CPU, even on a CUDA machine
    return e


def child(plan: Plan, name: str, cmd: list[str], timeout: int, extra_env: dict | None = None,
          offline: bool = True) -> tuple[int | None, float, Path]:
    """Run ``cmd`` in the repository with its output appended to the step's log; rc None when it timed out."""
    log = plan.out / f"{STEPS[name].split()[0]}-{name}.log"
    e = {**env(plan, offline), **(extra_env or {})}
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        t = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=REPO, env=e, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
        seconds = time.perf_counter() - t
        f.write(f"\n[exit {rc if rc is not None else f'timed out after {timeout} s'}, {seconds:.1f} s]\n\n")
    return rc, seconds, log


def _failed(name: str, rc: int | None, log: Path, timeout: int) -> str:
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:-1]
    why = f"timed out after {timeout} s" if rc is None else f"exit {rc}"
    return f"{why}; see {log.name}" + (f": {tail[-1].strip()[:160]}" if tail else "")


def step_tests(plan: Plan) -> Result:
    xml = plan.out / "tests.xml"
    cmd = [PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    if plan.dry:  # not the whole suite: it holds this check's own test, which runs this dry run
        cmd += ["-k", "cuda", "--ignore=tests/test_gpu_check.py"]
    timeout = 600 if plan.dry else 7200
    rc, seconds, log = child(plan, "tests", cmd, timeout)
    finals = [x for x in log.read_text(errors="replace").splitlines() if re.search(r"\d+ \w+.* in [\d.]+s", x)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)",
                                                  finals[-1] if finals else "")}
    cuda = _cuda_tests(xml)
    figures = {"counts": counts, "cuda_tests": cuda}
    if plan.dry:
        ok = rc == 0 and cuda["total"] > 0 and cuda["skipped"] == cuda["total"]
        collected = sum(counts.get(k, 0) for k in ("passed", "failed", "skipped", "deselected", "error", "errors"))
        reason = (f"needs CUDA; dry run: whole suite not run ({collected} tests collected), its {cuda['total']} "
                  f"CUDA-only tests skip on CPU ({cuda['reasons'][0] if cuda['reasons'] else 'no reason given'})")
        return Result("tests", "SKIP" if ok else "FAIL", reason if ok else _failed("tests", rc, log, timeout),
                      seconds, log.name, figures)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    if rc is None or cuda["total"] == 0 or cuda["skipped"]:
        why = (_failed("tests", rc, log, timeout) if rc is None else
               f"{cuda['skipped']} of {cuda['total']} CUDA tests skipped on a CUDA machine; {summary}")
        return Result("tests", "FAIL", why, seconds, log.name, figures)
    status = "PASS" if rc == 0 else "FAIL"
    return Result("tests", status, f"{summary} in {seconds:.0f} s ({cuda['total']} CUDA tests ran)", seconds,
                  log.name, figures)


def _cuda_tests(xml: Path) -> dict:
    """The CUDA-only tests (named *cuda*) in a JUnit report: how many, how many skipped and why."""
    out = {"total": 0, "skipped": 0, "reasons": []}
    if not xml.exists():
        return out
    for case in ET.parse(xml).getroot().iter("testcase"):
        if "cuda" in case.get("name", "").lower():
            out["total"] += 1
            skip = case.find("skipped")
            if skip is not None:
                out["skipped"] += 1
                reason = (skip.get("message") or "").split(": ", 1)[-1]
                if reason not in out["reasons"]:
                    out["reasons"].append(reason)
    return out


def _json_step(plan: Plan, name: str, cmd: list[str], timeout: int, **kw) -> Result:
    """A step whose script writes ``{status, reason, figures}`` to ``<name>.json``."""
    record = plan.out / f"{name}.json"
    rc, seconds, log = child(plan, name, [*cmd, "--json", str(record)], timeout, **kw)
    if rc is None or not record.exists():
        return Result(name, "FAIL", _failed(name, rc, log, timeout), seconds, log.name)
    r = json.loads(record.read_text())
    return Result(name, r["status"], r["reason"], seconds, log.name, r.get("figures", {}))


def step_sync(plan: Plan) -> Result:
    size = ["--imgsz", "64", "--bs", "2", "--toy"] if plan.dry else ["--imgsz", "640", "--bs", "8"]
    return _json_step(plan, "sync", [PY, "scripts/gpu_step.py", "sync", "--device", plan.device, *size], 1800)


def step_amp(plan: Plan) -> Result:
    size = ["--imgsz", "64", "--bs", "2", "--steps", "3"] if plan.dry else ["--imgsz", "640", "--bs", "16"]
    return _json_step(plan, "amp", [PY, "scripts/gpu_step.py", "amp", "--device", plan.device, *size], 1800)


def step_speed(plan: Plan) -> Result:
    record = plan.out / "speed.json"
    if plan.dry:
        size = ["--batch", "2", "--imgsz", "64", "--reps", "1", "--loss-reps", "2", "--settings", "box_nwd"]
    else:
        size = ["--batch", "16,64", "--imgsz", "640", "--settings", "each"]
        size += ["--reps", "20", "--loss-reps", "60"] if plan.quick else []
    cmd = [PY, "scripts/bench_loss.py", "--device", plan.device, *size, "--json", str(record)]
    timeout = 600 if plan.dry else 5400
    rc, seconds, log = child(plan, "speed", cmd, timeout)
    if rc != 0 or not record.exists():
        return Result("speed", "FAIL", _failed("speed", rc, log, timeout), seconds, log.name)
    rows = [_judged(r) for r in json.loads(record.read_text())]
    figures = {"pairs": rows, "targets": TARGETS}
    if plan.dry:
        return Result("speed", "SKIP", f"needs CUDA (CUDA events, GPU memory); dry run: {len(rows)} toy CPU "
                      f"measurement(s), not judged", seconds, log.name, figures)
    missed = [f"{r['setting']} bs {r['bs']} {k} {r[k]:.3f}" for r in rows for k in TARGETS if not r[k + '_ok']]
    worst = {k: max(r[k] for r in rows) for k in TARGETS}
    reason = (f"{len(rows)} (batch, setting) pairs; worst ratios: loss {worst['loss']:.3f}, step {worst['step']:.3f}, "
              f"peak memory {worst['memory']:.3f}" + (f"; over target: {', '.join(missed)}" if missed else "; all on "
                                                                                                     "target"))
    return Result("speed", "FAIL" if missed else "PASS", reason, seconds, log.name, figures)


def _judged(r: dict) -> dict:
    out = {"setting": r["setting"], "bs": r["bs"], "loss": r["loss"]["ratio"], "step": r["step"]["ratio"],
           "step_derived": r["step_derived_ratio"], "memory": r["memory"]["ratio"]}
    return {**out, **{k + "_ok": out[k] <= t for k, t in TARGETS.items()}}


def step_run(plan: Plan) -> Result:
    project = plan.out / "run"  # absolute: compare's runs go exactly there
    size = ["imgsz=64", "batch=2", "workers=0", "plots=False"] if plan.dry else ["imgsz=640", "batch=16"]
    cmd = [PY, "-m", "size_adaptive", "compare", "model=yolo11n.yaml", "data=demo", "arms=stock,size", "seeds=2",
           f"epochs={plan.epochs}", f"device={plan.yolo_device}", f"project={project}", "name=compare", *size]
    timeout = 900 if plan.dry else 7200
    rc, seconds, log = child(plan, "run", cmd, timeout, {"YOLO_SA_DEMO_SIZE": plan.demo_size})
    report = project / "compare" / "comparison.json"
    if rc != 0 or not report.exists():
        return Result("run", "FAIL", _failed("run", rc, log, timeout), seconds, log.name)
    r = json.loads(report.read_text())
    epoch = {arm: [_epoch_seconds(Path(run["folder"]) / "results.csv") for run in e["runs"].values()]
             for arm, e in r["arms"].items()}
    mean = {arm: sum(v) / len(v) for arm, v in epoch.items()}
    ratio = mean["size"] / mean["stock"]
    per_size = {arm: {k: e["metrics"][k]["mean"] for k in ("mAP small", "mAP medium", "mAP large", "mAP50-95")
                      if k in e["metrics"]} for arm, e in r["arms"].items()}
    maps = "; ".join(f"{arm} " + " ".join(f"{k.split()[-1]} {v:.3f}" for k, v in m.items())
                     for arm, m in per_size.items())
    figures = {"epoch_seconds": epoch, "epoch_time_ratio": ratio, "map": per_size, "report": str(report)}
    where = "CPU toy run: " if plan.dry else ""
    return Result("run", "PASS", f"{where}demo {plan.demo_size}, {plan.epochs} epochs, 2 seeds: epoch time size / "
                  f"stock {ratio:.3f} ({mean['stock']:.1f} s stock); mAP {maps}", seconds, log.name, figures)


def _epoch_seconds(results_csv: Path) -> float:
    """Mean seconds per epoch (train and val) from results.csv's cumulative ``time``, the first epoch left out when
    there are more (warm-up, cuDNN plans)."""
    rows = results_csv.read_text().splitlines()
    col = [c.strip() for c in rows[0].split(",")].index("time")
    t = [float(r.split(",")[col]) for r in rows[1:] if r.strip()]
    steps = [b - a for a, b in zip([0.0, *t], t)]
    return sum(steps[1:]) / len(steps[1:]) if len(steps) > 1 else steps[0]


SLICED_DATA = """
import json
from pathlib import Path
import yaml
from size_adaptive import demo
key = "demo-large" if "demo-large" in getattr(demo, "LARGE_TASKS", {}).values() else "demo"
data = Path(demo.resolve_data(key))
cfg = yaml.safe_load(data.read_text())
val = Path(cfg.get("path") or data.parent) / cfg.get("val_whole", cfg["val"])
n = sum(1 for f in val.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png"})
print(json.dumps({"data": str(data), "key": key, "n_val": n}))
"""


def _output(log: Path) -> str:
    """The output of the latest command in a step's log."""
    return log.read_text(errors="replace").rsplit("\n$ ", 1)[-1]


def step_sliced(plan: Plan) -> Result:
    extra = {"YOLO_SA_DEMO_SIZE": plan.demo_size, "YOLO_SA_DEMO_LARGE_SIZE": "1,2" if plan.dry else "4,16"}
    # Available when yolo-sa val refuses a bad slice= by name, as sliced validation checks its keys (issue 20);
    # without it the key is unknown to Ultralytics.
    probe = [PY, "-m", "size_adaptive", "val", "model=yolo11n.yaml", "data=demo", "slice=-1"]
    rc, seconds, log = child(plan, "sliced", probe, 600, extra)
    if rc is None or "error: slice:" not in _output(log):
        said = [x.strip() for x in _output(log).splitlines() if x.strip() and not x.startswith("[exit")]
        return Result("sliced", "SKIP", "not available in this version (yolo-sa val slice=-1: "
                      f"{said[-1][:100] if said else 'no output'})", seconds, log.name)
    weights = plan.out / "run" / "compare" / "size-seed0" / "weights" / "best.pt"
    if not weights.exists():
        return Result("sliced", "SKIP", "needs the real run's weights (step run)", seconds, log.name)
    rc, t, log = child(plan, "sliced", [PY, "-c", SLICED_DATA], 1800, extra)
    seconds += t
    lines = [x for x in _output(log).splitlines() if x.startswith("{")]
    if rc != 0 or not lines:
        return Result("sliced", "FAIL", _failed("sliced", rc, log, 1800), seconds, log.name)
    data = json.loads(lines[-1])
    imgsz, slc = ("64", "320") if plan.dry else ("640", "640")
    figures = {**data, "images_per_s": {}}
    for batch in (1, 16):
        cmd = [PY, "-m", "size_adaptive", "val", f"model={weights}", f"data={data['data']}", f"slice={slc}",
               f"batch={batch}", f"imgsz={imgsz}", f"device={plan.yolo_device}", f"project={plan.out / 'sliced'}",
               f"name=batch{batch}"]
        rc, t, log = child(plan, "sliced", cmd, 1800, extra)
        seconds += t
        if rc != 0:
            return Result("sliced", "FAIL", _failed("sliced", rc, log, 1800), seconds, log.name, figures)
        figures["images_per_s"][batch] = data["n_val"] / t
    ips = figures["images_per_s"]
    where = "CPU toy run: " if plan.dry else ""
    return Result("sliced", "PASS", f"{where}{data['key']}, {data['n_val']} val images, slice {slc}: {ips[1]:.2f} "
                  f"images/s at batch 1, {ips[16]:.2f} at batch 16 (wall time, process start included)", seconds,
                  log.name, figures)


def step_offline(plan: Plan) -> Result:
    size = ["--imgsz", "64", "--batch", "2"] if plan.dry else ["--imgsz", "640", "--batch", "16", "--drop"]
    cmd = [PY, "scripts/gpu_offline_amp.py", "--device", plan.device, *size, "--project", str(plan.out / "offline")]
    return _json_step(plan, "offline", cmd, 900, extra_env={"YOLO_SA_DEMO_SIZE": "4,2" if plan.dry else "64,16"},
                      offline=False)


def environment(plan: Plan) -> str:
    code = ("import torch, ultralytics, size_adaptive; c = torch.cuda.is_available(); print(f'torch {torch.__version__}"
            " (CUDA {torch.version.cuda}), ultralytics {ultralytics.__version__}, size_adaptive "
            "{size_adaptive.__version__}; device: ' + (torch.cuda.get_device_name(0) if c else 'CPU'))")
    info = subprocess.run([PY, "-c", code], cwd=REPO, env=env(plan), capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if not plan.dry and _has("nvidia-smi") \
        else None
    lines = [f"python {platform.python_version()} on {platform.platform()}", info or "(package import failed)",
             f"commit {commit.stdout.strip() or 'unknown'}", f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    lines += [smi.stdout.strip()] if smi and smi.returncode == 0 else []
    return "\n".join(lines)


def _has(tool: str) -> bool:
    return any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def table(results: list[Result]) -> str:
    lines = [f"{'step':16s}{'status':8s}figures / reason"]
    by_name = {r.step: r for r in results}
    for name, label in STEPS.items():
        if name in by_name:
            r = by_name[name]
            lines.append(f"{label:16s}{r.status:8s}{r.reason}")
    speed = by_name.get("speed")
    if speed and speed.figures.get("pairs"):
        t = TARGETS
        lines += ["", f"speed, ratios ours / stock (targets: loss <= {t['loss']}, step <= {t['step']}, peak memory <= "
                      f"{t['memory']})" + (" -- toy CPU figures, not judged" if speed.status == "SKIP" else "")]
        lines.append(f"  {'bs':>4s}  {'setting':14s}{'loss':>12s}{'step':>12s}{'memory':>12s}{'step, derived':>15s}")
        judged = speed.status != "SKIP"
        for p in speed.figures["pairs"]:
            cells = "".join(f"{p[k]:7.3f} {('ok' if p[k + '_ok'] else 'FAIL') if judged else '':4s}"
                            for k in ("loss", "step", "memory"))
            lines.append(f"  {p['bs']:4d}  {p['setting']:14s}{cells}{p['step_derived']:15.3f}")
    return "\n".join(lines)


RUNNERS = {"tests": step_tests, "sync": step_sync, "amp": step_amp, "speed": step_speed, "run": step_run,
           "sliced": step_sliced, "offline": step_offline}


def main(argv: list[str] | None = None) -> int:
    plan = parse(sys.argv[1:] if argv is None else argv)
    plan.out.mkdir(parents=True, exist_ok=True)
    header = "dry run on CPU at toy sizes (CUDA parts skipped)" if plan.dry else f"on {plan.device}"
    info = environment(plan)
    (plan.out / "environment.txt").write_text(info + "\n")
    print(f"gpu_check: {header}; results in {plan.out}\n{info}\n", flush=True)
    results = []
    for name in RUN_ORDER:
        if name not in plan.steps:
            continue
        print(f"gpu_check: {STEPS[name]} ...", flush=True)
        try:
            r = RUNNERS[name](plan)
        except Exception as e:  # noqa: BLE001 - a broken step is that step's FAIL, the others still run
            r = Result(name, "FAIL", f"gpu_check error: {type(e).__name__}: {e}"[:300])
        print(f"gpu_check: {STEPS[name]}: {r.status} ({r.seconds:.0f} s)", flush=True)
        results.append(r)
    text = table(results)
    (plan.out / "summary.txt").write_text(f"gpu_check: {header}\n{info}\n\n{text}\n")
    (plan.out / "summary.json").write_text(json.dumps(
        {"dry_run": plan.dry, "device": plan.device, "environment": info, "steps": [asdict(r) for r in results]},
        indent=1, default=str))
    print(f"\n{text}\n\ngpu_check: logs, summary.txt and summary.json in {plan.out}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
