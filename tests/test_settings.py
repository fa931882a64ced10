"""The size_* settings: parsing, defaults, and every bad value refused with a message naming the setting."""

from pathlib import Path

import pytest
import yaml

from size_adaptive.settings import DEFAULTS, SizeSettings, split_size_keys

REPO = Path(__file__).resolve().parents[1]

BAD = [
    # (setting, value, text the message must contain)
    ("size_weights", "abc", "expected 3 positive finite weights"),
    ("size_weights", "2,1", "expected 3"),
    ("size_weights", "2,1.5,1,1", "expected 3"),
    ("size_weights", [2, 1.5, 1, 1], "expected 3"),
    ("size_weights", "2,0,1", "not a positive finite number"),
    ("size_weights", "2,-1,1", "not a positive finite number"),
    ("size_weights", "nan,1.5,1", "not a positive finite number"),
    ("size_weights", "2,inf,1", "not a positive finite number"),
    ("size_weights", "2,x,1", "is not a number"),
    ("size_thresholds", "96,32", "strictly increasing"),
    ("size_thresholds", "32,32", "strictly increasing"),
    ("size_thresholds", "0,96", "not a positive finite number"),
    ("size_thresholds", "-5,96", "not a positive finite number"),
    ("size_thresholds", "32", "expected 2"),
    ("size_thresholds", 32, "expected 2"),
    ("size_thresholds", "32,64,96", "expected 2"),
    ("size_space", "pixels", "expected one of ['original', 'input']"),
    ("size_norm", "maybe", "expected True or False"),
    ("size_norm", 2, "expected True or False"),
    ("size_terms", "box,iou", "'iou' is not a term"),
    ("size_terms", "", "non-empty list of distinct terms"),
    ("size_terms", [], "non-empty list of distinct terms"),
    ("size_terms", "box,box", "a term is repeated"),
    ("size_terms", 3, "expected a comma-separated, non-empty list"),
    ("size_nwd_k", 0, "expected a positive finite number"),
    ("size_nwd_k", "-1", "expected a positive finite number"),
    ("size_nwd_k", "nan", "expected a positive finite number"),
    ("size_nwd_k", "inf", "expected a positive finite number"),
    ("size_nwd_k", "abc", "expected a positive finite number"),
    ("size_nwd_k", 2, "expected only with size_nwd_c=relative"),  # with size_nwd_c=auto it would be unused
    ("size_nwd_k", "0.5", "with size_nwd_c='auto'"),
    ("size_nwd_c", "relativ", "'auto', 'relative' or a positive number"),
    ("size_assign", "nwd-small", "expected one of ['stock', 'fixed', 'nwd', 'nwd_small', 'simd']"),
    ("size_simd_mn", "6,0", "not a positive finite number"),
    ("size_bins", "visdrone", "expected one of ['coco', 'aitod']"),
    ("size_bins", 2, "expected one of ['coco', 'aitod']"),
    ("size_weigths", "2,1.5,1", "Did you mean 'size_weights'?"),
    ("size_treshold", "32,96", "Did you mean 'size_thresholds'?"),
]


@pytest.mark.parametrize("key, value, message", BAD)
def test_bad_setting_is_refused_naming_the_setting_and_the_value(key, value, message):
    with pytest.raises(ValueError) as e:
        SizeSettings.from_dict({key: value})
    assert str(e.value).startswith(f"{key}:") or f"'{key}'" in str(e.value)
    assert message in str(e.value)
    if not key.startswith(("size_weigths", "size_treshold")):
        assert repr(value) in str(e.value)


def test_size_nwd_k_is_taken_with_relative_c_and_its_default_without():
    assert SizeSettings.from_dict({"size_nwd_c": "relative", "size_nwd_k": "2"}).nwd_k == 2.0
    assert SizeSettings.from_dict({"size_nwd_c": 12, "size_nwd_k": 1}).nwd_input_c == 12.0


@pytest.mark.parametrize(
    "values, weights, thresholds",
    [
        ({}, (2.0, 1.5, 1.0), (32.0, 96.0)),
        ({"size_weights": "3,2,1"}, (3.0, 2.0, 1.0), (32.0, 96.0)),
        ({"size_weights": (3, 2, 1), "size_thresholds": [16, 48]}, (3.0, 2.0, 1.0), (16.0, 48.0)),
        ({"size_weights": "[2.5, 1.25, 1]", "size_thresholds": "(20,60)"}, (2.5, 1.25, 1.0), (20.0, 60.0)),
    ],
)
def test_good_values_parse_to_floats(values, weights, thresholds):
    s = SizeSettings.from_dict(values)
    assert s.weights == weights and s.thresholds == thresholds


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), ("False", False), (0, False), (1, True)])
def test_size_norm_accepts_booleans_in_yolo_spellings(value, expected):
    assert SizeSettings.from_dict({"size_norm": value}).norm is expected


@pytest.mark.parametrize(
    "value, expected",
    [("box,dfl", ("box", "dfl")), ("dfl,CLS", ("cls", "dfl")), (["box"], ("box",)),
     ("[cls, box, dfl]", ("cls", "box", "dfl"))],
)
def test_size_terms_accept_command_line_and_list_spellings_in_canonical_order(value, expected):
    assert SizeSettings.from_dict({"size_terms": value}).terms == expected


def test_defaults_are_the_cards_rule():
    s = SizeSettings.from_dict({})
    assert (s.weights, s.thresholds, s.space, s.norm, s.terms) == ((2.0, 1.5, 1.0), (32.0, 96.0), "original", False,
                                                                 ("cls", "box", "dfl"))


def test_input_space_resolves_thresholds_at_once_and_original_space_waits_for_the_trainer():
    assert SizeSettings.from_dict({"size_space": "input", "size_thresholds": "10,30"}).input_thresholds == (10.0, 30.0)
    assert SizeSettings.from_dict({}).input_thresholds is None


def test_settings_round_trip_through_args():
    s = SizeSettings.from_dict({"size_weights": "3,2,1", "size_norm": True, "size_terms": "box",
                                "size_input_thresholds": [10.5, 31.5]})
    args = s.as_args()
    assert all(not isinstance(v, tuple) for v in args.values())  # YAML-safe
    assert SizeSettings.from_args(args) == s


def test_size_bins_default_to_coco_and_read_aitod_in_any_case():
    assert SizeSettings.from_dict({}).bins == "coco" and "size bins" not in SizeSettings.from_dict({}).describe()
    s = SizeSettings.from_dict({"size_bins": " AITOD "})
    assert s.bins == "aitod" and s.as_args()["size_bins"] == "aitod" and s.describe().endswith("; size bins aitod")


def test_split_size_keys_separates_our_keys():
    size, rest = split_size_keys({"epochs": 3, "size_weights": "2,1.5,1", "imgsz": 64})
    assert size == {"size_weights": "2,1.5,1"} and rest == {"epochs": 3, "imgsz": 64}


def test_default_settings_yaml_matches_the_code_defaults():
    cfg = yaml.safe_load((REPO / "cfg" / "size_adaptive.yaml").read_text())
    assert {k: cfg[k] for k in DEFAULTS if k in cfg} == {k: v for k, v in DEFAULTS.items() if k in cfg}
    assert SizeSettings.from_dict(cfg) == SizeSettings.from_dict({})
