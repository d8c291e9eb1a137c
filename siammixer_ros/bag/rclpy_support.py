"""Small rclpy helpers shared by the player, the recorder and live evaluation (import only with rclpy)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from siammixer_ros.bag.msgtypes import typestore

REPO_INTERFACES = Path(__file__).resolve().parents[2] / "interfaces"


def require_localhost_discovery() -> None:
    """Refuse to start DDS discovery beyond this machine (team rule; Kilted ignores ROS_LOCALHOST_ONLY)."""
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") is None:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def _definition_text(msgtype: str) -> str | None:
    """The .msg text of ``msgtype`` from an installed interface package, or from this repo's interfaces/."""
    package, kind, name = msgtype.split("/")
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(package)) / kind / f"{name}.{kind}")
    except Exception:  # package not in the ament index
        pass
    candidates += list(REPO_INTERFACES.glob(f"**/{package}/{kind}/{name}.{kind}"))
    for path in candidates:
        if path.is_file():
            return path.read_text()
    return None


def ensure_registered(msgtype: str) -> None:
    """Register ``msgtype`` (and the types it uses) in the rosbags typestore, from its .msg text."""
    from rosbags.typesys import get_types_from_msg

    store = typestore()
    if msgtype in store.fielddefs:
        return
    text = _definition_text(msgtype)
    if text is None:
        raise LookupError(f"no message definition found for {msgtype}: cannot write it to a bag")
    types = get_types_from_msg(text, msgtype)
    for _, fields in types.values():
        for _, spec in fields:
            for name in _referenced(spec):
                if name != msgtype:
                    ensure_registered(name)
    store.register(types)


def _referenced(spec: Any) -> list[str]:
    """Message type names a rosbags field spec refers to (nested through arrays/sequences)."""
    kind, detail = spec
    if kind.name == "NAME":
        return [detail]
    if kind.name in ("ARRAY", "SEQUENCE"):
        return _referenced(detail[0])
    return []

def qos_from_bag(profiles: list[Any], default_depth: int = 10) -> QoSProfile:
    """An rclpy QoS from a bag connection's offered QoS (rosbags Qos); reliable keep-last 10 without one."""
    if not profiles:
        return QoSProfile(depth=default_depth, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    offered = profiles[0]
    reliability = (ReliabilityPolicy.BEST_EFFORT if offered.reliability.name == "BEST_EFFORT"
                   else ReliabilityPolicy.RELIABLE)
    durability = (DurabilityPolicy.TRANSIENT_LOCAL if offered.durability.name == "TRANSIENT_LOCAL"
                  else DurabilityPolicy.VOLATILE)
    depth = offered.depth if offered.history.name == "KEEP_LAST" and offered.depth > 0 else default_depth
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=durability)


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return condition()


def spin_in_background(node: Any, executor: Any, name: str | None = None) -> threading.Thread:
    """Spin ``executor`` (with ``node`` added) in a daemon thread; stop it with :func:`shut_down`."""
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True, name=name)
    spinner.start()
    return spinner


def shut_down(node: Any, executor: Any, spinner: threading.Thread, join_timeout: float = 2.0) -> None:
    """Executor, its thread, the node, then rclpy: in this order the process exits without aborting."""
    import rclpy

    executor.shutdown()
    spinner.join(timeout=join_timeout)
    node.destroy_node()
    rclpy.try_shutdown()
