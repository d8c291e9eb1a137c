"""Helpers for tests that run real ROS 2 (rclpy) nodes, in the test process and in child processes.

Use them through the fixtures in conftest.py (``ros_node``, ``ros_processes``, ``ros_env``) or directly:

    from ros_helpers import requires_rclpy, DISCOVERY_TIMEOUT_S

    @requires_rclpy
    def test_something(ros_node, ros_processes):
        peer = ros_processes.start_python_script(HERE / "ros_peer.py", "--namespace", ns)
        peer.wait_for_output("READY", timeout=DISCOVERY_TIMEOUT_S)
        publisher = ros_node.node.create_publisher(Image, f"{ns}/image", 10)
        ros_node.wait_until(lambda: publisher.get_subscription_count() > 0, what="the peer's subscription")

Rules this module implements (see the project brief): every process that initialises rclpy runs with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and the Fast DDS profile config/fastdds_localhost.xml (named in both
FASTDDS_DEFAULT_PROFILES_FILE and FASTRTPS_DEFAULT_PROFILES_FILE); child processes
are started in their own session and always stopped by pid (SIGTERM, then SIGKILL); executors are shut down and
their threads joined before rclpy.shutdown().
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from siammixer_ros.ros.dds_profile import profile_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_localhost.xml"

# Discovery between two fresh processes takes 0.5-1 s with the profile, 3.5 s without it; a loaded CI machine
# can be much slower, so waits are generous. They end as soon as the condition holds.
DISCOVERY_TIMEOUT_S = 20.0
PROCESS_START_TIMEOUT_S = 30.0
TERMINATE_TIMEOUT_S = 10.0


def ros_environment(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """Environment for a process that initialises rclpy: localhost-only discovery + the fast-discovery profile."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.update(profile_environment(FASTDDS_PROFILE))  # Fast DDS 3.x (Kilted) and 2.x (Jazzy) read different names
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def apply_ros_environment() -> None:
    """Set the ROS variables in this process (before rclpy is initialised here), keeping an explicit domain id."""
    os.environ.update(ros_environment({}))
    # A per-session domain keeps concurrent test runs on one machine from discovering each other.
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@functools.cache
def rclpy_import_error() -> str | None:
    """None when rclpy can be imported here, else why not (for skip reasons)."""
    try:
        import rclpy  # noqa: F401
    except Exception as error:  # ImportError, or OSError for missing ROS libraries
        return f"{type(error).__name__}: {error}"
    return None


def rclpy_available() -> bool:
    return rclpy_import_error() is None


requires_rclpy = pytest.mark.skipif(
    not rclpy_available(),
    reason=f"rclpy is not importable ({rclpy_import_error()}); run the tests with the project venv: "
    "scripts/test.sh, or .venv/bin/python -m pytest after scripts/setup.sh",
)


def unique_namespace(prefix: str = "test") -> str:
    """A topic/service namespace no other test (or concurrent test run) uses."""
    return f"/{prefix}_{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll_s: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll_s)


class ChildProcess:
    """A child process in its own session, its stdout+stderr captured in a log file (no pipe to fill up)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], cwd: Path, name: str) -> None:
        self.args = list(args)
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self.popen = subprocess.Popen(
            self.args,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait_for_output(self, pattern: str, timeout: float = PROCESS_START_TIMEOUT_S) -> re.Match[str]:
        """Wait until the output matches the regular expression; fail early (with the output) if the child exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output())
            if match:
                return match
            if self.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with code {self.popen.returncode} before printing {pattern!r}; "
                    f"output:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not print {pattern!r} within {timeout:.0f} s; output:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = TERMINATE_TIMEOUT_S) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; also kill what is left of its process group. Returns the
        exit code (negative: killed by that signal)."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout)
        # Grandchildren share the group (pgid == our child's pid, start_new_session); the group id cannot be reused
        # while any member is alive, so this reaches only what the child started.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.popen.returncode

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        self.log_path.unlink(missing_ok=True)


class ProcessLauncher:
    """Starts Python child processes with the ROS environment; `stop_all` terminates every one of them by pid."""

    def __init__(self, env: Mapping[str, str], cwd: Path = REPO_ROOT) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.processes: list[ChildProcess] = []

    def start(self, args: Sequence[str], name: str | None = None, env: Mapping[str, str] | None = None) -> ChildProcess:
        merged = dict(self.env)
        # A child that crashes in native code (SIGSEGV, SIGABRT) prints every thread's Python stack into its log,
        # which a failing wait shows: one node start-up crash in CI left nothing but its exit code -11.
        merged["PYTHONFAULTHANDLER"] = "1"
        merged.update(env or {})
        process = ChildProcess(args, merged, self.cwd, name or Path(args[0]).name)
        self.processes.append(process)
        return process

    def start_python_script(self, script: str | os.PathLike[str], *args: str, **kwargs: Any) -> ChildProcess:
        return self.start([sys.executable, str(script), *args], name=kwargs.pop("name", Path(script).stem), **kwargs)

    def start_python_module(self, module: str, *args: str, **kwargs: Any) -> ChildProcess:
        return self.start([sys.executable, "-m", module, *args], name=kwargs.pop("name", module), **kwargs)

    def start_python_code(self, code: str, *args: str, **kwargs: Any) -> ChildProcess:
        return self.start([sys.executable, "-c", code, *args], name=kwargs.pop("name", "python-c"), **kwargs)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.cleanup()
        self.processes.clear()


