"""Contract tests: the Ultralytics signatures, call order and attributes that this package relies on.

They read upstream's code as installed, so an Ultralytics upgrade that moves one of our extension points fails here,
with the point named, instead of silently training with the stock loss.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.models.yolo.pose import PoseTrainer
from ultralytics.models.yolo.segment import SegmentationTrainer
from ultralytics.nn.tasks import DetectionModel, OBBModel, PoseModel, SegmentationModel
from ultralytics.utils import dist
from ultralytics.utils.loss import (
    BboxLoss,
    E2ELoss,
    PoseLoss26,
    RotatedBboxLoss,
    SegmentLoss26,
    v8DetectionLoss,
    v8OBBLoss,
    v8PoseLoss,
    v8SegmentationLoss,
)
from ultralytics.utils.tal import PoseTaskAlignedAssigner, TaskAlignedAssigner

import helpers as h
from size_adaptive._compat import TESTED, check_ultralytics_version
from size_adaptive.loss import SIZE_ADAPTIVE_LOSSES
from size_adaptive.trainer import TRAINERS


def _tree(func) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(func)))


def _calls(func, owner: str = "self") -> list[ast.Call]:
    """Calls of ``owner.<attr>(...)`` in ``func``, in source order."""
    calls = [
        n for n in ast.walk(_tree(func))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name) and n.func.value.id == owner
    ]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_installed_ultralytics_is_in_the_tested_range():
    check_ultralytics_version()  # raises outside the range


@pytest.mark.parametrize("version", ["8.3.200", "8.5.0", "9.0.0"])
def test_untested_ultralytics_gives_one_message_naming_both_versions(version):
    with pytest.raises(ImportError) as e:
        check_ultralytics_version(version)
    assert f"found ultralytics {version}" in str(e.value) and f">={TESTED[0]},<{TESTED[1]}" in str(e.value)


def test_detection_loss_computes_through_assigner_then_bce_then_bbox_loss():
    names = [c.func.attr for c in _calls(v8DetectionLoss.get_assigned_targets_and_loss)]
    wrapped = [n for n in names if n in {"assigner", "bce", "bbox_loss"}]
    assert wrapped == ["assigner", "bce", "bbox_loss"]


def test_assigner_output_is_unpacked_as_five_tensors_with_bboxes_scores_and_mask_in_place():
    tree = _tree(v8DetectionLoss.get_assigned_targets_and_loss)
    assign = next(
        n for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
        and getattr(n.value.func, "attr", None) == "assigner"
    )
    targets = [getattr(e, "id", "_") for e in assign.targets[0].elts]
    assert targets == ["_", "target_bboxes", "target_scores", "fg_mask", "target_gt_idx"]
    assert _params(TaskAlignedAssigner.forward)[:7] == [
        "self", "pd_scores", "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt"
    ]


def test_assigner_returns_labels_boxes_scores_mask_and_gt_index_in_this_order():
    source = inspect.getsource(TaskAlignedAssigner._forward)
    assert "return target_labels, target_bboxes, target_scores, fg_mask.bool(), target_gt_idx" in source
    assert "torch.full_like(pd_scores[..., 0], self.num_classes)" in inspect.getsource(TaskAlignedAssigner.forward)


def test_bce_gets_scores_and_bbox_loss_gets_target_scores_fifth():
    calls = {c.func.attr: c for c in _calls(v8DetectionLoss.get_assigned_targets_and_loss)}
    assert ast.unparse(calls["bce"].args[0]) == "pred_scores"
    assert ast.unparse(calls["bbox_loss"].args[4]) == "target_scores"
    assert _params(BboxLoss.forward)[1:6] == [
        "pred_dist", "pred_bboxes", "anchor_points", "target_bboxes", "target_scores"]
    assert "target_scores[fg_mask].sum(-1" in inspect.getsource(BboxLoss.forward)  # per-anchor box/DFL weight


def test_loss_constructor_and_attributes():
    assert _params(v8DetectionLoss.__init__) == ["self", "model", "tal_topk", "tal_topk2"]
    loss = v8DetectionLoss(h.model())
    for attr in ("assigner", "bce", "bbox_loss", "hyp", "device", "class_weights"):
        assert hasattr(loss, attr), attr
    assert loss.bce.reduction == "none"


def test_end_to_end_loss_builds_both_branches_from_loss_fn():
    assert _params(E2ELoss.__init__) == ["self", "model", "loss_fn"]
    source = inspect.getsource(E2ELoss.__init__)
    assert "self.one2many = loss_fn(model" in source and "self.one2one = loss_fn(model" in source
    assert isinstance(h.model("yolo26n.yaml").init_criterion(), E2ELoss)
    assert type(h.model("yolo11n.yaml").init_criterion()) is v8DetectionLoss
    assert "one2one_cv2" in inspect.getsource(DetectionModel.init_criterion)


def test_trainer_setup_ends_with_resume_training_after_ema_and_class_weights():
    calls = [c.func.attr for c in _calls(BaseTrainer._setup_train)]
    assert calls.index("set_class_weights") < calls.index("resume_training")
    source = inspect.getsource(BaseTrainer._setup_train)
    assert source.index("self.ema = ModelEMA") < source.index("self.resume_training(ckpt)")
    assert "model.init_criterion()" in inspect.getsource(BaseTrainer.resume_training)


def test_checkpoints_strip_the_criterion_and_record_args():
    source = inspect.getsource(BaseTrainer.save_model)
    assert "ema.criterion = None" in source and '"train_args": vars(self.args)' in source


def test_trainer_hooks_that_we_override_keep_their_signatures():
    assert _params(BaseTrainer.save_metrics) == ["self", "metrics"]
    assert _params(BaseTrainer.resume_training) == ["self", "ckpt"]
    assert _params(BaseTrainer.__init__) == ["self", "cfg", "overrides", "_callbacks"]
    assert "self.args = get_cfg(cfg, overrides)" in inspect.getsource(BaseTrainer.__init__)


def test_validator_reports_per_size_map_from_its_own_coco_evaluation():
    assert "mAP_{x}(B)" in inspect.getsource(DetectionValidator.get_stats)
    assert "self.eval_json(stats)" in inspect.getsource(DetectionValidator.get_stats)
    assert _params(DetectionValidator.eval_json) == ["self", "stats"]
    assert 'f"AP_{x}"' in inspect.getsource(DetectionValidator.coco_evaluate)


def test_ddp_workers_rebuild_the_trainer_from_its_class_and_vars_of_args():
    source = inspect.getsource(dist.generate_ddp_file)
    assert '"trainer": type(trainer)' in source and '"args": vars(trainer.args)' in source
    assert 'state["trainer"](cfg=cfg, overrides=state["args"]' in source


# Segment, pose and OBB: each task loss reaches the assigner, BCE and box loss that we wrap.


@pytest.mark.parametrize("upstream", list(SIZE_ADAPTIVE_LOSSES), ids=lambda c: c.__name__)
def test_every_task_loss_takes_model_and_assignment_topk(upstream):
    assert _params(upstream.__init__)[:4] == ["self", "model", "tal_topk", "tal_topk2"]
    assert issubclass(upstream, v8DetectionLoss)


@pytest.mark.parametrize("upstream", [v8SegmentationLoss, v8PoseLoss, PoseLoss26], ids=lambda c: c.__name__)
def test_segment_and_pose_losses_compute_their_box_part_through_the_detection_loss(upstream):
    assert "get_assigned_targets_and_loss" in [c.func.attr for c in _calls(upstream.loss)]


def test_yolo26_segment_loss_assigns_through_the_detection_loss_with_mask_extras():
    source = inspect.getsource(SegmentLoss26.get_assigned_targets_and_loss)
    assert "super().get_assigned_targets_and_loss(" in source and "gt_masks=gt_masks" in source


def test_pose26_assigner_takes_the_stock_arguments_first_then_strides():
    assert _params(PoseTaskAlignedAssigner.forward)[:8] == [
        "self", "pd_scores", "pd_bboxes", "anc_points", "gt_labels", "gt_bboxes", "mask_gt", "anc_strides"]


def test_obb_loss_calls_assigner_bce_bbox_loss_and_angle_loss_with_stock_weights():
    names = [c.func.attr for c in _calls(v8OBBLoss.loss)]
    wrapped = [n for n in names if n in {"assigner", "bce", "bbox_loss", "calculate_angle_loss"}]
    assert wrapped == ["assigner", "bce", "bbox_loss", "calculate_angle_loss"]
    calls = {c.func.attr: c for c in _calls(v8OBBLoss.loss)}
    assert [ast.unparse(a) for a in calls["assigner"].args[4:6]] == ["gt_bboxes", "mask_gt"]
    assert ast.unparse(calls["bbox_loss"].args[4]) == "target_scores"
    assert [ast.unparse(a) for a in calls["calculate_angle_loss"].args[2:4]] == ["fg_mask", "weight"]
    source = inspect.getsource(v8OBBLoss.loss)
    assert "_, target_bboxes, target_scores, fg_mask, _ = self.assigner(" in source
    assert "weight = target_scores[fg_mask].sum(-1)" in source
    assert _params(v8OBBLoss.calculate_angle_loss) == [
        "self", "pred_bboxes", "target_bboxes", "fg_mask", "weight", "target_scores_sum", "lambda_val"]
    assert _params(RotatedBboxLoss.forward)[1:6] == _params(BboxLoss.forward)[1:6]


@pytest.mark.parametrize("model_cls, cfg, expected", [
    (SegmentationModel, "yolo11n-seg.yaml", v8SegmentationLoss), (SegmentationModel, "yolo26n-seg.yaml", SegmentLoss26),
    (PoseModel, "yolo11n-pose.yaml", v8PoseLoss), (PoseModel, "yolo26n-pose.yaml", PoseLoss26),
    (OBBModel, "yolo11n-obb.yaml", v8OBBLoss), (OBBModel, "yolo26n-obb.yaml", v8OBBLoss),
], ids=lambda x: getattr(x, "__name__", x))
def test_task_models_pick_the_loss_classes_we_have_counterparts_for(model_cls, cfg, expected):
    criterion = h.model(cfg, nc=4).init_criterion()
    loss = criterion.one2many if isinstance(criterion, E2ELoss) else criterion
    assert type(loss) is expected and expected in SIZE_ADAPTIVE_LOSSES


@pytest.mark.parametrize("task, upstream, validator", [
    ("detect", DetectionTrainer, "DetectionValidator("), ("segment", SegmentationTrainer, "SegmentationValidator("),
    ("pose", PoseTrainer, "PoseValidator("), ("obb", OBBTrainer, "OBBValidator("),
])
def test_task_trainers_build_their_validator_from_args_and_ours_extend_them(task, upstream, validator):
    source = inspect.getsource(upstream.get_validator)
    assert validator in source and "args=copy(self.args)" in source
    assert issubclass(TRAINERS[task], upstream) and TRAINERS[task].task == task
