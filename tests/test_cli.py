"""yolo-sa argument handling: help, usage errors before anything starts, and no leak into Ultralytics."""

from __future__ import annotations

import sys

import pytest
import ultralytics
from ultralytics.utils import DEFAULT_CFG_DICT

from size_adaptive.cli import main
from size_adaptive.settings import KEYS


def test_help_lists_our_keys_and_the_stock_help(capsys):
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert all(k in out for k in ("size_weights", "size_thresholds", "size_space", "size_norm"))
    assert "yolo TASK MODE ARGS" in out
    from size_adaptive.settings import SETTINGS

    for key, spec in SETTINGS.items():  # each user key with its declared default and the start of its help
        assert (f"{key}={spec.typed}" in out and spec.help[:40] in " ".join(out.split())) != spec.resolved, key


def _refused(capsys, tmp_path, *args):
    code = main(["train", "model=yolo11n.yaml", f"project={tmp_path / 'runs'}", "epochs=1", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("yolo-sa: error:")
    assert not (tmp_path / "runs").exists()
    return err


def test_bad_size_value_is_a_usage_error_naming_setting_expected_and_given(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "size_weights=2,1")
    assert "size_weights: expected 3 positive finite weights" in err and "got '2,1'" in err


def test_unknown_size_key_gets_a_close_match(capsys, tmp_path):
    assert "Did you mean 'size_norm'?" in _refused(capsys, tmp_path, "size_nrom=True")


def test_unknown_stock_key_is_refused_the_way_yolo_refuses_it(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "epoch=3")
    assert "'epoch' is not a valid YOLO argument" in err and "epochs" in err


def test_misspelt_size_key_gets_ultralytics_suggestion_too(capsys, tmp_path):
    assert "size_weights" in _refused(capsys, tmp_path, "size_weights2=2,1.5,1")


def test_bad_size_value_in_a_cfg_yaml_is_refused(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("size_space: pixels\n")
    assert "size_space: expected one of ['original', 'input']" in _refused(capsys, tmp_path, f"cfg={cfg}")


def test_cli_leaves_ultralytics_as_it_found_it(capsys, tmp_path):
    yolo, keys, argv = ultralytics.YOLO, set(DEFAULT_CFG_DICT), sys.argv[:]
    _refused(capsys, tmp_path, "epoch=3")
    assert ultralytics.YOLO is yolo and set(DEFAULT_CFG_DICT) == keys and not keys & set(KEYS)
    assert sys.argv == argv


def test_help_lists_size_terms_and_the_new_meaning_of_size_norm(capsys):
    main(["help"])
    out = capsys.readouterr().out
    assert "size_terms=cls,box,dfl" in out and "background anchors and normalisers stay stock" in out


def test_a_model_without_boxes_is_refused_naming_its_task(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "model=yolo11n-cls.yaml", "size_weights=3,2,1")
    assert "task: the size-adaptive loss trains detect, segment, pose, obb models" in err
    assert "got a classify model (yolo11n-cls.yaml)" in err and "is not a valid YOLO argument" not in err


def test_demo_data_of_another_task_is_a_usage_error(capsys, tmp_path):
    err = _refused(capsys, tmp_path, "model=yolo11n-seg.yaml", "data=demo")
    assert "data: expected the demo data of a segment model, data=demo-seg; got data=demo" in err


def test_train_without_data_uses_the_demo_data_of_the_models_task():
    from size_adaptive.cli import _with_train_defaults

    for model, keyword in (("yolo11n.yaml", "demo"), ("yolo11n-seg.yaml", "demo-seg"),
                           ("yolo26n-pose.yaml", "demo-pose"), ("yolo11n-obb.yaml", "demo-obb")):
        assert _with_train_defaults(["train", f"model={model}"])[-1] == f"data={keyword}"
    assert not any(a.startswith("data=") for a in _with_train_defaults(["train", "model=yolo11n-cls.yaml"]))


def _one_line(err: str) -> str:
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("arg, fragments", [
    ("model=no_such_model.yaml", ["model: expected an existing model yaml or .pt file", "got 'no_such_model.yaml'"]),
    ("model=runs/none/weights/best.pt", ["model: expected", "got 'runs/none/weights/best.pt' (not found)"]),
    ("model=yolo13n-p2.yaml", ["model: expected", "this package ships (yolo11n-p2.yaml", "got 'yolo13n-p2.yaml'"]),
    ("data=no_such_data.yaml", ["data: expected an existing dataset yaml", "got 'no_such_data.yaml' (not found)"]),
    ("epochs=0", ["epochs: expected a value that Ultralytics accepts for 'epochs'; got epochs=0", ">= 1"]),
    ("lr0=fast", ["lr0: expected a value that Ultralytics accepts", "got lr0='fast'", "float"]),
])
def test_missing_files_and_bad_stock_values_are_one_usage_error_line_before_any_run_folder(capsys, tmp_path,
                                                                                          tiny_demo_yaml, arg,
                                                                                          fragments):
    err = _one_line(_refused(capsys, tmp_path, f"data={tiny_demo_yaml}", "imgsz=32", arg))
    assert all(f in err for f in fragments), err


def test_bad_stock_value_in_a_cfg_yaml_is_refused_too(capsys, tmp_path, tiny_demo_yaml):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("lr0: fast\n")
    assert "got lr0='fast'" in _one_line(_refused(capsys, tmp_path, f"data={tiny_demo_yaml}", "imgsz=32", f"cfg={cfg}"))


def test_a_genuine_crash_keeps_its_traceback(monkeypatch, tmp_path):
    # Not a usage error: main lets it through (Python prints the traceback), whatever its type.
    import ultralytics.cfg

    for error in (RuntimeError("out of memory"), ValueError("a tensor went wrong deep inside")):
        def crash(error=error):
            raise error

        monkeypatch.setattr(ultralytics.cfg, "entrypoint", crash)
        with pytest.raises(type(error), match=str(error)):
            main(["train", "model=yolo11n.yaml", "data=demo", f"project={tmp_path}"])


def test_p2_names_and_shipped_files_pass_the_checks(tmp_path):
    from size_adaptive.cli import _check_run, _given

    _check_run(_given(["train", "model=yolo12s-p2.yaml", "data=demo", "epochs=3", "lr0=0.02"]), "train")
    _check_run(_given(["train", "model=yolo12s-p2.yaml", "data=coco8", "epochs=3"]), "train")  # a bare shipped name
    _check_run(_given(["val", "model=yolo11n.pt", "data=coco8.yaml"]), "val")  # downloaded by Ultralytics if needed
    from size_adaptive.cli import _with_train_defaults

    assert _with_train_defaults(["train", "model=yolo11n-p2.yaml"])[-1] == "data=demo"
