"""The Fast DDS profile reaches both Fast DDS generations: 3.x (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE, 2.x
(Jazzy) only FASTRTPS_DEFAULT_PROFILES_FILE. With one name missing, 640x480 frames are mostly lost on that distro."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from siammixer_ros.bag.live_eval import node_environment
from siammixer_ros.ros.dds_profile import PROFILE_PATH, PROFILE_VARIABLES, profile_environment, set_profile_defaults

NEW, OLD = PROFILE_VARIABLES  # FASTDDS_... (Fast DDS 3.x), FASTRTPS_... (Fast DDS 2.x)


def test_the_profile_exists_and_both_names_are_set() -> None:
    assert PROFILE_PATH.is_file()
    assert set(PROFILE_VARIABLES) == {"FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"}
    assert profile_environment() == {NEW: str(PROFILE_PATH), OLD: str(PROFILE_PATH)}


@pytest.mark.parametrize("given,expected", [
    ({}, {NEW: str(PROFILE_PATH), OLD: str(PROFILE_PATH)}),
    ({NEW: "/robot/dds.xml"}, {NEW: "/robot/dds.xml", OLD: "/robot/dds.xml"}),
    ({OLD: "/robot/dds.xml"}, {NEW: "/robot/dds.xml", OLD: "/robot/dds.xml"}),
    ({NEW: "/a.xml", OLD: "/b.xml"}, {NEW: "/a.xml", OLD: "/b.xml"}),
    ({NEW: "", OLD: ""}, {NEW: str(PROFILE_PATH), OLD: str(PROFILE_PATH)}),
])
def test_a_users_profile_in_either_name_is_kept_for_both(given: dict[str, str], expected: dict[str, str]) -> None:
    env = dict(given, OTHER="x")
    set_profile_defaults(env)
    assert env == dict(expected, OTHER="x")


def test_without_the_profile_file_nothing_is_set(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    set_profile_defaults(env, tmp_path / "missing.xml")
    assert env == {}


def test_live_evaluation_gives_the_node_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROFILE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = node_environment()
    assert env[NEW] == env[OLD] == str(PROFILE_PATH)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_the_dev_venv_start_up_hook_sets_both_names() -> None:
    # scripts/setup.sh writes siammixer_ros_env.pth into the venv; every interpreter of the venv runs it.
    if not any((Path(d) / "siammixer_ros_env.pth").is_file() for d in site.getsitepackages()):
        pytest.skip("not running in a venv made by scripts/setup.sh")
    code = f"import os, json; print(json.dumps([os.environ.get(k) for k in {PROFILE_VARIABLES!r}]))"
    base = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    for given, expected in (({}, str(PROFILE_PATH)), ({OLD: "/robot/dds.xml"}, "/robot/dds.xml")):
        result = subprocess.run([sys.executable, "-c", code], env=dict(base, **given), capture_output=True,
                                text=True, check=True)
        assert result.stderr == ""  # a failing .pth line only prints an error; it must not
        assert json.loads(result.stdout) == [expected, expected]
