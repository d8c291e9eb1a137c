"""Play a rosbag2 bag into the ROS graph with rclpy, honouring its timestamps (``ros2 bag play`` without ROS).

Messages are published as the recorded serialised bytes (no re-encoding) at wall time
``start + (bag_time - first_bag_time) / rate``. With ``--clock`` the player also publishes
``/clock`` (rosgraph_msgs/Clock) with the bag time, so nodes started with ``use_sim_time:=true`` run on
the bag's clock. Each topic is published with the QoS the bag recorded it with (reliable keep-last 10
for bags written by ``siammixer-make-bag``).

    python -m siammixer_ros.bag.player /tmp/demo_bag --rate 1.0 --clock --wait-for /camera/image_raw

In Python, :class:`BagPlayer` takes an ``after_publish`` hook; time spent in the hook pauses playback (the
schedule and /clock shift by it), which live evaluation uses to set the target through the node's service
before the next frame.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siammixer_ros.bag import convert
from siammixer_ros.bag.reader import BagError, open_reader

CLOCK_TOPIC = "/clock"


@dataclass
class PlaybackStats:
    """What was published: per topic counts, and per image stamp the wall time of publication (ns)."""

    published: dict[str, int] = field(default_factory=dict)
    publish_wall_ns: dict[str, dict[int, int]] = field(default_factory=dict)
    late_ns: list[int] = field(default_factory=list)  # how late each message left vs. its schedule
    paused_s: float = 0.0
    wall_s: float = 0.0


class BagPlayer:
    """Publishes a bag's messages on an rclpy node at the recorded rate (or a multiple of it)."""

    def __init__(self, node: Any, bag: str | Path, *, topics: list[str] | None = None, rate: float = 1.0,
                 publish_clock: bool = False, clock_hz: float = 100.0,
                 after_publish: Callable[[str, int | None], None] | None = None, prefetch: int = 64) -> None:
        from siammixer_ros.bag.rclpy_support import qos_from_bag
        from siammixer_ros.ros.messages import message_class

        if not rate > 0:
            raise ValueError(f"playback rate must be > 0, got {rate}")
        self.node = node
        self.bag = Path(bag)
        self.rate = float(rate)
        self.after_publish = after_publish
        self.prefetch = prefetch
        self.stats = PlaybackStats()
        self._stop = threading.Event()
        reader = open_reader(self.bag)
        try:
            available = {c.topic: c for c in reader.connections}
            self.start_ns, self.end_ns = reader.start_time, reader.end_time
        finally:
            reader.close()
        if topics is None:
            topics = sorted(available)
        missing = [t for t in topics if t not in available]
        if missing:
            raise BagError(f"bag {self.bag} has no topic {', '.join(missing)}; it has {', '.join(sorted(available))}")
        self.topics = list(topics)
        self.publishers: dict[str, Any] = {}
        for topic in self.topics:
            connection = available[topic]
            qos = qos_from_bag(list(getattr(connection.ext, "offered_qos_profiles", []) or []))
            self.publishers[topic] = node.create_publisher(message_class(connection.msgtype), topic, qos)
            self.stats.published[topic] = 0
            self.stats.publish_wall_ns[topic] = {}
        self.clock_publisher = None
        self.clock_period = 1.0 / clock_hz
        if publish_clock:
            from rclpy.qos import QoSProfile
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self.clock_publisher = node.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=10))
        self._paused = threading.Event()
        self._last_raw: dict[str, bytes] = {}

    # -------------------------------------------------------------------------------------------------
    def subscription_count(self, topic: str) -> int:
        return self.publishers[topic].get_subscription_count()

    def stop(self) -> None:
        self._stop.set()

    def republish_last(self, topic: str) -> None:
        """Publish the last message of ``topic`` again (e.g. when a late-matched subscriber missed it)."""
        raw = self._last_raw.get(topic)
        if raw is not None:
            self.publishers[topic].publish(raw)

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_publisher is None:
            return
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = int(bag_ns // convert.NS_PER_S), int(bag_ns % convert.NS_PER_S)
        self.clock_publisher.publish(msg)

    def _clock_loop(self, origin: list[float]) -> None:
        while not self._stop.is_set():
            if not self._paused.is_set():
                bag_ns = self.start_ns + int((time.monotonic() - origin[0]) * self.rate * convert.NS_PER_S)
                self._publish_clock(min(bag_ns, self.end_ns))
            time.sleep(self.clock_period)

    def _read_ahead(self, out: queue.Queue) -> None:
        reader = open_reader(self.bag)
        try:
            connections = [c for c in reader.connections if c.topic in self.publishers]
            for connection, bag_time, raw in reader.messages(connections=connections):
                if self._stop.is_set():
                    break
                out.put((connection.topic, int(bag_time), bytes(raw)))
        except Exception as error:  # reported by play(); a corrupt bag must not hang the player
            out.put(error)
        finally:
            reader.close()
            out.put(None)

    def play(self) -> PlaybackStats:
        """Publish every message once, in bag order, on schedule; returns the statistics."""
        messages: queue.Queue = queue.Queue(maxsize=self.prefetch)
        reader_thread = threading.Thread(target=self._read_ahead, args=(messages,), daemon=True)
        reader_thread.start()
        origin = [time.monotonic()]  # wall time of bag time start_ns; a list so the clock thread sees shifts
        clock_thread = None
        if self.clock_publisher is not None:
            self._publish_clock(self.start_ns)
            clock_thread = threading.Thread(target=self._clock_loop, args=(origin,), daemon=True)
            clock_thread.start()
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                item = messages.get()
                if item is None:
                    break
                if isinstance(item, Exception):
                    raise BagError(f"reading {self.bag} failed during playback: {item}") from item
                topic, bag_time, raw = item
                due = origin[0] + (bag_time - self.start_ns) / convert.NS_PER_S / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    if self._stop.wait(delay):
                        break
                self.stats.late_ns.append(max(0, int((time.monotonic() - due) * convert.NS_PER_S)))
                self.publishers[topic].publish(raw)
                wall_ns = time.time_ns()
                self._last_raw[topic] = raw
                stamp = convert.cdr_header_stamp(raw)
                self.stats.published[topic] += 1
                if stamp is not None:
                    self.stats.publish_wall_ns[topic][stamp] = wall_ns
                if self.after_publish is not None:
                    hook_start = time.monotonic()
                    self._paused.set()
                    try:
                        self.after_publish(topic, stamp)
                    finally:
                        self._paused.clear()
                        spent = time.monotonic() - hook_start
                        if spent > 0.001:
                            origin[0] += spent
                            self.stats.paused_s += spent
        finally:
            self._stop.set()
            reader_thread.join(timeout=5.0)
            if clock_thread is not None:
                clock_thread.join(timeout=1.0)
        self.stats.wall_s = time.monotonic() - started
        return self.stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m siammixer_ros.bag.player",
                                     description="Play a rosbag2 bag into ROS 2 at its recorded rate.")
    parser.add_argument("bag")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed multiple (default 1.0)")
    parser.add_argument("--topics", nargs="+", help="topics to play (default: all)")
    parser.add_argument("--clock", nargs="?", type=float, const=100.0, default=None, metavar="HZ",
                        help="publish /clock with the bag time (default 100 Hz) for use_sim_time nodes")
    parser.add_argument("--wait-for", nargs="*", default=[], metavar="TOPIC",
                        help="wait until each of these topics has a subscriber before playing")
    parser.add_argument("--wait-timeout", type=float, default=30.0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep before playing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from siammixer_ros.bag.rclpy_support import require_localhost_discovery, shut_down, spin_in_background, wait_until

    require_localhost_discovery()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=[])
    node = rclpy.create_node("siammixer_bag_player")
    executor = SingleThreadedExecutor()
    spinner = spin_in_background(node, executor)
    code = 0
    try:
        player = BagPlayer(node, args.bag, topics=args.topics, rate=args.rate, publish_clock=args.clock is not None,
                           clock_hz=args.clock or 100.0)
        for topic in args.wait_for:
            if topic not in player.publishers:
                raise BagError(f"--wait-for {topic}: not a played topic")
            if not wait_until(lambda t=topic: player.subscription_count(t) > 0, args.wait_timeout):
                raise BagError(f"no subscriber on {topic} after {args.wait_timeout:g} s")
        time.sleep(args.delay)
        stats = player.play()
        late = sorted(stats.late_ns)
        p95 = late[int(0.95 * (len(late) - 1))] / 1e6 if late else 0.0
        print(f"played {sum(stats.published.values())} messages in {stats.wall_s:.2f} s "
              f"({', '.join(f'{t}: {n}' for t, n in stats.published.items())}); 95% left within {p95:.1f} ms "
              "of schedule")
    except (BagError, ImportError, ValueError) as error:
        print(f"player: error: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    finally:
        shut_down(node, executor, spinner)
    return code


if __name__ == "__main__":
    sys.exit(main())
