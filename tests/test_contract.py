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
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import dist
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss
from ultralytics.utils.tal import TaskAlignedAssigner

import helpers as h
from size_adaptive._compat import TESTED, check_ultralytics_version


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


def test_bce_gets_scores_and_bbox_loss_gets_target_scores_fifth():
    calls = {c.func.attr: c for c in _calls(v8DetectionLoss.get_assigned_targets_and_loss)}
    assert ast.unparse(calls["bce"].args[0]) == "pred_scores"
    assert ast.unparse(calls["bbox_loss"].args[4]) == "target_scores"
    assert _params(BboxLoss.forward)[1:6] == ["pred_dist", "pred_bboxes", "anchor_points", "target_bboxes", "target_scores"]
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
