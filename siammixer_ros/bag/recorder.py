"""Record ROS 2 topics into a new rosbag2 bag with rclpy + rosbags (``ros2 bag record`` without ROS).

Messages are stored as received (serialised bytes, no re-encoding); the bag time of each message is its
receive time on the system clock, as ``ros2 bag record`` does, so receive time minus ``header.stamp``
is the latency. Each subscription copies the reliability and durability of the topic's publishers
(a reliable subscription would never match a best-effort publisher), with a deep queue so that nothing
is lost while the disk is busy.

    python -m siammixer_ros.bag.recorder /tmp/out_bag /siammixer_tracker/detection /siammixer_tracker/status

Stop it with SIGINT/SIGTERM; the bag is closed (metadata.yaml written) on the way out.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Writer

from siammixer_ros.bag import convert
from siammixer_ros.bag.make_bag import DEFAULT_QOS, STORAGES
from siammixer_ros.bag.msgtypes import typestore


@dataclass
class Received:
    """One received message: topic, receive wall time (ns), header stamp (ns, None without a header)."""

    topic: str
    receive_ns: int
    stamp_ns: int | None


@dataclass
class RecorderStats:
    counts: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)


class BagRecorder:
    """Subscribes to topics on an rclpy node and writes every message to a new bag."""

    def __init__(self, node: Any, out: str | Path, topics: dict[str, str | None], *, storage: str = "sqlite3",
                 depth: int = 1000, keep_received: bool = True) -> None:
        if storage not in STORAGES:
            raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
        self.node = node
        self.out = Path(out)
        self.requested = dict(topics)
        self.depth = depth
        self.keep_received = keep_received
        self.stats = RecorderStats()
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self._subscriptions: dict[str, Any] = {}
        self._closed = False
        # SQLite objects may only be used by the thread that created them: one thread owns the writer and
        # takes its work from a queue, which also keeps disk writes out of the subscription callbacks.
        self._work: queue.Queue = queue.Queue()
        self._writer_error: BaseException | None = None
        opened = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, args=(storage, opened), daemon=True,
                                        name="bag-recorder-writer")
        self._thread.start()
        opened.wait()
        if self._writer_error is not None:
            raise self._writer_error

    def _write_loop(self, storage: str, opened: threading.Event) -> None:
        try:
            writer = Writer(self.out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
            writer.open()
        except BaseException as error:  # reported by __init__
            self._writer_error = error
            opened.set()
            return
        opened.set()
        while True:
            item = self._work.get()
            if item is None:
                break
            kind = item[0]
            try:
                if kind == "add":
                    _, topic, msgtype, done = item
                    self._connections[topic] = writer.add_connection(
                        topic, msgtype, typestore=typestore(), offered_qos_profiles=[DEFAULT_QOS])
                    done.set()
                else:
                    _, topic, receive_ns, raw = item
                    writer.write(self._connections[topic], receive_ns, raw)
            except BaseException as error:  # keep recording the other messages; report at close
                self._writer_error = error
                if kind == "add":
                    item[3].set()
        writer.close()

    # -------------------------------------------------------------------------------------------------
    def _resolve_type(self, topic: str) -> str | None:
        wanted = self.requested.get(topic)
        if wanted:
            return wanted
        for name, types in self.node.get_topic_names_and_types():
            if name == topic and types:
                return types[0]
        return None

    def _subscription_qos(self, topic: str) -> Any:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        infos = self.node.get_publishers_info_by_topic(topic)
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
        transient = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)

    def subscribe_available(self) -> list[str]:
        """Subscribe to every requested topic whose type is known and that has a publisher; returns the rest."""
        from siammixer_ros.bag.rclpy_support import ensure_registered
        from siammixer_ros.ros.messages import message_class

        waiting = []
        for topic in self.requested:
            if topic in self._subscriptions:
                continue
            msgtype = self._resolve_type(topic)
            # Subscribe once a publisher exists, so the subscription can copy its QoS.
            if msgtype is None or not self.node.get_publishers_info_by_topic(topic):
                waiting.append(topic)
                continue
            ensure_registered(msgtype)
            done = threading.Event()
            self._work.put(("add", topic, msgtype, done))
            done.wait()
            if topic not in self._connections:
                raise RuntimeError(f"cannot record {topic} ({msgtype}): {self._writer_error}")
            with self._lock:
                self.stats.counts[topic] = 0
            self._subscriptions[topic] = self.node.create_subscription(
                message_class(msgtype), topic, lambda raw, t=topic: self._on_message(t, raw),
                self._subscription_qos(topic), raw=True)
        return waiting

    def _on_message(self, topic: str, raw: bytes) -> None:
        receive_ns = time.time_ns()
        with self._lock:
            if self._closed:
                return
            self._work.put(("write", topic, receive_ns, raw))
            self.stats.counts[topic] += 1
            if self.keep_received:
                self.stats.received.append(Received(topic, receive_ns, convert.cdr_header_stamp(raw)))

    def close(self) -> RecorderStats:
        """Stop recording and write the bag's metadata (idempotent)."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
            for subscription in self._subscriptions.values():
                self.node.destroy_subscription(subscription)
            self._subscriptions.clear()
        self._work.put(None)
        self._thread.join()
        if self._writer_error is not None:
            raise RuntimeError(f"recording to {self.out} failed: {self._writer_error}") from self._writer_error
        return self.stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.bag.recorder",
                                     description="Record ROS 2 topics into a new rosbag2 bag.")
    parser.add_argument("out", help="output bag folder (must not exist)")
    parser.add_argument("topics", nargs="+", help="topics, optionally typed: /topic or /topic:pkg/msg/Type")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="sqlite3")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGINT/TERM)")
    parser.add_argument("--wait-timeout", type=float, default=3600.0,
                        help="seconds to wait for the topics' publishers to appear")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from siammixer_ros.bag.rclpy_support import require_localhost_discovery, shut_down, spin_in_background

    require_localhost_discovery()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    topics: dict[str, str | None] = {}
    for item in args.topics:
        topic, _, msgtype = item.partition(":")
        topics[topic] = msgtype or None
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("siammixer_bag_recorder")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    spinner = spin_in_background(node, executor)
    recorder = None
    code = 0
    try:
        recorder = BagRecorder(node, args.out, topics, storage=args.storage, keep_received=False)
        deadline = time.monotonic() + args.wait_timeout
        started = time.monotonic()
        while not stop.is_set():
            waiting = recorder.subscribe_available()
            if args.duration is not None and time.monotonic() - started > args.duration:
                break
            if waiting and time.monotonic() > deadline:
                print(f"recorder: no publisher on {', '.join(waiting)}; recording the others", file=sys.stderr)
                deadline = float("inf")
            stop.wait(0.1)
    except Exception as error:  # report, then still close the bag below
        print(f"recorder: error: {error}", file=sys.stderr)
        code = 2
    finally:
        if recorder is not None:
            stats = recorder.close()
            print(f"recorded {sum(stats.counts.values())} messages to {args.out}: "
                  + ", ".join(f"{t}: {n}" for t, n in stats.counts.items()))
        shut_down(node, executor, spinner)
    return code


if __name__ == "__main__":
    sys.exit(main())
