"""TrackerParams: defaults, dict/YAML loading, validation with clear messages."""

import dataclasses

import pytest

from siammixer_ros.core.errors import TrackerParamsError
from siammixer_ros.core.params import TrackerParams


def test_defaults_are_the_siamfc_settings():
    p = TrackerParams()
    assert (p.context_amount, p.scale_num, p.scale_step, p.scale_penalty, p.scale_lr, p.window_influence) == (
        0.5, 3, 1.0375, 0.9745, 0.59, 0.176)
    assert p.scale_estimate == "argmax" and p.response_up == 16


def test_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrackerParams().scale_num = 5


def test_from_dict_and_unknown_keys_are_named():
    assert TrackerParams.from_dict({"scale_num": 5, "window_influence": 0.3}).scale_num == 5
    with pytest.raises(TrackerParamsError, match="scale_nm.*window_inflence|window_inflence.*scale_nm"):
        TrackerParams.from_dict({"scale_nm": 5, "window_inflence": 0.2})


@pytest.mark.parametrize("changes,name", [
    ({"scale_num": 2}, "scale_num"),
    ({"scale_lr": 1.5}, "scale_lr"),
    ({"tracking_score": "high"}, "tracking_score"),
    ({"lost_frames": 2.5}, "lost_frames"),
    ({"response_up": True}, "response_up"),
    ({"window_influence": float("nan")}, "window_influence"),
    ({"lost_score": 0.9}, "lost_score"),
    ({"scale_estimate": "quadratic"}, "scale_estimate.*argmax, parabola"),
])
def test_invalid_values_raise_naming_the_parameter(changes, name):
    with pytest.raises(TrackerParamsError, match=name):
        TrackerParams.from_dict(changes)


def test_integral_floats_become_ints():
    assert isinstance(TrackerParams.from_dict({"scale_num": 5.0}).scale_num, int)


def test_from_yaml_whole_file_and_sub_key(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("scale_num: 1\nresponse_up: 8\n")
    assert TrackerParams.from_yaml(f).scale_num == 1
    g = tmp_path / "n.yaml"
    g.write_text("node:\n  tracker:\n    lost_frames: 7\n")
    assert TrackerParams.from_yaml(g, key="node.tracker").lost_frames == 7
    with pytest.raises(TrackerParamsError, match="no key 'node.missing'"):
        TrackerParams.from_yaml(g, key="node.missing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scale_num: 1\nbogus: 3\n")
    with pytest.raises(TrackerParamsError, match="bad.yaml.*bogus"):
        TrackerParams.from_yaml(bad)
    with pytest.raises(TrackerParamsError, match="not found"):
        TrackerParams.from_yaml(tmp_path / "absent.yaml")


def test_replace_and_to_dict_round_trip():
    p = TrackerParams().replace(scale_num=5)
    assert TrackerParams.from_dict(p.to_dict()) == p
