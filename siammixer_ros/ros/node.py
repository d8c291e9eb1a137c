"""The ``siammixer_tracker`` ROS 2 node: camera images in, vision_msgs detections and diagnostics out.

A thin rclpy adapter around :class:`~siammixer_ros.ros.session.TrackingSession` (the logic, testable
without ROS). Threads and callback groups:

- the image subscription's callback only stores the newest frame (no conversion, no tracking, never the
  tracker's lock), so frames are never queued; a frame that replaces one not yet processed is counted as
  dropped, frames that never reached the callback are counted from stamp gaps;
- one processing thread takes the newest frame, runs the tracker and publishes the results;
- services (``~/set_target``, ``~/stop``) and click subscriptions run in their own callback group, so a
  target can be set while a frame is being tracked (the tracker is used under one lock);
- diagnostics run on a timer in a third group.

The executor is a SingleThreadedExecutor (parameter ``executor_threads``): rclpy's MultiThreadedExecutor
busy-loops, takes the GIL from the processing thread and lost frames before the callback (docs/node.md).

Run: ``ros2 run siammixer_ros siammixer_tracker --ros-args -p model_path:=model.onnx -r image:=/camera/image_raw``
or ``python -m siammixer_ros.ros.node ...``. Documentation: docs/node.md.
"""

from __future__ import annotations

import array
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from siammixer_interfaces.msg import TrackerStatus
from siammixer_interfaces.srv import SetTarget
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray

from siammixer_ros.core.errors import ModelError, TrackerParamsError
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES, models_dir
from siammixer_ros.ros import diagnostics as diag
from siammixer_ros.ros import heap
from siammixer_ros.ros.debug_image import draw_debug_image
from siammixer_ros.ros.image_conversion import fill_image_msg, make_converter
from siammixer_ros.ros.messages import (
    detection_2d,
    fill_set_target_response,
    format_stamp,
    rclpy_message,
    stamp_to_ns,
    tracker_status,
)
from siammixer_ros.ros.params import (
    TRACKER_PREFIX,
    ParamSpec,
    all_param_specs,
    tracker_params_from,
    validate_change,
)
from siammixer_ros.ros.selection import ClickSelector
from siammixer_ros.ros.session import ProcessedFrame, TargetOutcome, TrackingSession
from siammixer_ros.ros.stats import process_memory_bytes

NODE_NAME = "siammixer_tracker"
WARN_THROTTLE_S = 5.0


class StartupError(RuntimeError):
    """The node cannot start (missing/invalid model, invalid parameter); the message says what to fix."""


def default_model_path(precision: str = "float") -> Path:
    """The shipped model of ``precision`` ("float": siammixer_s.onnx, "int8": siammixer_s_int8.onnx) in
    share/siammixer_ros/models of the installed package, else in the source tree's models/."""
    return models_dir() / SHIPPED_MODEL_NAMES[precision]


# Requests the services hold while one is being answered. ROS's default (10) silently lost 89 of 100 concurrent
# SetTarget calls (several ground-station tools, or a script retrying); each request is answered in milliseconds.
SERVICE_QUEUE_DEPTH = 100
# Seconds between returns of freed heap pages to the system (glibc malloc_trim, from the diagnostics timer): the
# middleware's, rclpy's and the image messages' freed memory otherwise stays in the process (measured in
# benchmarks/node.md: 20-30 MiB less). Not every frame: each trim makes the next update fault its ~40 MiB of
# onnxruntime buffers in again (about 20 ms of CPU).
HEAP_TRIM_PERIOD_S = 10.0
# A new target brings the next trim forward to this many seconds after it: what start-up, the target's initialisation
# and the track's first updates freed (6-8 MiB in 30 s runs of bench_node: 200-201 MiB until the first trim, 193-196
# after) goes back then, not up to 10 s later. One trim per target, about 20 ms of CPU.
TARGET_TRIM_DELAY_S = 2.0


