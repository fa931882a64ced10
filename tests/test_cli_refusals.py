"""``yolo-sa`` as a new user runs it: the real CLI in a subprocess, from a working directory of its own, with
Ultralytics' settings of its own (``runs_dir`` in a temporary folder) and no ``project=`` unless a test gives one.

Every refusal is one ``yolo-sa: error: ...`` line naming the key, exit status 2, no traceback, no new folder, and the
runs that were there before untouched. ``compare`` puts its folder where ``yolo train`` puts a run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_DEMO

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=yolo11n.yaml", "epochs=1", "imgsz=64", "batch=4", "device=cpu", "plots=False", "workers=0"]


class User:
    """A user's machine: a working directory, Ultralytics settings with ``runs_dir`` in ``root/runs`` and an earlier
    finished-looking run there whose files every refusal must leave as they were."""

    def __init__(self, root: Path):
        self.cwd, self.runs = root / "work", root / "runs"
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # not Ultralytics' test mode
        self.env.update(YOLO_CONFIG_DIR=str(root / "settings"), YOLO_SA_DEMO_SIZE=",".join(map(str, TINY_DEMO)),
                        PYTHONUNBUFFERED="1")
        code = f"from ultralytics.utils import SETTINGS; SETTINGS.update(runs_dir={str(self.runs)!r})"
        subprocess.run([sys.executable, "-c", code], env=self.env, cwd=self.cwd, check=True, capture_output=True)
        earlier = self.runs / "detect" / "train"
        (earlier / "weights").mkdir(parents=True)
        (earlier / "args.yaml").write_text("epochs: 3\n")
        (earlier / "weights" / "last.pt").write_bytes(b"earlier checkpoint")

    def run(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "size_adaptive", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        proc.text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
        return proc

    def snapshot(self) -> dict:
        folders = (self.runs, self.cwd)
        return {p: (p.read_bytes() if p.is_file() else None) for f in folders for p in sorted(f.rglob("*"))}

    def refused(self, *args: str, key: str) -> str:
        """Run a command that must be refused; return its error line."""
        before = self.snapshot()
        proc = self.run(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("yolo-sa: error:")]
        assert proc.returncode == 2, proc.text[-3000:]
        assert len(lines) == 1 and "Traceback" not in proc.text, proc.text[-3000:]
        assert lines[0].startswith(f"yolo-sa: error: {key}:"), lines[0]
        assert self.snapshot() == before  # nothing created, nothing changed
        return lines[0]


@pytest.fixture
def user(tmp_path):
    return User(tmp_path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A user who trained one run to its end with a relative project: ``yolo-sa train project=rel name=done``."""
    user = User(tmp_path_factory.mktemp("finished"))
    proc = user.run("train", *TINY, "data=demo", "project=rel", "name=done")
    assert proc.returncode == 0, proc.text[-3000:]
    return user, proc


def test_train_and_compare_place_runs_by_one_rule(finished):
    user, proc = finished
    run = user.runs / "detect" / "rel" / "done"  # Ultralytics' rule: a relative project under runs_dir/<task>
    assert (run / "weights" / "last.pt").is_file() and str(run) in proc.text


def test_compare_with_the_default_project_and_a_cfg_yaml_of_size_keys_writes_its_report(user, tmp_path):
    cfg = tmp_path / "size.yaml"
    cfg.write_text("size_terms: box,dfl\nsize_weights: [3.0, 1.5, 1.0]\n")
    proc = user.run("compare", "arms=stock,size", "seeds=1", f"cfg={cfg}", *TINY)
    assert proc.returncode == 0, proc.text[-3000:]
    folder = user.runs / "detect" / "compare"  # no project=: where 'yolo train name=compare' would put its run
    report = json.loads((folder / "comparison.json").read_text())
    assert (folder / "comparison.md").is_file() and str(folder / "comparison.md") in proc.text
    stock = yaml.safe_load((folder / "stock-seed0" / "args.yaml").read_text())
    size = yaml.safe_load((folder / "size-seed0" / "args.yaml").read_text())
    assert not any(k.startswith("size_") for k in stock)  # the cfg's size keys are the size arms' shared settings
    assert size["size_terms"] == ["box", "dfl"] and size["size_weights"] == [3.0, 1.5, 1.0]
    assert report["size_settings"]["size_terms"] == ["box", "dfl"]
    assert not (user.cwd / "runs").exists()


def test_compare_checks_every_arm_as_train_does_before_anything_trains(user, tmp_path):
    arms = tmp_path / "arms.yaml"
    arms.write_text("stock:\nfixed:\n  size_assign: fixed\nnwd:\n  size_assign: nwd\n")
    line = user.refused("compare", f"arms={arms}", "seeds=1", "model=yolo26n-seg.yaml", "data=demo-seg",
                        *TINY[1:], key="size_assign")
    assert "YOLO26 segment" in line and "arm 'nwd'" in line


