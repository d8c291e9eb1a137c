"""Live evaluation: replay a bag into the real tracker node at the camera's rate and score what it outputs.

What happens (``siammixer-live-eval BAG --model M --out DIR``):

1. the tracker node starts as its own process (``python -m siammixer_ros.ros.node``), subscribed to the
   bag's image topic (raw or compressed);
2. in this process a recorder subscribes to the node's ``~/detection`` and ``~/status`` and writes them to
   ``DIR/output_bag`` (receive time = bag time, as ``ros2 bag record``);
3. a player publishes the bag's images on schedule (``--rate`` times the recorded rate; ``--clock``
   also publishes /clock and starts the node with ``use_sim_time``); right after the first annotated
   frame it sets the target through the node's real ``~/set_target`` service with that frame's stamp and
   ground-truth box, pausing playback until the service answers (a person selecting a target would
   likewise not be timed);
4. after the last frame, the node is stopped (its peak RSS read first) and the output bag is scored
   against the ground truth with :func:`siammixer_ros.bag.eval_bag.score_outputs` (the toolkit's metrics;
   a frame the node skipped keeps the previous output, see eval_bag).

Reported: success AUC / precision (under real-time constraints), frames published after the init
frame vs. frames the node processed (drops), detections, output rate (fps), end-to-end latency
percentiles = receive wall time of a detection - publish wall time of the frame with its stamp (same
clock, this process), node peak memory. ``--offline`` also runs the same tracker offline on the bag
(every frame, no time limit) for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.bag import reader
from siammixer_ros.bag.eval_bag import LOST_STATE, TRACKER_STATUS, Output, evaluate_bag, score_outputs
from siammixer_ros.bag.make_bag import STORAGES
from siammixer_ros.bag.msgtypes import COMPRESSED_IMAGE, DETECTION_2D
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES
from siammixer_ros.eval.report import json_safe
from siammixer_ros.ros.dds_profile import set_profile_defaults
from siammixer_ros.ros.messages import STATUS_CODES, rclpy_message, stamp_to_ns, time_message
from siammixer_ros.ros.stats import process_memory_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / SHIPPED_MODEL_NAMES["float"]
IDLE_STATE = STATUS_CODES[None]


class LiveEvalError(RuntimeError):
    """Live evaluation cannot run (node does not start, target rejected, bag unusable)."""


@dataclass
class LiveEvalConfig:
    bag: Path
    out_dir: Path
    model: Path = DEFAULT_MODEL
    rate: float = 1.0
    use_sim_time: bool = False
    node_name: str = "siammixer_tracker"
    node_params: dict[str, str] = field(default_factory=dict)
    image_topic: str | None = None
    gt_topic: str = reader.DEFAULT_GT_TOPIC
    storage: str = "sqlite3"
    startup_timeout: float = 60.0
    set_target_timeout: float = 10.0
    tail_timeout: float = 5.0
    offline: bool = False
    overwrite: bool = False
    python: str = sys.executable


def node_environment() -> dict[str, str]:
    """Environment of the node process: discovery on this machine only, the project's Fast DDS profile (for Fast
    DDS 2.x and 3.x alike)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    set_profile_defaults(env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def node_command(config: LiveEvalConfig, image_topic: str, compressed: bool) -> list[str]:
    base_topic = image_topic
    if compressed and image_topic.endswith("/compressed"):
        base_topic = image_topic[: -len("/compressed")]
    params = {"model_path": str(config.model), "image_topic": base_topic,
              "input_type": "compressed" if compressed else "raw", "click_selection": "false",
              "publish_debug_image": "false"}
    if config.use_sim_time:
        params["use_sim_time"] = "true"
    params.update(config.node_params)
    command = [config.python, "-m", "siammixer_ros.ros.node", "--ros-args", "-r", f"__node:={config.node_name}"]
    for key, value in params.items():
        command += ["-p", f"{key}:={value}"]
    return command


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p95": math.nan, "max": math.nan, "mean": math.nan}
    array = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)),
            "max": float(array.max()), "mean": float(array.mean())}


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _NodeProcess:
    """The tracker node as a child process, logging to a file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=node_environment(),
                                        start_new_session=True)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise LiveEvalError(f"the tracker node exited with code {code} during start-up; its log "
                                f"({self.log_path}) ends with:\n{_log_tail(self.log_path)}")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self._log.close()
        return self.process.returncode


def run_live_eval(config: LiveEvalConfig, log: Any = print) -> dict[str, Any]:
    """Run one live evaluation; returns the report dict (also written to out_dir/live_report.json)."""
    from siammixer_ros.bag.rclpy_support import (
        require_localhost_discovery,
        shut_down,
        spin_in_background,
        wait_until,
    )

    require_localhost_discovery()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from siammixer_interfaces.srv import SetTarget

    from siammixer_ros.bag.player import BagPlayer
    from siammixer_ros.bag.recorder import BagRecorder

    bag = Path(config.bag)
    out_dir = Path(config.out_dir)
    if not Path(config.model).is_file():
        raise LiveEvalError(f"model file not found: {config.model} (train/export one, or pass --model PATH)")
    if config.storage not in STORAGES:
        raise LiveEvalError(f"unknown storage {config.storage!r}")
    # What the bag holds: frames, their stamps, the ground truth, the init frame.
    sequence = reader.load_bag_sequence(bag, config.image_topic, config.gt_topic)
    image_topic = sequence.meta["image_topic"]
    compressed = reader.topics(bag)[image_topic][0] == COMPRESSED_IMAGE
    stamps: list[int] = sequence.meta["stamps"]
    init_frame = sequence.first_annotated
    init_stamp = stamps[init_frame]
    init_box = tuple(float(v) for v in sequence.boxes[init_frame])
    label = sequence.meta.get("label") or "target"

    out_dir.mkdir(parents=True, exist_ok=True)
    output_bag = out_dir / "output_bag"
    if output_bag.exists():
        if not config.overwrite:
            raise LiveEvalError(f"{output_bag} exists; remove it or pass --overwrite")
        shutil.rmtree(output_bag)
    detection_topic = f"/{config.node_name}/detection"
    status_topic = f"/{config.node_name}/status"
    service_name = f"/{config.node_name}/set_target"

    rclpy.init(args=[])  # our command line is not a ROS one
    node = rclpy.create_node("siammixer_live_eval")
    # One thread: rclpy's MultiThreadedExecutor busy-loops (3-8 s of CPU per 14 s of playback) and starved the player
    # thread of the GIL for up to 2.8 s, so frames went out late in bursts and the node dropped 12-30 % of them in 4 of
    # 5 demo runs (issue #16). The service call below waits on its future from this thread, not inside a callback.
    executor = SingleThreadedExecutor()
    spinner = spin_in_background(node, executor, name="live-eval-executor")
    tracker = None
    recorder = None
    set_target_result: dict[str, Any] = {}
    memory = (0, 0)
    try:
        command = node_command(config, image_topic, compressed)
        log(f"starting the tracker node: {' '.join(command)}")
        tracker = _NodeProcess(command, out_dir / "node.log")
        player = BagPlayer(node, bag, topics=[image_topic], rate=config.rate, publish_clock=config.use_sim_time)
        recorder = BagRecorder(node, output_bag, {detection_topic: DETECTION_2D, status_topic: TRACKER_STATUS},
                               storage=config.storage)
        client = node.create_client(SetTarget, service_name)

        started = time.monotonic()

        def ready() -> bool:
            tracker.check_alive()
            return (client.service_is_ready() and player.subscription_count(image_topic) > 0
                    and not recorder.subscribe_available())

        if not wait_until(ready, config.startup_timeout, poll=0.1):
            tracker.check_alive()
            raise LiveEvalError(f"the tracker node did not come up within {config.startup_timeout:g} s (service "
                                f"{service_name} ready: {client.service_is_ready()}, subscribers on {image_topic}: "
                                f"{player.subscription_count(image_topic)}); log tail:\n{_log_tail(tracker.log_path)}")
        log(f"node ready after {time.monotonic() - started:.1f} s; playing {len(stamps)} frames at "
            f"{sequence.meta['fps'] * config.rate:g} Hz (rate {config.rate:g}), target set at frame {init_frame}")

        def after_publish(topic: str, stamp: int | None) -> None:
            if topic != image_topic or stamp != init_stamp:
                return
            request = SetTarget.Request()
            request.x, request.y, request.width, request.height = init_box
            request.stamp = time_message(rclpy_message, init_stamp)
            request.label = label
            deadline = time.monotonic() + config.set_target_timeout
            tick = time.monotonic()
            # Call the service once the node has the frame: it publishes a status (IDLE) with the frame's stamp
            # for every frame it takes. A subscriber matched moments ago may have missed the frame (best-effort
            # delivery before discovery settled on its side): then the same frame is sent again.
            republished = 0
            while not any(r.topic == status_topic and r.stamp_ns == init_stamp for r in recorder.stats.received):
                if time.monotonic() > deadline:
                    raise LiveEvalError(f"the node did not take frame {init_frame} within "
                                        f"{config.set_target_timeout:g} s (no status with its stamp)")
                if wait_until(lambda: any(r.topic == status_topic and r.stamp_ns == init_stamp
                                          for r in recorder.stats.received), 0.5, poll=0.005):
                    break
                player.republish_last(image_topic)
                republished += 1
            attempts = 0
            while True:
                attempts += 1
                future = client.call_async(request)
                if not wait_until(future.done, max(0.1, deadline - time.monotonic()), poll=0.005):
                    raise LiveEvalError(f"{service_name} did not answer within {config.set_target_timeout:g} s")
                response = future.result()
                # A subscriber matched moments ago may have missed the frame (best-effort delivery before
                # discovery settled on its side): send the same frame again and retry.
                if response.success or time.monotonic() > deadline or not (
                        "buffered" in response.message or "no image received" in response.message):
                    break
                player.republish_last(image_topic)
                time.sleep(0.05)
            set_target_result.update(success=bool(response.success), message=response.message, attempts=attempts,
                                     frame_resent=republished,
                                     seconds=time.monotonic() - tick, track_id=int(response.track_id))
            if not response.success:
                raise LiveEvalError(f"set_target on frame {init_frame} was rejected: {response.message}")

        player.after_publish = after_publish
        stats = player.play()
        last_stamp = stamps[-1]

        def finished() -> bool:
            return any(r.topic == status_topic and r.stamp_ns == last_stamp for r in recorder.stats.received)

        # Wait for the last frame's output, or until outputs stop coming (the node dropped the last frames).
        deadline = time.monotonic() + config.tail_timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline and not finished():
            count = len(recorder.stats.received)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 1.0:
                break
            time.sleep(0.05)
        memory = process_memory_bytes(tracker.process.pid)
    finally:
        node_exit = tracker.stop() if tracker is not None else None
        recorder_stats = recorder.close() if recorder is not None else None
        shut_down(node, executor, spinner, join_timeout=5.0)

    report = score_live(sequence, output_bag, stats.publish_wall_ns[image_topic], detection_topic, status_topic)
    report.update({
        "bag": str(bag), "output_bag": str(output_bag), "model": str(config.model), "rate": config.rate,
        "camera_fps": sequence.meta["fps"] * config.rate, "use_sim_time": config.use_sim_time,
        "set_target": set_target_result, "paused_for_set_target_s": stats.paused_s, "playback_wall_s": stats.wall_s,
        "schedule_lateness_ms": _percentiles([v / 1e6 for v in stats.late_ns]),
        "node_rss_mib": memory[0] / 2**20, "node_peak_rss_mib": memory[1] / 2**20, "node_exit_code": node_exit,
        "recorded": recorder_stats.counts if recorder_stats else {}, "node_command": command,
    })
    if config.offline:
        from siammixer_ros.eval.trackers import TrackerConfig

        log("running the same tracker offline on the bag for comparison")
        offline = evaluate_bag(bag, out_dir / "offline", config=TrackerConfig(model_path=Path(config.model)))
        scores = next(iter(offline["trackers"]["siammixer"]["per_sequence"].values()))
        report["offline"] = {k: scores[k] for k in ("success_auc", "precision", "success_50", "fps", "median_ms",
                                                    "scored_frames")}
    write_live_report(report, out_dir)
    return report


def score_live(sequence: Any, output_bag: Path, publish_wall_ns: dict[int, int], detection_topic: str,
               status_topic: str) -> dict[str, Any]:
    """Accuracy, drops, rate and latency of a live run from its output bag and the player's publish times."""
    stamps: list[int] = sequence.meta["stamps"]
    init_frame = sequence.first_annotated
    init_stamp = stamps[init_frame]
    detections = reader.read_detections(output_bag, detection_topic) if _has_topic(output_bag, detection_topic) else []
    statuses = _read_statuses(output_bag, status_topic)
    outputs = [Output(d.stamp_ns, d.box, d.receive_ns) for d in detections]
    detected = {d.stamp_ns for d in detections}
    # Frames processed while tracking (after init): a status that is not IDLE; LOST ones carry no box.
    processed = {st[0] for st in statuses if st[0] > init_stamp and st[1] != IDLE_STATE}
    outputs += [Output(st[0], None, st[2]) for st in statuses if st[1] == LOST_STATE and st[0] not in detected]
    scored = score_outputs(stamps, sequence.boxes, outputs, init_frame)
    predicted = scored.pop("predicted")
    after_init = [s for s in stamps[init_frame + 1:] if s in publish_wall_ns]
    latencies = [(d.receive_ns - publish_wall_ns[d.stamp_ns]) / 1e6
                 for d in detections if d.stamp_ns in publish_wall_ns]
    processed_receive = sorted(st[2] for st in statuses if st[0] in processed)
    span_s = (processed_receive[-1] - processed_receive[0]) / 1e9 if len(processed_receive) > 1 else math.nan
    last_status = max(statuses, key=lambda item: item[2], default=None)
    duplicate_detections = len(detections) - len(detected)
    return {
        "sequence": sequence.name, "frames": len(stamps), "init_frame": init_frame,
        "frames_after_init": len(after_init), "processed_frames": len(processed),
        "dropped_frames": len(after_init) - len(processed),
        "drop_rate": (len(after_init) - len(processed)) / len(after_init) if after_init else math.nan,
        "detections": len(detections), "duplicate_detections": duplicate_detections,
        "detections_without_frame": len([d for d in detections if d.stamp_ns not in publish_wall_ns]),
        "lost_frames": len([1 for st in statuses if st[1] == LOST_STATE and st[0] > init_stamp]),
        "output_fps": (len(processed_receive) - 1) / span_s if span_s and span_s > 0 else math.nan,
        "latency_ms": _percentiles(latencies),
        "node_reported": {"frames_processed": last_status[3] if last_status else None,
                          "dropped_frames": last_status[4] if last_status else None,
                          "processing_ms": _percentiles([x[5] for x in statuses if x[0] in processed])},
        "accuracy": {k: v for k, v in scored.items() if not k.endswith("_curve") and k not in (
            "updated_frames", "update_seconds", "fps", "ms_per_frame", "median_ms")},
        "success_curve": scored["success_curve"],
        "predicted": predicted.tolist(),
        "groundtruth": sequence.boxes.tolist(),
        "own_output": [stamp in detected for stamp in stamps],
    }


