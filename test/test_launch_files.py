"""Static checks of launch/*.launch.py (the launch packages are not installable here, so the files cannot be run):
every executable of this package they start is a console script in setup.py, every parameter file they name exists,
is installed with the package, and is a valid ROS 2 parameter file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from ros_helpers import REPO_ROOT, requires_rclpy, ros_parameter_file_problems

PACKAGE = "siammixer_ros"
LAUNCH_FILES = sorted((REPO_ROOT / "launch").glob("*.launch.py"))


def console_scripts() -> set[str]:
    """Names of the console scripts declared in setup.py (read statically)."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(item).split("=")[0].strip() for item in value.elts}
    raise AssertionError("setup.py declares no console_scripts")


def module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments (launch files name their package through such constants)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def string_value(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def keyword_string(call: ast.Call, name: str, constants: dict[str, str]) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return string_value(keyword.value, constants)
    return None


def started_nodes(launch_file: Path) -> list[tuple[str | None, str | None]]:
    """(package, executable) of every Node(...) / LifecycleNode(...) in the file (None: not a literal/constant)."""
    tree = ast.parse(launch_file.read_text())
    constants = module_constants(tree)
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("Node", "LifecycleNode"):
                package = keyword_string(node, "package", constants)
                nodes.append((package, keyword_string(node, "executable", constants)))
    return nodes


def parameter_files(launch_file: Path) -> list[str]:
    """Repository-relative paths of the YAML files the launch file names, e.g. join(share, "config", "x.yaml")."""
    tree = ast.parse(launch_file.read_text())
    constants = module_constants(tree)
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            literals = [value for a in node.args if (value := string_value(a, constants)) is not None]
            if literals and literals[-1].endswith((".yaml", ".yml")):
                paths.append("/".join(literals))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" in node.value:
            if node.value.endswith((".yaml", ".yml")):
                paths.append(node.value)
    return sorted(set(paths))


def test_there_is_a_tracker_launch_file() -> None:
    assert (REPO_ROOT / "launch" / "tracker.launch.py") in LAUNCH_FILES


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_defines_generate_launch_description(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_executables_are_console_scripts(launch_file: Path) -> None:
    nodes = started_nodes(launch_file)
    assert nodes, f"{launch_file.name} starts no Node"
    scripts = console_scripts()
    for package, executable in nodes:
        assert package is not None and executable is not None, f"{launch_file.name}: Node without literal names"
        if package == PACKAGE:
            assert executable in scripts, f"{launch_file.name} starts '{executable}', not a console script in setup.py"


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_parameter_files_exist_and_are_valid(launch_file: Path) -> None:
    for relative in parameter_files(launch_file):
        path = REPO_ROOT / relative
        assert path.is_file(), f"{launch_file.name} names {relative}, which does not exist"
        # setup.py installs config/, launch/ and models/ into share/siammixer_ros (where the launch file looks).
        assert relative.split("/")[0] in ("config", "launch", "models"), f"{relative} is not installed to share/"
        data = yaml.safe_load(path.read_text())
        problems = ros_parameter_file_problems(data)
        assert not problems, f"{relative} is not a valid ROS 2 parameter file: {problems}"


def test_tracker_launch_uses_the_tracker_parameters() -> None:
    launch_file = REPO_ROOT / "launch" / "tracker.launch.py"
    assert ("siammixer_ros", "siammixer_tracker") in started_nodes(launch_file)
    assert "config/tracker.yaml" in parameter_files(launch_file)
    # Keyed /**: applies in any namespace and under any node name (a node-name key would not under namespace:=uav1).
    assert list(yaml.safe_load((REPO_ROOT / "config" / "tracker.yaml").read_text())) == ["/**"]


@requires_rclpy
@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_parameter_files_parse_with_rcl(launch_file: Path) -> None:
    """The parser a node uses for --params-file (rcl_yaml_param_parser, via rclpy.init) accepts the files."""
    import rclpy
    from rclpy.context import Context

    for relative in parameter_files(launch_file):
        context = Context()
        try:
            rclpy.init(args=["node", "--ros-args", "--params-file", str(REPO_ROOT / relative)], context=context)
        except Exception as error:
            pytest.fail(f"rcl rejects {relative}: {error}")
        rclpy.shutdown(context=context)


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ({"node": {"ros__parameters": {"a": 1, "b": [1.0, 2.0], "group": {"c": "x"}}}}, True),
        ({"/**": {"ros__parameters": {}}}, True),
        ({"ns": {"node": {"ros__parameters": {"a": True}}}}, True),
        ({"node": {"parameters": {"a": 1}}}, False),  # misspelt key
        ({"node": {"ros__parameters": {"a": None}}}, False),
        ({"node": {"ros__parameters": {"a": [1, "x"]}}}, False),
        ({"node": {"ros__parameters": [1, 2]}}, False),
        (None, False),
    ],
)
def test_parameter_file_validator(document: object, valid: bool) -> None:
    assert (ros_parameter_file_problems(document) == []) is valid
