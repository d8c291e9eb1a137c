"""The scripts' --distro option (scripts/ros_env.sh, sourced by setup.sh, test.sh and demo.sh): which venv and which
environment each distribution gets. Runs bash only; nothing is installed."""

from __future__ import annotations

import subprocess

import pytest
from ros_helpers import REPO_ROOT

ROS_ENV = REPO_ROOT / "scripts" / "ros_env.sh"


def bash(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -euo pipefail; source {ROS_ENV}; {script}", "test", *args],
                          capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("args,distro,others", [
    ([], "kilted", []),
    (["-x", "test/a.py"], "kilted", ["-x", "test/a.py"]),
    (["--distro", "jazzy", "-k", "node"], "jazzy", ["-k", "node"]),
    (["-k", "node", "--distro=jazzy"], "jazzy", ["-k", "node"]),
    (["--distro", "kilted"], "kilted", []),
])
def test_the_distro_option_is_taken_out_of_the_other_arguments(args: list[str], distro: str,
                                                                others: list[str]) -> None:
    result = bash('take_distro_option "$@"; echo "$DISTRO"; for a in ${OTHER_ARGS[@]+"${OTHER_ARGS[@]}"}; do '
                  'echo "$a"; done', *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [distro, *others]


@pytest.mark.parametrize("args", [["--distro", "humble"], ["--distro"], ["--distro="]])
def test_an_unknown_distro_is_refused(args: list[str]) -> None:
    result = bash('take_distro_option "$@"', *args)
    assert result.returncode == 2 and "unknown --distro" in result.stderr and "kilted jazzy" in result.stderr


def test_each_distro_has_its_own_venv_unless_one_is_named() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = bash("distro_venv /repo kilted; distro_venv /repo jazzy", env=env)
    assert result.stdout.splitlines() == ["/repo/.venv", "/repo/.venv-jazzy"]
    named = bash("distro_venv /repo jazzy", env=dict(env, SIAMMIXER_VENV="/elsewhere"))
    assert named.stdout.strip() == "/elsewhere"


def test_the_clean_environment_names_the_profile_for_fast_dds_2_and_3() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/opt/ros/jazzy/lib", "ROS_DISTRO": "jazzy"}
    result = bash("clean_ros_environment /repo; env", env=env)
    variables = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert variables["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert variables["FASTDDS_DEFAULT_PROFILES_FILE"] == "/repo/config/fastdds_localhost.xml"
    assert variables["FASTRTPS_DEFAULT_PROFILES_FILE"] == "/repo/config/fastdds_localhost.xml"
    assert "PYTHONPATH" not in variables and "ROS_DISTRO" not in variables


@pytest.mark.parametrize("script", ["setup.sh", "test.sh", "demo.sh"])
def test_every_script_refuses_an_unknown_distro_before_doing_anything(script: str) -> None:
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), "--distro", "humble"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and f"{script}: unknown --distro 'humble'" in result.stderr