def _has_topic(path: Path, topic: str) -> bool:
    try:
        return topic in reader.topics(path)
    except reader.BagError:
        return False


def _read_statuses(path: Path, topic: str) -> list[tuple[int, int, int, int, int, float]]:
    """(stamp, state, receive ns, frames_processed, dropped_frames, processing_ms) per TrackerStatus message."""
    if not _has_topic(path, topic):
        return []
    bag = reader.open_reader(path)
    out = []
    try:
        connections = [c for c in bag.connections if c.topic == topic]
        for connection, bag_time, raw in bag.messages(connections=connections):
            msg = bag.deserialize(raw, connection.msgtype)
            out.append((stamp_to_ns(msg.header.stamp), int(msg.state), int(bag_time),
                        int(msg.frames_processed), int(msg.dropped_frames), float(msg.processing_ms)))
    finally:
        bag.close()
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    acc = report["accuracy"]
    lat = report["latency_ms"]
    lines = [
        f"sequence {report['sequence']}: {report['frames']} frames at {report['camera_fps']:g} Hz, target set at "
        f"frame {report['init_frame']}",
        f"live   success AUC {acc['success_auc']:.3f}  precision@20 {acc['precision']:.3f}  "
        f"({acc['scored_frames']} scored frames, {acc['held']} held a previous output)",
    ]
    if "offline" in report:
        off = report["offline"]
        lines.append(f"offline success AUC {off['success_auc']:.3f}  precision@20 {off['precision']:.3f}  "
                     f"({off['fps']:.1f} fps, every frame)")
    lines += [
        f"frames after init {report['frames_after_init']}, processed {report['processed_frames']}, dropped "
        f"{report['dropped_frames']} ({100 * report['drop_rate']:.1f}%), detections {report['detections']}, "
        f"lost {report['lost_frames']}",
        f"output {report['output_fps']:.1f} fps; latency (publish -> detection received) p50 {lat['p50']:.1f} ms, "
        f"p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms",
        f"node memory: RSS {report['node_rss_mib']:.0f} MiB, peak {report['node_peak_rss_mib']:.0f} MiB",
    ]
    late = report.get("schedule_lateness_ms")
    if late:
        # A player starved of CPU publishes late and in bursts: the node then drops frames it was never given
        # in time, so a stalled run must be visible next to its drops.
        lines.append(f"player lateness (message left after its schedule) p50 {late['p50']:.1f} ms, "
                     f"p95 {late['p95']:.1f} ms, max {late['max']:.1f} ms")
    return lines