def service_qos() -> QoSProfile:
    """The services' QoS: ROS's service defaults (reliable, volatile) with a deeper request queue."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SERVICE_QUEUE_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def sensor_data_qos() -> QoSProfile:
    """REP-2003 sensor-data subscription profile, but depth 1: only the newest frame matters."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    kinds = {
        "bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
        "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
        "double[]": ParameterType.PARAMETER_DOUBLE_ARRAY, "string[]": ParameterType.PARAMETER_STRING_ARRAY,
    }
    description = spec.description + (f" (one of: {', '.join(spec.choices)})" if spec.choices else "")
    descriptor = ParameterDescriptor(name=spec.name, type=kinds[spec.kind], description=description,
                                     read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.low is not None and spec.kind == "int":
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                                 step=int(spec.step or 1))]
    elif spec.low is not None and spec.kind == "double":
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    return descriptor


class TrackerNodeMixin:
    """The tracker node's behaviour, in steps that the plain node runs at once and the lifecycle node runs on its
    transitions: :meth:`_declare` (parameters), :meth:`_configure` (model, outputs, services, diagnostics,
    processing thread), :meth:`_activate` (input subscriptions), :meth:`_deactivate` (input freed, tracking
    paused) and :meth:`_cleanup` (everything from configure freed, the model included). Mixed into an rclpy
    ``Node`` (or ``LifecycleNode``)."""

    def _declare(self) -> None:
        self._specs = {spec.name: spec for spec in all_param_specs()}
        self._declare_parameters()
        self._cfg: dict[str, Any] = {name: self._parameter_value(name) for name in self._specs}
        self._check_startup_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._compressed = self._cfg["input_type"] == "compressed"
        self._converter = make_converter(Image, log=self.get_logger().warning)
        self._converter.max_pixels = self._cfg["max_image_pixels"]
        self._clicks = ClickSelector(self._cfg["click_timeout"])
        self._session: TrackingSession | None = None
        self._image_sub = None
        self._click_subs: list[Any] = []
        self._active = False
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        # image_transport's naming: the compressed topic is the resolved (remapped) base topic + "/compressed", so
        # `-r image:=/camera/image_raw` moves both.
        self._base_topic = self.resolve_topic_name(self._cfg["image_topic"])
        self._input_topic = self._base_topic + "/compressed" if self._compressed else self._base_topic

    def _configure(self) -> None:
        """Load the model; create outputs, services, diagnostics and the processing thread (raises StartupError)."""
        self._session = TrackingSession(self._load_tracker(), self._converter, self._cfg["frame_buffer_size"],
                                        self._cfg["diagnostics.window"], expected_rate_hz=self._cfg["expected_rate_hz"],
                                        buffer_bytes=int(self._cfg["frame_buffer_mb"] * 2**20))
        heap.trim_heap()  # the model file's decoded parts and onnxruntime's graph building are freed now
        self._last_heap_trim = time.monotonic()
        self._initial_target: list[float] = list(self._cfg["initial_target"])
        self._pending_tracker_params = None
        self._last_latency_ms = float("nan")
        self._stopping = threading.Event()

        self._detection_pub = self.create_publisher(Detection2D, "~/detection", 10)
        self._detections_pub = self.create_publisher(Detection2DArray, "~/detections", 10)
        self._status_pub = self.create_publisher(TrackerStatus, "~/status", 10)
        self._debug_pub = self.create_publisher(Image, "~/debug_image", sensor_data_qos())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # rqt_image_view publishes clicks on "<viewed image topic>_mouse_left": the camera topic or our debug image.
        self._click_topics = [self._base_topic + "_mouse_left", self._debug_pub.topic_name + "_mouse_left"]

        self._set_target_srv = self.create_service(SetTarget, "~/set_target", self._on_set_target,
                                                   qos_profile=service_qos(), callback_group=self._service_group)
        self._stop_srv = self.create_service(Trigger, "~/stop", self._on_stop, qos_profile=service_qos(),
                                             callback_group=self._service_group)

        self._updater = diag.DiagnosticUpdater(self.get_name(), self._hardware_id())
        session, cfg = self._session, self._cfg
        rates = diag.RatesTask(self._input_topic)
        resources = diag.ResourcesTask(self._model_path, self._converter.backend)
        self._updater.add("tracking", lambda status: diag.tracking_task(status, session, cfg))
        self._updater.add("latency", lambda status: diag.latency_task(status, session, cfg))
        self._updater.add("rates", lambda status: rates(status, session, cfg, time.monotonic()))
        self._updater.add("model and resources",
                          lambda status: resources(status, session.tracker, cfg, *process_memory_bytes()))
        self._diagnostics_timer = self.create_timer(self._cfg["diagnostics.period"], self._publish_diagnostics,
                                                    callback_group=self._diagnostics_group)

        self._worker = threading.Thread(target=self._processing_loop, args=(self._session,),
                                        name="siammixer_processing", daemon=True)
        self._worker.start()

    def _activate(self) -> None:
        """Subscribe to the camera (sensor-data QoS, overridable with qos_overrides.<topic>.subscription.*
        parameters, REP-2003) and to the click topics."""
        topic = self._input_topic if self._compressed else self._cfg["image_topic"]
        self._image_sub = self.create_subscription(
            CompressedImage if self._compressed else Image, topic, self._on_image, sensor_data_qos(),
            callback_group=self._input_group, qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self._click_subs = [self.create_subscription(Point, name, self._on_click, 10,
                                                     callback_group=self._service_group)
                            for name in self._click_topics]
        self._active = True
        tracker = self._session.tracker
        self.get_logger().info(
            f"tracking on {self._image_sub.topic_name} ({'CompressedImage' if self._compressed else 'Image'}) "
            f"with {self._model_path} (variant {tracker.info.variant}, version {tracker.info.model_version}), mode "
            f"{tracker.runtime.mode}, {self._cfg['intra_op_threads']} thread(s), providers "
            f"{', '.join(tracker.runtime.providers)}, image conversion: {self._converter.backend}; "
            f"set a target with the {self.resolve_service_name('~/set_target')} service or two clicks on "
            f"{self._click_topics[0]}")

    def _deactivate(self) -> None:
        """Free the input subscriptions; tracking pauses (the track is kept, buffered frames are dropped)."""
        self._active = False
        for sub in [self._image_sub, *self._click_subs]:
            if sub is not None:
                self.destroy_subscription(sub)
        self._image_sub, self._click_subs = None, []
        if self._session is not None:
            self._session.ring.clear()
            self._session.slot.take(timeout=0.0)

    def _cleanup(self) -> None:
        """Stop the processing thread and free what _configure made, the model included."""
        if self._session is None:
            return
        self.stop_processing()
        self._diagnostics_timer.cancel()
        self.destroy_timer(self._diagnostics_timer)
        for srv in (self._set_target_srv, self._stop_srv):
            self.destroy_service(srv)
        for pub in (self._detection_pub, self._detections_pub, self._status_pub, self._debug_pub,
                    self._diagnostics_pub):
            self.destroy_publisher(pub)
        self._session = None  # the tracker and its onnxruntime sessions go with it
        self._updater = None
        heap.trim_heap()

    # -- parameters ----------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for spec in self._specs.values():
            # rclpy infers BYTE_ARRAY from an empty list, refusing a later [1.0, ...]: declare the type instead
            # (the parameter is then "not set" until given, which reads as the empty default).
            empty_array = spec.kind == "double[]" and not spec.default
            value = Parameter.Type.DOUBLE_ARRAY if empty_array else spec.default
            self.declare_parameter(spec.name, value, _descriptor(spec))

    def _parameter_value(self, name: str) -> Any:
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return self._specs[name].default
        return list(value) if isinstance(value, (list, tuple, array.array)) else value

    def _check_startup_parameters(self) -> None:
        why = validate_change({}, {name: value for name, value in self._cfg.items()})
        if why:
            raise StartupError(f"invalid parameter: {why}")

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self._specs}
        why = validate_change(self._cfg, changes) or self._model_refuses(changes)
        if why:
            return SetParametersResult(successful=False, reason=why)
        self._cfg.update(changes)
        if any(name.startswith(TRACKER_PREFIX) for name in changes):
            self._pending_tracker_params = tracker_params_from(self._cfg)
            self.get_logger().info("tracker parameters changed: they apply to the next target")
        if "diagnostics.window" in changes and self._session is not None:
            self._session.latencies.resize(self._cfg["diagnostics.window"])
        if "max_image_pixels" in changes:
            self._converter.max_pixels = self._cfg["max_image_pixels"]
        if "expected_rate_hz" in changes and self._session is not None:
            self._session.gaps.expected_rate_hz = self._cfg["expected_rate_hz"]
        if "click_timeout" in changes:
            self._clicks.timeout_s = self._cfg["click_timeout"]
        if "diagnostics.hardware_id" in changes and self._session is not None:
            self._updater.hardware_id = self._hardware_id()
        if "diagnostics.period" in changes and self._session is not None:
            self._diagnostics_timer.cancel()
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(self._cfg["diagnostics.period"], self._publish_diagnostics,
                                                        callback_group=self._diagnostics_group)
        return SetParametersResult(successful=True)

    def _model_refuses(self, changes: dict[str, Any]) -> str | None:
        """Why the loaded model cannot serve these changes (None if it can): the box modes need a box output."""
        mode = changes.get(TRACKER_PREFIX + "box_mode")
        session = getattr(self, "_session", None)
        if mode in (None, "scale") or session is None or session.tracker.info.has_box_output:
            return None
        return (f"{TRACKER_PREFIX}box_mode '{mode}' needs a model with a box output; {self._model_path.name} has none "
                "(siammixer-model-info shows it)")

    def _hardware_id(self) -> str:
        return self._cfg["diagnostics.hardware_id"] or socket.gethostname()

    # -- model ---------------------------------------------------------------------------------------
    def _load_tracker(self) -> Any:
        from siammixer_ros.core.runtime import RuntimeOptions
        from siammixer_ros.core.tracker import SiamMixerTracker

        path = (Path(self._cfg["model_path"]) if self._cfg["model_path"]
                else default_model_path(self._cfg["model_precision"]))
        self._model_path = path
        if not path.is_file():
            hint = "" if self._cfg["model_path"] else " (the default model; no trained model is installed?)"
            raise StartupError(f"model file not found: {path}{hint}; set the parameter model_path to a SiamMixer "
                               f"ONNX file (siammixer-export writes one)")
        try:
            params = tracker_params_from(self._cfg)
        except TrackerParamsError as exc:
            raise StartupError(f"invalid tracker parameter: {exc}") from None
        options = RuntimeOptions(mode=self._cfg["execution_mode"], intra_op_threads=self._cfg["intra_op_threads"],
                                 providers=tuple(self._cfg["providers"]) or ("CPUExecutionProvider",),
                                 search_batch=self._cfg["search_batch"])
        try:
            return SiamMixerTracker(path, params=params, runtime_options=options)
        except ModelError as exc:
            raise StartupError(f"cannot use the model: {exc} (parameters model_path, execution_mode)") from None

    # -- input ---------------------------------------------------------------------------------------
    def _on_image(self, msg: Any) -> None:
        # Only store the frame: conversion and tracking happen in the processing thread.
        try:
            frame = self._session.on_frame(msg, msg.header, self._compressed)
        except Exception as exc:  # never let a malformed message kill the executor
            self.get_logger().warning(f"ignoring an image message: {exc}", throttle_duration_sec=WARN_THROTTLE_S)
            return
        if frame.stamp_backwards:
            self.get_logger().warning(
                f"image stamps go backwards ({format_stamp(frame.stamp_ns)} after a later one; "
                f"{self._session.stamps_backwards} so far): the frame is tracked, but kept out of the latency "
                f"statistics", throttle_duration_sec=WARN_THROTTLE_S)

    def _on_click(self, msg: Point) -> None:
        if not self._cfg["click_selection"]:
            return
        box = self._clicks.click(msg.x, msg.y)
        if box is None:
            self.get_logger().info(f"first corner at ({msg.x:.0f}, {msg.y:.0f}); click the opposite corner")
            return
        outcome = self._set_target(box, 0, "")
        self._report(outcome.success, f"click selection {tuple(round(v, 1) for v in box)}: {outcome.message}")

    # -- services ------------------------------------------------------------------------------------
    def _set_target(self, box: Any, stamp_ns: int, label: str) -> Any:
        if not self._active:
            return TargetOutcome(False, "the node is not active (lifecycle state inactive): activate it first")
        new_tracker = None
        if self._pending_tracker_params is not None:
            from siammixer_ros.core.tracker import SiamMixerTracker

            # Changed tracker.* parameters: a tracker with them, on the same loaded model (runtime).
            new_tracker = SiamMixerTracker(params=self._pending_tracker_params, runtime=self._session.tracker.runtime)
        outcome = self._session.set_target(box, stamp_ns, label or self._cfg["target_label"],
                                           self._cfg["stamp_tolerance"], self._cfg["min_target_size"], new_tracker)
        if outcome.success:
            self._pending_tracker_params = None
            due = time.monotonic() - HEAP_TRIM_PERIOD_S + TARGET_TRIM_DELAY_S
            self._last_heap_trim = min(self._last_heap_trim, due)
        return outcome

    def _report(self, success: bool, text: str) -> None:
        # rclpy refuses one call site logging at two severities ("Logger severity cannot be changed"): two sites.
        if success:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    def _on_set_target(self, request: Any, response: Any) -> Any:
        try:
            stamp_ns = stamp_to_ns(request.stamp)
            outcome = self._set_target((request.x, request.y, request.width, request.height), stamp_ns,
                                       request.label)
        except Exception as exc:  # a bug must not take the service down: answer with the reason
            response.success, response.message = False, f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(response.message)
            return response
        fill_set_target_response(rclpy_message, response, outcome.success, outcome.message, outcome.track_id,
                                 outcome.frame_stamp_ns, outcome.box)
        self._report(outcome.success, f"set_target ({request.x:g}, {request.y:g}, {request.width:g}, "
                     f"{request.height:g}) stamp {format_stamp(stamp_ns)}: {outcome.message}")
        if outcome.success:
            self._clicks.cancel()
        return response

    def _on_stop(self, request: Any, response: Any) -> Any:
        response.success = True
        session = self._session
        response.message = session.stop() if session is not None else "no target was being tracked"
        self._clicks.cancel()
        self.get_logger().info(response.message)
        return response

    # -- processing ----------------------------------------------------------------------------------
    def _processing_loop(self, session: TrackingSession) -> None:
        while not self._stopping.is_set():
            try:
                self._apply_initial_target(session)
                want_debug = self._cfg["publish_debug_image"] and self._debug_pub.get_subscription_count() > 0
                processed = session.process_next(timeout=0.1, need_image=want_debug)
                if processed is not None:
                    self._publish(session, processed, want_debug)
            except Exception as exc:  # keep processing whatever happens to one frame
                if self._stopping.is_set() or not self.context.ok():
                    break
                self.get_logger().error(f"processing failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_THROTTLE_S)
                time.sleep(0.01)

    def _apply_initial_target(self, session: TrackingSession) -> None:
        if not self._initial_target or session.ring.newest() is None:
            return
        box, self._initial_target = self._initial_target, []
        outcome = self._set_target(box, 0, "")
        self._report(outcome.success, f"initial_target {box}: {outcome.message}")

    def _publish(self, session: TrackingSession, processed: ProcessedFrame, want_debug: bool) -> None:
        header = processed.frame.header
        if processed.error is not None:
            self.get_logger().warning(f"skipping a frame: {processed.error}", throttle_duration_sec=WARN_THROTTLE_S)
        elif processed.state is not None:
            detections = Detection2DArray(header=header)
            if processed.box is not None:
                detection = detection_2d(rclpy_message, header, processed.box, processed.label,
                                         str(processed.track_id), processed.score)
                self._detection_pub.publish(detection)
                detections.detections.append(detection)
            self._detections_pub.publish(detections)
            session.output_rate.tick()
            now_ns = self.get_clock().now().nanoseconds
            if processed.frame.stamp_ns > 0 and not processed.frame.stamp_backwards:
                latency = (now_ns - processed.frame.stamp_ns) / 1e9
                session.latencies.add("end_to_end", latency)
                self._last_latency_ms = latency * 1e3
        self._status_pub.publish(tracker_status(
            rclpy_message, header, processed.state, processed.score, processed.track_id, processed.label,
            processed.box, session.output_rate.rate(), processed.processing_s * 1e3, session.frames_processed,
            session.frames_not_processed, processed.psr, processed.reason))
        if want_debug and processed.image is not None:
            pending = self._clicks.first_click
            drawn = draw_debug_image(processed.image, processed.state, processed.box, processed.score,
                                     processed.track_id, processed.label, session.output_rate.rate(),
                                     self._last_latency_ms, pending)
            debug = fill_image_msg(Image(), drawn)
            debug.header = header
            self._debug_pub.publish(debug)

    # -- diagnostics ---------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        if now - self._last_heap_trim >= HEAP_TRIM_PERIOD_S:
            self._last_heap_trim = now
            heap.trim_heap()
        statuses = self._updater.collect()
        array = diag.to_diagnostic_array(statuses, self.get_clock().now().to_msg(), DiagnosticArray,
                                         DiagnosticStatus, KeyValue)
        self._diagnostics_pub.publish(array)

    @property
    def executor_threads(self) -> int:
        """Threads of the executor main() spins the node with (the read-only parameter executor_threads)."""
        return int(self._cfg["executor_threads"])

    # -- shutdown ------------------------------------------------------------------------------------
    def stop_processing(self) -> None:
        self._stopping.set()
        if self._session is not None:
            self._session.slot.wake()
            self._worker.join(timeout=5.0)


class SiamMixerTrackerNode(TrackerNodeMixin, Node):
    """The plain node (the default): configured and subscribed at construction. See docs/node.md."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare()
        self._configure()
        self._activate()


class SiamMixerTrackerLifecycleNode(TrackerNodeMixin, LifecycleNode):
    """The managed (lifecycle) variant: parameters at construction; configure loads the model and creates the
    outputs and services, activate subscribes to the camera, deactivate frees the subscription and pauses the
    track, cleanup frees the model. See docs/node.md, "Lifecycle node"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare()
        self.get_logger().info("unconfigured: configure loads the model, activate subscribes to the camera")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except StartupError as exc:
            self.get_logger().error(f"cannot configure: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: model {self._model_path} loaded")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("inactive: camera subscription freed, tracking paused")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("unconfigured: model freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}: freeing everything")
        if self._active:
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    """The plain node (console script siammixer_tracker)."""
    return _run(SiamMixerTrackerNode, args)


def main_lifecycle(args: list[str] | None = None) -> int:
    """The lifecycle node (console script siammixer_tracker_lifecycle); it waits, unconfigured, for transitions."""
    return _run(SiamMixerTrackerLifecycleNode, args)


def _run(node_class: type, args: list[str] | None) -> int:
    # No ROS_AUTOMATIC_DISCOVERY_RANGE here: on a vehicle the ground station's rqt must find the node. Scripts, tests
    # and the dev venv keep discovery on the machine.
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(NODE_NAME)
    node = executor = None
    try:
        node = node_class()
        threads = node.executor_threads
        executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (StartupError, rclpy.exceptions.InvalidParameterValueException,
            rclpy.exceptions.InvalidParameterTypeException) as exc:
        logger.error(f"cannot start: {exc}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGTERM shuts the context down from rclpy's signal handler at any moment: while the node creates its
        # publishers, before the executor exists, or under a callback the executor has already taken (a timer's
        # publish). What fails then is the stop itself, not a crash; an error while the context is up is one.
        if rclpy.ok():
            raise
        logger.info("stopped by a signal")
    finally:
        if node is not None:
            node.stop_processing()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main_lifecycle() if "--lifecycle" in sys.argv[1:2] else main())
