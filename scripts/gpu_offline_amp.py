"""What Ultralytics' AMP check does without a network, and whether it can stall a run (``scripts/gpu_check.py`` step 7).

    python scripts/gpu_offline_amp.py --device cuda:0 --imgsz 640 --batch 8 --project DIR --json offline_amp.json

Ultralytics 8.4.190 ``BaseTrainer._setup_train`` calls ``check_amp(model)`` when ``amp=True``: on CPU and MPS it returns
False at once (AMP is for accelerators); on CUDA it loads ``yolo26n.pt`` from the weights folder, downloading it when
missing (``attempt_download_asset`` -> ``safe_download``: a request with a 30 s connect timeout, then ``is_online()``;
offline it raises ``ConnectionError``, which ``check_amp`` catches: it logs "checks skipped" and AMP stays on).

This script runs with every socket call refused, as on a server without a network (``YOLO_OFFLINE`` is left as the
caller set it; ``gpu_check`` unsets it, the worst case):

1. the load that ``check_amp`` tries, timed, and the exception it meets;
2. a one-epoch training on the demo data with ``amp=True``, recording how long ``check_amp`` took, what it returned,
   what it logged and whether the trainer kept AMP on;
3. ``--drop``: the same load on a network that drops packets instead of refusing them (name lookups answer, every
   connect waits for its timeout), with ``YOLO_OFFLINE=1``: the bound on the wait.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
ATTEMPTS: list[str] = []


def refuse_network() -> None:
    """Every name lookup and connection fails at once, as on a host without a route."""

    def refuse(what):
        def refused(*args, **kwargs):
            ATTEMPTS.append(what)
            raise OSError(f"network refused by gpu_offline_amp ({what})")

        return refused

    socket.getaddrinfo = refuse("getaddrinfo")
    socket.create_connection = refuse("create_connection")
    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect_ex")


def drop_network() -> None:
    """Name lookups answer with a documentation address; every connect waits for its timeout, then times out."""

    def lookup(host, port, *args, **kwargs):
        ATTEMPTS.append("getaddrinfo")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port or 443))]

    def connect(self, address):
        ATTEMPTS.append("connect")
        time.sleep(self.gettimeout() or 60)
        raise socket.timeout("timed out (dropped by gpu_offline_amp)")

    socket.getaddrinfo = lookup
    socket.socket.connect = connect


def load_amp_weights() -> dict:
    """The load ``check_amp`` tries, timed: (exception, seconds) or the weights found."""
    from ultralytics import YOLO
    from ultralytics.utils import WEIGHTS_DIR

    weights = WEIGHTS_DIR / "yolo26n.pt"
    if weights.is_file():
        return {"weights": str(weights), "present": True}
    t = time.perf_counter()
    try:
        YOLO(weights)
        error = None
    except Exception as e:  # noqa: BLE001 - recorded, and judged by check_amp's own except clauses
        error = e
    out = {"weights": str(weights), "present": False, "seconds": round(time.perf_counter() - t, 2),
           "exception": f"{type(error).__name__}: {error}".strip()[:300] if error else None,
           "caught_by_check_amp": isinstance(error, (ConnectionError, AttributeError, ModuleNotFoundError))}
    return out


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if "AMP" in msg:
            self.lines.append(msg.replace("\x1b[34m\x1b[1m", "").replace("\x1b[0m", ""))


def train_once(a) -> dict:
    """One epoch with ``amp=True``, ``check_amp`` timed; the trainer's AMP after the check."""
    import ultralytics.engine.trainer as upstream
    from ultralytics.utils import LOGGER

    from size_adaptive.model import YOLO

    seen: dict = {}
    check_amp = upstream.check_amp

    def timed_check_amp(model):
        t = time.perf_counter()
        try:
            seen["returned"] = check_amp(model)
        finally:
            seen["seconds"] = round(time.perf_counter() - t, 2)
        return seen["returned"]

    lines = _Lines()
    LOGGER.addHandler(lines)
    upstream.check_amp = timed_check_amp  # the trainer module's own name for it (BaseTrainer._setup_train)
    model = YOLO("yolo11n.yaml")
    model.add_callback("on_train_start", lambda trainer: seen.update(trainer_amp=bool(trainer.amp)))
    t = time.perf_counter()
    try:
        model.train(data="demo", epochs=1, imgsz=a.imgsz, batch=a.batch, device=a.device, amp=True, workers=0,
                    plots=False, project=str(Path(a.project).resolve()), name="offline", exist_ok=False)
    finally:
        upstream.check_amp = check_amp
        LOGGER.removeHandler(lines)
    return {"check_amp_called": "returned" in seen, "check_amp_returned": seen.get("returned"),
            "check_amp_seconds": seen.get("seconds"), "trainer_amp": seen.get("trainer_amp"),
            "train_seconds": round(time.perf_counter() - t, 1), "amp_log": lines.lines}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--project", required=True, help="folder for the training run")
    p.add_argument("--drop", action="store_true", help="also time the load on a network that drops packets")
    p.add_argument("--json", required=True)
    a = p.parse_args()
    refuse_network()
    from ultralytics.utils import WEIGHTS_DIR

    had_weights_dir = WEIGHTS_DIR.exists()  # safe_download creates it before it tries
    cuda = a.device.startswith("cuda")
    record: dict = {"YOLO_OFFLINE": os.environ.get("YOLO_OFFLINE"), "device": a.device}
    record["load_refused"] = load_amp_weights()
    print(f"yolo26n.pt load with the network refused: {record['load_refused']}", flush=True)
    record["training"] = train_once(a)
    print(f"one epoch with amp=True: {record['training']}", flush=True)
    if a.drop and not record["load_refused"]["present"]:
        os.environ["YOLO_OFFLINE"] = "1"
        drop_network()
        record["load_dropped_offline"] = load_amp_weights()
        print(f"yolo26n.pt load, packets dropped, YOLO_OFFLINE=1: {record['load_dropped_offline']}", flush=True)
    record["network_attempts"] = sorted(set(ATTEMPTS))
    if not had_weights_dir and WEIGHTS_DIR.is_dir() and not any(WEIGHTS_DIR.iterdir()):
        WEIGHTS_DIR.rmdir()  # leave no empty folder behind
    load, run = record["load_refused"], record["training"]
    said = "; ".join(run["amp_log"]) or "nothing about AMP"
    if load["present"]:
        what = f"yolo26n.pt present in {Path(load['weights']).parent}: no download tried"
    else:
        what = (f"yolo26n.pt load offline: {load['exception'].split(':')[0]} after {load['seconds']} s, "
                f"{'caught by check_amp' if load['caught_by_check_amp'] else 'NOT caught by check_amp'}")
    if "load_dropped_offline" in record:
        what += f"; with packets dropped and YOLO_OFFLINE=1: {record['load_dropped_offline']['seconds']} s"
    stalled = (run["check_amp_seconds"] or 0) > 60
    if cuda:
        ok = run["check_amp_called"] and run["trainer_amp"] is True and not stalled
        status = "PASS" if ok else "FAIL"
        reason = (f"check_amp took {run['check_amp_seconds']} s, returned {run['check_amp_returned']}, AMP "
                  f"{'on' if run['trainer_amp'] else 'OFF'}; logged: {said}; {what}")
    else:
        status = "SKIP"
        reason = (f"needs CUDA: on CPU check_amp returns {run['check_amp_returned']} at once "
                  f"({run['check_amp_seconds']} s, AMP is for accelerators); {what}; a 1-epoch run with the network "
                  f"refused finished in {run['train_seconds']} s")
    Path(a.json).write_text(json.dumps({"status": status, "reason": reason, "figures": record}, indent=1))
    print(f"offline AMP: {status} {reason}")
    return 1 if status == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
