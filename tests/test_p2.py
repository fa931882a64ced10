"""The P2 (stride-4) model yamls for YOLO11 and YOLO12 that the package ships: found by name, built from the
families' own scales with strides (4, 8, 16, 32), the assigner's small-box floor, training through ``yolo-sa`` and
``yolo-sa compare``, plain ``yolo`` by path, and checkpoints in plain Ultralytics (``size_adaptive`` unimportable)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner, make_anchors

import helpers as h
from conftest import TINY_DEMO
from size_adaptive import YOLO
from size_adaptive.cfg import CFG_DIR, model_task, model_yaml
from size_adaptive.loss import build_criterion
from test_e2e import STOCK_ONLY, _run

FAMILIES = ("yolo11", "yolo12")
P2_STRIDES = [4.0, 8.0, 16.0, 32.0]
IMGSZ = 64  # anchors: 16² + 8² + 4² + 2² = 340 with P2 (84 without)


def test_each_family_ships_one_p2_yaml_with_the_familys_own_scales():
    for family in FAMILIES:
        ours, upstream = yaml_model_load(CFG_DIR / f"{family}-p2.yaml"), yaml_model_load(f"{family}.yaml")
        assert ours["scales"] == upstream["scales"] and list(ours["scales"]) == list("nsmlx")
        assert ours["backbone"] == upstream["backbone"]  # the P2 head sits on the family's own backbone
        assert ours["head"][-1][:3] == [[19, 22, 25, 28] if family == "yolo11" else [17, 20, 23, 26], 1, "Detect"]
    assert sorted(p.name for p in CFG_DIR.glob("*.yaml")) == ["yolo11-p2.yaml", "yolo12-p2.yaml"]


@pytest.mark.parametrize("family", FAMILIES)
def test_p2_model_builds_with_strides_4_to_32_and_its_scale_from_the_name(family):
    n, s = YOLO(f"{family}n-p2.yaml"), YOLO(f"{family}s-p2.yaml")
    assert n.model.stride.tolist() == s.model.stride.tolist() == P2_STRIDES
    assert (n.model.yaml["scale"], s.model.yaml["scale"]) == ("n", "s") and n.task == "detect"
    params = [sum(p.numel() for p in m.model.parameters()) for m in (n, s)]
    assert 2.5e6 < params[0] < 3e6 and 9e6 < params[1] < 10e6  # 2.74 M and 9.63 M (yolo11, nc 80)


def test_bare_p2_names_resolve_to_the_package_yaml_and_everything_else_is_left_alone(tmp_path, monkeypatch):
    assert model_yaml("yolo12x-p2.yaml") == str(CFG_DIR / "yolo12x-p2.yaml")  # the scale letter stays in the name
    assert model_yaml("yolo11-p2.yaml") == str(CFG_DIR / "yolo11-p2.yaml")
    for other in ("yolov8n-p2.yaml", "yolo26n-p2.yaml", "yolo11n.yaml", "yolo11n-p2.pt", "yolo13n-p2.yaml"):
        assert model_yaml(other) == other  # Ultralytics' own P2 yamls, other files: Ultralytics finds them
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolo11n-p2.yaml").write_text("nc: 1\n")
    assert model_yaml("yolo11n-p2.yaml") == "yolo11n-p2.yaml"  # a file in the working directory wins
    assert model_task("yolo12n-p2.yaml") == "detect"


@pytest.mark.parametrize("cfg, floor, candidates", [("yolo11n-p2.yaml", 8, {4: 4, 8: 0, 16: 0, 32: 0}),
                                                    ("yolo11n.yaml", 16, {8: 4, 16: 0, 32: 0})])
def test_the_assigners_small_box_floor_follows_the_finest_strides(cfg, floor, candidates):
    # TaskAlignedAssigner (8.4.190) enlarges box sides below stride_val = its second stride to stride_val before it
    # picks candidate anchors: 8 px with strides (4, 8, 16, 32), 16 px without P2. A 6x6 px box centred at (32, 32)
    # floored to 8x8 px (28..36) holds the 4 stride-4 anchor centres 30 and 34 in x and y, and no stride-8 centre
    # (28 and 36 lie on its edges). Floored to 16 px it would also hold 16 stride-4 and 4 stride-8 centres.
    m = h.model(model_yaml(cfg), nc=4)
    ours = build_criterion(m, h.settings())
    assigner = next(a for a in ours.assigner.modules() if isinstance(a, TaskAlignedAssigner))
    assert assigner.stride == m.stride.tolist() and assigner.stride_val == floor
    assert v8DetectionLoss(m).assigner.stride_val == floor  # the stock loss, as the stock arm of compare trains
    feats = [torch.zeros(1, 1, IMGSZ // int(s), IMGSZ // int(s)) for s in m.stride]
    anchor_points, stride_tensor = make_anchors(feats, m.stride, 0.5)  # (num_anchors, 2) grid, (num_anchors, 1)
    mask = assigner.select_candidates_in_gts(anchor_points * stride_tensor, torch.tensor([[[29.0, 29, 35, 35]]]),
                                             torch.ones(1, 1, 1))  # (1, 1, num_anchors)
    per_stride = {int(s): int(mask[0, 0][stride_tensor[:, 0] == s].sum()) for s in m.stride}
    assert len(stride_tensor) == {8: 340, 16: 84}[floor] and per_stride == candidates


P2_STOCK = STOCK_ONLY.split("weights, data, images")[0] + """
import onnx