class RosTestNode:
    """An rclpy node in this process with its own context and an executor spinning in a background thread.

    `close()` shuts the executor down, joins the thread, destroys the node, then shuts the context down (in that
    order: rclpy aborts the process at exit otherwise).
    """

    def __init__(self, name: str = "pytest_node") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"{name}_{uuid.uuid4().hex[:6]}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, name=f"{name}-executor", daemon=True)
        self._thread.start()

    def wait_until(self, predicate: Callable[[], Any], timeout: float = DISCOVERY_TIMEOUT_S, what: str = "") -> Any:
        return wait_until(predicate, timeout, what or getattr(predicate, "__name__", "a condition"))

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = DISCOVERY_TIMEOUT_S) -> None:
        self.wait_until(
            lambda: publisher.get_subscription_count() >= count, timeout, f"{count} subscriber(s) on {publisher.topic}"
        )

    def wait_for_publishers(self, subscription: Any, count: int = 1, timeout: float = DISCOVERY_TIMEOUT_S) -> None:
        self.wait_until(
            lambda: subscription.get_publisher_count() >= count,
            timeout,
            f"{count} publisher(s) on {subscription.topic_name}",
        )

    def call_service(self, client: Any, request: Any, timeout: float = DISCOVERY_TIMEOUT_S) -> Any:
        """Wait for the service, call it, return the response (fails the test on timeout)."""
        if not client.wait_for_service(timeout_sec=timeout):
            pytest.fail(f"service {client.srv_name} not available within {timeout:.0f} s")
        future = client.call_async(request)
        self.wait_until(future.done, timeout, f"the response of {client.srv_name}")
        return future.result()

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> list[Any]:
        """Subscribe and return the list that received messages are appended to (from the executor thread)."""
        received: list[Any] = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=TERMINATE_TIMEOUT_S)
        self._thread.join(TERMINATE_TIMEOUT_S)
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)


def run_until_signalled(make_nodes: Callable[[], Sequence[Any]], ready_message: str = "READY") -> int:
    """Main loop for a node in a child process: init rclpy, create the nodes, spin in a thread, print
    `ready_message`, and on SIGTERM/SIGINT shut down cleanly (executor, thread, nodes, rclpy). Returns 0."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    nodes = list(make_nodes())
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    print(ready_message, flush=True)
    while not stop.wait(0.1):
        if not thread.is_alive():
            break
    executor.shutdown(timeout_sec=TERMINATE_TIMEOUT_S)
    thread.join(TERMINATE_TIMEOUT_S)
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown()
    return 0


def ros_parameter_file_problems(data: Any) -> list[str]:
    """Problems that make `data` (a loaded YAML document) an invalid ROS 2 parameter file; empty when valid.

    Format: {node name or /namespace/node or /**: {ros__parameters: {name: value or {nested: value}}}}, possibly
    nested under namespace keys; values are scalars or lists of scalars of one type.
    """
    problems: list[str] = []

    def check_value(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                check_value(f"{path}.{key}", sub)
        elif isinstance(value, list):
            kinds = {type(item) for item in value}
            if any(isinstance(item, (dict, list)) for item in value):
                problems.append(f"{path}: lists may hold only scalars")
            elif len(kinds) > 1 and kinds != {int, float}:
                problems.append(f"{path}: list mixes types {sorted(k.__name__ for k in kinds)}")
        elif value is None:
            problems.append(f"{path}: has no value (null)")
        elif not isinstance(value, (bool, int, float, str)):
            problems.append(f"{path}: unsupported value type {type(value).__name__}")

    def check_node_level(path: str, mapping: Any) -> None:
        if not isinstance(mapping, dict) or not mapping:
            problems.append(f"{path or '<top level>'}: expected a mapping of node names")
            return
        for key, value in mapping.items():
            where = f"{path}/{key}" if path else str(key)
            if key == "ros__parameters":
                if not isinstance(value, dict):
                    problems.append(f"{where}: must be a mapping (use {{}} for none)")
                else:
                    for name, param in value.items():
                        check_value(f"{where}.{name}", param)
            elif isinstance(value, dict):
                check_node_level(where, value)
            else:
                problems.append(f"{where}: expected a node name or namespace with ros__parameters")

    check_node_level("", data)
    return problems