def write_live_report(report: dict[str, Any], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    (out_dir / "live_report.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    lines = ["# Live evaluation", "", f"Bag: `{report['bag']}`  model: `{report['model']}`  rate: {report['rate']:g}",
             "", "```", *summary_lines(report), "```", ""]
    (out_dir / "live_report.md").write_text("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siammixer-live-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", help="bag with images and /ground_truth (siammixer-make-bag writes one)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="SiamMixer model file for the node")
    parser.add_argument("--out", default="results/live_eval", help="output folder (output_bag, reports, node.log)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed multiple of the recorded rate")
    parser.add_argument("--clock", action="store_true", help="publish /clock and run the node with use_sim_time")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter (repeatable), e.g. execution_mode:=whole")
    parser.add_argument("--node-name", default="siammixer_tracker")
    parser.add_argument("--image-topic")
    parser.add_argument("--gt-topic", default=reader.DEFAULT_GT_TOPIC)
    parser.add_argument("--storage", choices=sorted(STORAGES), default="sqlite3")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--offline", action="store_true", help="also run the tracker offline for comparison")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output bag in --out")
    return parser


def parse_node_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LiveEvalError(f"--node-param {item!r}: expected NAME:=VALUE")
        params[name] = value
    return params


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = LiveEvalConfig(
            bag=Path(args.bag), out_dir=Path(args.out), model=Path(args.model), rate=args.rate,
            use_sim_time=args.clock, node_name=args.node_name, node_params=parse_node_params(args.node_param),
            image_topic=args.image_topic, gt_topic=args.gt_topic, storage=args.storage,
            startup_timeout=args.startup_timeout, offline=args.offline, overwrite=args.overwrite)
        report = run_live_eval(config)
    except (LiveEvalError, reader.BagError, ValueError, OSError) as error:
        print(f"siammixer-live-eval: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"report: {Path(args.out) / 'live_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
