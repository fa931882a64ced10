"""The per-size mAP line and the quiet COCO evaluation during training."""

from __future__ import annotations

import logging

from size_adaptive.validator import _quiet, describe_per_size


def test_per_size_line_reads_na_for_a_bucket_without_objects():
    line = describe_per_size({"small": 0.0301, "medium": -1.0, "large": 0.25})
    assert line == ("mAP50-95 by object size (COCO areas, original px): small 0.0301  medium n/a (no objects)  "
                    "large 0.2500")


def test_quiet_drops_info_records_and_keeps_warnings(caplog):
    logger = logging.getLogger("size-adaptive-test")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger=logger.name):
        with _quiet(logger):
            logger.info("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000")
            logger.warning("faster-coco-eval unable to run")
        logger.info("after")
    assert [r.getMessage() for r in caplog.records] == ["faster-coco-eval unable to run", "after"]
    assert logger.level == logging.INFO
