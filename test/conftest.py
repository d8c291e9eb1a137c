"""Shared pytest set-up: ROS environment for every test process, and fixtures for tests that run ROS nodes.

Fixtures (see ros_helpers.py for the helpers behind them):
  ros_env        dict: the environment child processes that initialise rclpy get (LOCALHOST discovery, Fast DDS
                 profile, this session's ROS_DOMAIN_ID).
  ros_processes  ProcessLauncher: start_python_script / start_python_module / start_python_code start children
                 in their own session, with faulthandler on (a native crash prints the Python stacks into the
                 child's log); all are stopped by pid at teardown (SIGTERM, then SIGKILL).
  ros_node       RosTestNode: an rclpy node in the test process, its executor spinning in a thread; closed at
                 teardown in the safe order. Skips the test when rclpy is not importable.
Mark tests that need rclpy with `ros_helpers.requires_rclpy` (skips with the reason when rclpy is missing).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ros_helpers import ProcessLauncher, RosTestNode, apply_ros_environment, rclpy_import_error, ros_environment

# Before any test (or plugin) can initialise rclpy in this process: discovery must stay on this machine.
apply_ros_environment()


def pytest_report_header(config: pytest.Config) -> str:
    import os

    problem = rclpy_import_error()
    rclpy_state = "rclpy importable" if problem is None else f"rclpy NOT importable ({problem}): ROS tests skip"
    return (
        f"ROS: {rclpy_state}; ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}"
    )


@pytest.fixture
def ros_env() -> dict[str, str]:
    return ros_environment()


@pytest.fixture
def ros_processes(ros_env: dict[str, str]) -> Iterator[ProcessLauncher]:
    launcher = ProcessLauncher(ros_env)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def ros_node() -> Iterator[RosTestNode]:
    problem = rclpy_import_error()
    if problem is not None:
        pytest.skip(f"rclpy is not importable ({problem}); run with the project venv (scripts/test.sh)")
    node = RosTestNode()
    try:
        yield node
    finally:
        node.close()
