"""The node's parameter files, launch file and documentation agree with the parameters the node declares."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from ros_helpers import ros_parameter_file_problems

from siammixer_ros.ros.params import all_param_specs, markdown_table, validate_change

REPO = Path(__file__).resolve().parent.parent
SPECS = {spec.name: spec for spec in all_param_specs()}
PYTHON_TYPES = {"bool": bool, "int": int, "double": float, "string": str, "double[]": list, "string[]": list}


def _flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _node_params(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert ros_parameter_file_problems(data) == []
    return _flatten(data["/**"]["ros__parameters"])


@pytest.mark.parametrize("name", ["tracker.yaml", "tracker_arm.yaml"])
def test_parameter_files_name_only_declared_parameters_with_their_types(name):
    values = _node_params(REPO / "config" / name)
    for key, value in values.items():
        assert key in SPECS, f"{name}: unknown parameter {key}"
        # ROS 2 refuses an integer for a double parameter: the file must say 10.0, not 10.
        assert type(value) is PYTHON_TYPES[SPECS[key].kind], f"{name}: {key} = {value!r} is not {SPECS[key].kind}"
    defaults = {spec.name: spec.default for spec in all_param_specs()}
    assert validate_change(defaults, values) is None


def test_the_default_file_states_the_real_defaults():
    values = _node_params(REPO / "config" / "tracker.yaml")
    for key, value in values.items():
        assert value == SPECS[key].default, f"config/tracker.yaml: {key} = {value!r}, the node's default is " \
                                            f"{SPECS[key].default!r}"
    missing = sorted(set(SPECS) - set(values) - {"model_path", "initial_target"})
    assert missing == [], f"config/tracker.yaml does not list {missing}"


def test_launch_file_uses_console_scripts_and_existing_parameter_files():
    launch = (REPO / "launch" / "tracker.launch.py").read_text()
    ast.parse(launch)
    scripts = re.findall(r"^\s*\"?([\w-]+) = ([\w.]+):main", (REPO / "setup.py").read_text(), re.M)
    executables = set(re.findall(r'executable="([^"]+)"', launch))
    assert executables and executables <= {name for name, _ in scripts}
    for config in re.findall(r'"config", "([^"]+)"', launch):
        assert (REPO / "config" / config).is_file()


def test_docs_parameter_table_is_current():
    docs = (REPO / "docs" / "node.md").read_text()
    assert markdown_table() in docs, "docs/node.md's parameter table is stale: paste params.markdown_table()"
