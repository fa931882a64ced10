"""Every bad size setting is refused through each door (command line, Python API, cfg= yaml) before a run folder
is created, and an existing run folder is left as it was."""

from __future__ import annotations

import pytest
import yaml

from size_adaptive import YOLO
from size_adaptive.cli import main
from test_settings import BAD


def _cli_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


@pytest.fixture
def project(tmp_path):
    """A project folder holding one finished run, whose files must survive every refusal unchanged."""
    run = tmp_path / "runs" / "existing"
    (run / "weights").mkdir(parents=True)
    (run / "results.csv").write_text("epoch,metrics/mAP50(B)\n1,0.5\n")
    (run / "weights" / "last.pt").write_bytes(b"checkpoint")
    return tmp_path / "runs"


def _snapshot(folder):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("door", ["cli", "python", "cfg_yaml"])
@pytest.mark.parametrize("key, value, message", BAD)
def test_refused_before_anything_is_written(project, tiny_demo_yaml, capsys, door, key, value, message):
    before = _snapshot(project)
    common = {"model": "yolo11n.yaml", "data": str(tiny_demo_yaml), "project": str(project), "name": "existing",
              "exist_ok": True, "epochs": 1, "imgsz": 64}
    if door == "python":
        with pytest.raises(ValueError) as e:
            YOLO("yolo11n.yaml").train(**{**common, key: value})
        text = str(e.value)
    else:
        if door == "cli":
            extra = [f"{key}={_cli_value(value)}"]
        else:
            cfg = project.parent / "cfg.yaml"
            cfg.write_text(yaml.safe_dump({key: value}))
            extra = [f"cfg={cfg}"]
        assert main(["train", *(f"{k}={v}" for k, v in common.items()), *extra]) == 2
        text = capsys.readouterr().err
    assert key in text and message in text
    assert _snapshot(project) == before and [p.name for p in project.iterdir()] == ["existing"]