folder, data, images, out, imgsz = *sys.argv[1:5], int(sys.argv[5])
for name in ("best.pt", "last.pt"):
    model = YOLO(f"{folder}/weights/{name}")
    assert model.model.stride.tolist() == [4.0, 8.0, 16.0, 32.0], model.model.stride
    metrics = model.val(data=data, imgsz=imgsz, batch=4, device="cpu", plots=False, project=out, name=name)
    results = model.predict(images, imgsz=imgsz, device="cpu", verbose=False)
    assert len(results) > 0 and metrics.box.map50 >= 0
onnx_file = YOLO(f"{folder}/weights/best.pt").export(format="onnx", imgsz=imgsz)
shape = [d.dim_value for d in onnx.load(onnx_file).graph.output[0].type.tensor_type.shape.dim]
results = YOLO(onnx_file, task="detect").predict(images, imgsz=imgsz, device="cpu", verbose=False)
assert "size_adaptive" not in sys.modules
print("stock-ok", len(results), "onnx output", shape)
"""


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("cfg", ["yolo11n-p2.yaml", "yolo12n-p2.yaml"])
def test_p2_model_trains_through_yolo_sa_and_its_checkpoints_work_in_plain_ultralytics(tmp_path, cfg):
    _run("-m", "size_adaptive", "train", f"model={cfg}", "data=demo", "epochs=1", f"imgsz={IMGSZ}", "batch=4",
         "device=cpu", "plots=False", f"project={tmp_path}", "name=run")
    folder = tmp_path / "run"
    (row,) = _rows(folder)
    assert float(row["size/mean_fg_weight"]) > 1.0  # the size-adaptive loss trained (weights 2, 1.5, 1)
    args = yaml.safe_load((folder / "args.yaml").read_text())
    assert args["model"] == str(CFG_DIR / cfg)
    images = Path(args["data"]).parent / "images" / "val"
    proc = _run("-c", P2_STOCK, str(folder), args["data"], str(images), str(tmp_path / "stock"), str(IMGSZ))
    nc = len(yaml.safe_load(Path(args["data"]).read_text())["names"])
    assert f"stock-ok {TINY_DEMO[1]} onnx output [1, {4 + nc}, 340]" in proc.stdout


PLAIN_YOLO = STOCK_ONLY.split("weights, data, images")[0] + """
from ultralytics.cfg import entrypoint

sys.argv = ["yolo", "train", *sys.argv[1:]]
entrypoint()
assert "size_adaptive" not in sys.modules
"""


def test_plain_yolo_trains_a_p2_yaml_by_its_path(tmp_path, tiny_demo_yaml):
    # The path with the scale letter (not a file): Ultralytics loads yolo12-p2.yaml from it at scale n, as it does
    # for its own yamls.
    _run("-c", PLAIN_YOLO, f"model={CFG_DIR / 'yolo12n-p2.yaml'}", f"data={tiny_demo_yaml}", "epochs=1",
         f"imgsz={IMGSZ}", "batch=4", "device=cpu", "plots=False", f"project={tmp_path}", "name=plain")
    folder = tmp_path / "plain"
    assert len(_rows(folder)) == 1 and "size/mean_fg_weight" not in _rows(folder)[0]  # Ultralytics' own trainer
    model = torch.load(folder / "weights" / "last.pt", weights_only=False)["model"]
    assert model.stride.tolist() == P2_STRIDES and model.yaml["scale"] == "n"


def test_compare_takes_a_p2_arm_with_the_stock_trainer(tmp_path, monkeypatch):
    # The recipe in docs/assignment.md ("Pitting it against a loss setting"): the P2 head with Ultralytics' own
    # loss against the size-adaptive loss on the P3 model.
    from size_adaptive.compare import check_args, compare
    from test_compare import TRAIN

    arms = {"size": None, "p2": {"model": "yolo11n-p2.yaml", "trainer": "stock"}}
    plan = check_args(model="yolo11n.yaml", arms=arms)
    assert [plan.run_args(a)["model"] for a in plan.arms] == ["yolo11n.yaml", str(CFG_DIR / "yolo11n-p2.yaml")]
    monkeypatch.setenv("YOLO_SA_DEMO_SIZE", ",".join(map(str, TINY_DEMO)))
    report = compare(model="yolo11n.yaml", data="demo", seeds=1, arms=arms, project=tmp_path, name="p2",
                     **{**TRAIN, "epochs": 1, "imgsz": IMGSZ})
    assert list(report["arms"]) == ["size", "p2"] and report["arms"]["p2"]["definition"]["trainer"] == "stock"
    p2_args = report["arms"]["p2"]["runs"]["0"]["args"]
    assert p2_args["model"] == str(CFG_DIR / "yolo11n-p2.yaml") and "size_weights" not in p2_args
    model = torch.load(tmp_path / "p2" / "p2-seed0" / "weights" / "last.pt", weights_only=False)["model"]
    assert model.stride.tolist() == P2_STRIDES
    assert "p2" in (tmp_path / "p2" / "comparison.md").read_text()