@pytest.mark.parametrize("arg, key, says", [
    ("imgsz=abc", "imgsz", "got imgsz='abc'"),
    ("data=nosuch_dataset", "data", "got 'nosuch_dataset' (not found)"),
    ("data=demo_seg", "data", "Did you mean data=demo-seg?"),
    ("data=.", "data", "got the folder '.'"),
    ("data=notyaml.txt", "data", "got 'notyaml.txt'"),
    ("model=nosuch_model", "model", "got 'nosuch_model' (not found)"),
])
def test_stock_values_are_refused_before_a_run_folder_exists(user, arg, key, says):
    (user.cwd / "notyaml.txt").write_text("train: images\n")
    args = [a for a in TINY if not a.startswith(arg.split("=")[0] + "=")]
    assert says in user.refused("train", *args, arg, key=key)


@pytest.mark.parametrize("args, key, says", [
    (["size_assign=nwd", "size_nwd_c=relative", "size_nwd_k=nan"], "size_nwd_k",
     "expected a positive finite number, e.g. size_nwd_k=1; got 'nan'"),
    (["model=yolo26n-seg.yaml", "data=demo-seg", "size_assign=simd"], "size_assign", "YOLO26 segment"),
    (["model=yolo26n-pose.yaml", "data=demo-pose", "size_assign=nwd_small"], "size_assign", "YOLO26 pose"),
    (["size_bins=visdrone"], "size_bins", "expected one of ['coco', 'aitod']; got 'visdrone'"),
])
def test_the_metric_settings_are_refused_before_a_run_folder_exists(user, args, key, says):
    model = [a for a in args if a.startswith("model=")]
    assert says in user.refused("train", *[a for a in TINY if not (model and a.startswith("model="))], *args, key=key)


def test_compare_refuses_the_same_stock_values_before_anything_trains(user):
    assert "Did you mean data=demo-seg?" in user.refused("compare", "seeds=1", "data=demo_seg", *TINY, key="data")
    assert "got imgsz='abc'" in user.refused("compare", "seeds=1", *TINY[:2], "imgsz=abc", key="imgsz")


def test_resuming_a_finished_run_is_refused_without_a_new_folder(finished):
    user, _ = finished
    last = user.runs / "detect" / "rel" / "done" / "weights" / "last.pt"
    line = user.refused("train", "resume", f"model={last}", key="resume")
    assert line.endswith(f"{last} finished its 1 epochs: nothing to resume")
    user.refused("train", f"resume={last}", key="resume")


def test_val_refuses_unknown_size_bins_whole_or_sliced(finished):
    user, _ = finished
    last = user.runs / "detect" / "rel" / "done" / "weights" / "last.pt"
    for sliced in ([], ["slice=320"]):
        line = user.refused("val", f"model={last}", "data=demo", *sliced, "size_bins=tiny", key="size_bins")
        assert line.endswith("expected one of ['coco', 'aitod']; got 'tiny'")


def _dataset(root: Path, demo_yaml: Path, empty_labels: bool, no_train_images: bool) -> Path:
    """A copy of the tiny demo data whose labels are all empty, or whose train folder holds no image."""
    import shutil

    src = Path(yaml.safe_load(demo_yaml.read_text())["path"])
    shutil.copytree(src, root / "data")
    if empty_labels:
        for label in (root / "data").rglob("labels/**/*.txt"):
            label.write_text("")
    if no_train_images:
        shutil.rmtree(root / "data" / "images" / "train")
        (root / "data" / "images" / "train").mkdir()
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root / "data"), "train": "images/train",
                                                    "val": "images/val", "names": {i: f"c{i}" for i in range(4)}}))
    return root / "data.yaml"


def test_nwd_on_labels_without_boxes_is_refused_and_leaves_no_folder(user, tmp_path, tiny_demo_yaml):
    data = _dataset(tmp_path, Path(tiny_demo_yaml), empty_labels=True, no_train_images=False)
    line = user.refused("train", *TINY, f"data={data}", "size_assign=nwd", key="size_nwd_c")
    assert "expected training labels with boxes" in line


def test_a_train_folder_without_images_is_refused_before_a_run_folder_exists(user, tmp_path, tiny_demo_yaml):
    data = _dataset(tmp_path, Path(tiny_demo_yaml), empty_labels=False, no_train_images=True)
    assert "expected training images in" in user.refused("train", *TINY, f"data={data}", key="data")


def test_sliced_val_and_predict_run_through_the_cli_and_write_where_yolo_would(finished, tiny_demo_yaml):
    user, _ = finished
    last = user.runs / "detect" / "rel" / "done" / "weights" / "last.pt"
    val = user.run("val", f"model={last}", "data=demo", "slice=320", "imgsz=64", "plots=False")
    assert val.returncode == 0 and "sliced validation of" in val.text, val.text[-3000:]
    assert (user.runs / "detect" / "val" / "per_size_metrics.json").is_file()
    images = Path(yaml.safe_load(Path(tiny_demo_yaml).read_text())["path"]) / "images" / "val"
    pred = user.run("predict", f"model={last}", f"source={images}", "slice=320", "imgsz=64", "save_txt=True",
                    "conf=0.0001")
    assert pred.returncode == 0, pred.text[-3000:]
    saved = user.runs / "detect" / "predict"
    assert len(list(saved.glob("*.jpg")) + list(saved.glob("*.png"))) == len(list(images.iterdir()))
    assert (saved / "labels").is_dir()
    user.refused("val", f"model={last}", "data=demo", "slice=320", "overlap=1.5", key="overlap")
