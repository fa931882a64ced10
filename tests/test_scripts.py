"""The helper scripts: the install check prints one line, the P2 cost and loss benchmark scripts print their ratios."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_install_check_prints_one_line_without_the_ultralytics_settings_banner(tmp_path):
    # A fresh settings folder: Ultralytics' first import there logs "Creating new Ultralytics Settings ..." (3 lines).
    env = {k: v for k, v in os.environ.items() if k != "YOLO_VERBOSE"}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "fresh")
    proc = subprocess.run(["sh", "scripts/check_install.sh", sys.executable], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fresh").is_dir()  # Ultralytics did create its settings there, quietly
    assert proc.stderr == "" and len(proc.stdout.splitlines()) == 1, proc.stdout + proc.stderr
    assert re.fullmatch(r"installed: size_adaptive \S+ ultralytics 8\.4\.\d+ torch \S+\n", proc.stdout)
    assert "sh scripts/check_install.sh" in (REPO / "scripts" / "install.sh").read_text()


def test_install_check_fails_when_the_package_does_not_import(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: size_adaptive' >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run(["sh", "scripts/check_install.sh", str(fake)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "installed:" not in proc.stdout


def test_p2_cost_script_prints_parameters_gflops_and_step_time_ratios():
    proc = subprocess.run(
        [sys.executable, "scripts/p2_cost.py", "--models", "yolo11n", "--imgsz", "64", "--batch", "2", "--steps", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert re.match(r"yolo11n\.yaml +2,591,790 +\d+\.\d +\d+\.\d\d$", lines[2])  # 10 classes
    assert re.match(r"yolo11n-p2\.yaml +2,668,008 +\d+\.\d +\d+\.\d\d$", lines[3])
    params, gflops, _ = (float(x) for x in re.findall(r"(\d+\.\d+)x", lines[4]))
    assert lines[4].startswith("P2 / P3") and params == 1.03 and 1.5 < gflops < 1.8


def test_bench_loss_prints_the_ratios_of_a_setting_against_stock_and_refuses_zero_threads():
    # Tiny sizes: the figures are meaningless, the layout and the arithmetic are not.
    cmd = [sys.executable, "scripts/bench_loss.py", "--device", "cpu", "--bs", "2", "--imgsz", "64", "--reps", "1",
           "--loss-reps", "3", "--size-min-pos", "3"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CPU, 1 threads" in proc.stdout and "cpu time" in proc.stdout and "size_min_pos=3" in proc.stdout
    rows = {line[:14].strip(): line[14:].split() for line in proc.stdout.splitlines()[-4:]}
    stock, ours, ratio = (float(x) for x in rows["loss (ms)"][:3])
    assert stock > 0 and ours > 0 and rows["loss (ms)"][3:] == ["<=", "1.05"] and 0.2 < ratio < 5
    assert rows["step, derived"][0].startswith(("0.", "1.")) and float(rows["peak (MiB)"][2]) > 0.5
    bad = subprocess.run([*cmd[:2], "--threads", "0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--threads: expected an integer >= 1; got 0" in bad.stderr
