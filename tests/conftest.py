"""Test setup: Ultralytics' settings and our demo cache in temporary folders, nothing fetched from the network.

The environment is set before Ultralytics is imported (it reads YOLO_CONFIG_DIR at import) and is inherited by the
CLI subprocesses of the end-to-end tests.
"""

import os
import sys
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="yolo-sa-tests-"))
os.environ["YOLO_CONFIG_DIR"] = str(_TMP / "ultralytics-config")
os.environ["YOLO_SA_CACHE_DIR"] = str(_TMP / "cache")
os.environ["YOLO_OFFLINE"] = "1"  # Ultralytics' own switch: no online checks, no downloads attempted
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

TINY_DEMO = (8, 4)  # train, val images of the end-to-end runs


@pytest.fixture(scope="session")
def tiny_demo_yaml():
    """A tiny demo data set (generated once per session)."""
    from size_adaptive.demo import demo_data

    return demo_data(*TINY_DEMO)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
