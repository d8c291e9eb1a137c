"""The node's diagnostics helpers (ROS-free): diagnostic_updater conventions, statistics windows, rates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from siammixer_ros.ros import diagnostics as diag
from siammixer_ros.ros.stats import RateMeter, RollingWindow, StageLatencies, process_memory_bytes


def test_status_names_follow_diagnostic_updater_and_carry_the_hardware_id():
    updater = diag.DiagnosticUpdater("siammixer_tracker", "uav-1")
    updater.add("latency", lambda s: s.summary(diag.WARN, "slow"))
    updater.add("tracking", lambda s: s.add("state", "IDLE"))
    statuses = updater.collect()
    assert [s.name for s in statuses] == ["siammixer_tracker: latency", "siammixer_tracker: tracking"]
    assert all(s.hardware_id == "uav-1" for s in statuses)
    assert (statuses[0].level, statuses[0].message) == (diag.WARN, "slow")
    assert statuses[1].message == "OK" and statuses[1].as_dict() == {"state": "IDLE"}


def test_a_failing_task_is_reported_as_error_not_raised():
    updater = diag.DiagnosticUpdater("n", "h")
    updater.add("broken", lambda s: 1 / 0)
    (status,) = updater.collect()
    assert status.level == diag.ERROR and "broken" in status.message and "division" in status.message


def test_merge_summary_keeps_the_worse_level():
    status = diag.StatusWrapper()
    status.summary(diag.OK, "fine")
    status.merge_summary(diag.WARN, "slow")
    status.merge_summary(diag.OK, "other")
    status.merge_summary(diag.WARN, "dropping")
    assert (status.level, status.message) == (diag.WARN, "slow; dropping")
    status.merge_summary(diag.ERROR, "dead")
    assert (status.level, status.message) == (diag.ERROR, "dead")


def test_values_are_strings():
    status = diag.StatusWrapper()
    for key, value in [("f", 1.23456), ("i", 3), ("b", True), ("n", float("nan")), ("l", ["a", "b"])]:
        status.add(key, value)
    assert status.as_dict() == {"f": "1.235", "i": "3", "b": "true", "n": "nan", "l": "a, b"}


@pytest.mark.parametrize("value,level", [(10, diag.OK), (40, diag.WARN), (99, diag.WARN), (100, diag.ERROR),
                                         (float("nan"), diag.OK)])
def test_thresholds(value, level):
    assert diag.threshold_level(value, 40, 100) == level


def test_a_zero_threshold_is_off():
    assert diag.threshold_level(1e9, 0, 0) == diag.OK


class _Msg(SimpleNamespace):
    pass


def test_to_diagnostic_array_uses_bytes_levels_when_the_message_does():
    def status_cls():
        return _Msg(level=b"\x00", name="", message="", hardware_id="", values=[])

    def array_cls():
        return _Msg(header=_Msg(stamp=None), status=[])

    status = diag.StatusWrapper(name="n: t", hardware_id="h", level=diag.ERROR, message="m", values=[("k", "v")])
    array = diag.to_diagnostic_array([status], "STAMP", array_cls, status_cls, lambda key, value: (key, value))
    assert array.header.stamp == "STAMP"
    (msg,) = array.status
    assert msg.level == b"\x02" and diag.level_from_msg(msg.level) == diag.ERROR
    assert (msg.name, msg.hardware_id, msg.message, msg.values) == ("n: t", "h", "m", [("k", "v")])


def test_rolling_window_median_and_p95():
    window = RollingWindow(100)
    assert np.isnan(window.median())
    for v in range(1, 201):  # only the last 100 (101..200) count
        window.add(float(v))
    window.add(float("nan"))
    assert len(window) == 100
    assert window.median() == pytest.approx(150.5)
    assert window.p95() == pytest.approx(np.percentile(np.arange(101, 201), 95))


def test_stage_latencies_summary_in_ms():
    stages = StageLatencies(10)
    stages.add_many({"crop": 0.001, "inference": 0.010, "bad": "x"})
    stages.add("crop", 0.003)
    summary = stages.summary_ms()
    assert summary["crop"] == pytest.approx((2.0, 2.9))
    assert summary["inference"] == pytest.approx((10.0, 10.0))
    assert "bad" not in summary


def test_rate_meter():
    now = [0.0]
    meter = RateMeter(2.0, clock=lambda: now[0])
    assert meter.rate() == 0.0
    for i in range(31):  # 30 Hz for one second
        now[0] = i / 30
        meter.tick()
    assert meter.rate() == pytest.approx(30.0)
    now[0] = 10.0
    assert meter.rate() == 0.0 and meter.total == 31


def test_process_memory_is_reported():
    rss, peak = process_memory_bytes()
    assert rss > 1_000_000 and peak >= rss


# -- the node's four tasks, on a session-shaped object (no rclpy, no model) -----------------------------------
CFG = {"diagnostics.score_warn": 0.3, "diagnostics.latency_warn_ms": 40.0, "diagnostics.latency_error_ms": 100.0,
       "diagnostics.window": 100, "diagnostics.input_timeout": 2.0, "diagnostics.drop_rate_warn": 0.5,
       "diagnostics.drop_rate_error": 0.95, "diagnostics.rss_warn_mb": 0.0, "intra_op_threads": 1}


def _session(**overrides):
    from siammixer_ros.core.tracker import TrackState

    clock = [100.0]
    values = dict(state=TrackState.TRACKING, score=0.8, psr=7.5, reason="", track_id=3, label="car",
                  box=(1.0, 2.0, 30.0, 40.0),
                  frames_processed=12, bad_frames=1, tracker_errors=0, last_error=None, frames_received=0,
                  dropped_frames=0, frames_missed=0, stamps_backwards=0, latencies=StageLatencies(10),
                  input_rate=RateMeter(2.0, clock=lambda: clock[0]),
                  output_rate=RateMeter(2.0, clock=lambda: clock[0]))
    values.update(overrides)
    return SimpleNamespace(**values)


def _run(task) -> diag.StatusWrapper:
    status = diag.StatusWrapper()
    task(status)
    return status


@pytest.mark.parametrize("state,score,level,message", [
    (None, float("nan"), diag.OK, "no target set (call set_target or click twice)"),
    ("TRACKING", 0.8, diag.OK, "tracking target 3"),
    ("UNCERTAIN", 0.2, diag.WARN, "low score 0.20 (< 0.3)"),
    ("UNCERTAIN", 0.6, diag.OK, "uncertain target 3: PSR 2.5 < tracker.tracking_psr 4"),
    ("LOST", 0.1, diag.WARN, "target 3 lost"),
])
def test_tracking_task_levels_and_state_names(state, score, level, message):
    from siammixer_ros.core.tracker import TrackState

    reason = "PSR 2.5 < tracker.tracking_psr 4" if state == "UNCERTAIN" else ""
    session = _session(state=None if state is None else TrackState[state], score=score, reason=reason)
    status = _run(lambda s: diag.tracking_task(s, session, CFG))
    assert (status.level, status.message) == (level, message)
    assert status.as_dict()["state"] == (state or "IDLE")
    assert status.as_dict()["box"] == "1.0, 2.0, 30.0, 40.0" and status.as_dict()["last error"] == ""


def test_latency_task_rates_the_end_to_end_p95():
    session = _session()
    assert _run(lambda s: diag.latency_task(s, session, CFG)).message == "no frames tracked yet"
    for ms in (20, 30, 60, 70):
        session.latencies.add("end_to_end", ms / 1e3)
    status = _run(lambda s: diag.latency_task(s, session, CFG))
    assert status.level == diag.WARN and status.message.startswith("end-to-end p95 6") and "too slow" in status.message
    values = status.as_dict()
    assert set(values) == {f"{stage} {stat} ms" for stage in diag.LATENCY_STAGES for stat in ("median", "p95")} | {
        "window"}
    assert values["end_to_end median ms"] == "45.000" and values["crop p95 ms"] == "nan"


def test_rates_task_counts_drops_since_the_previous_report_and_reports_silence():
    task = diag.RatesTask("/camera/image")
    session = _session()
    status = _run(lambda s: task(s, session, CFG, now=100.0))
    assert (status.level, status.message) == (diag.WARN, "no image received yet on /camera/image")
    session.input_rate.tick(99.9)
    session.frames_received, session.dropped_frames = 10, 6  # 60 % dropped: WARN
    status = _run(lambda s: task(s, session, CFG, now=100.0))
    assert (status.level, status.message) == (diag.WARN, "60% of frames not processed")
    session.frames_received, session.dropped_frames = 20, 6  # none dropped since the last report
    status = _run(lambda s: task(s, session, CFG, now=100.0))
    assert (status.level, status.message, status.as_dict()["drop rate"]) == (diag.OK, "receiving", "0.000")
    status = _run(lambda s: task(s, session, CFG, now=103.0))  # 3.1 s without an image > input_timeout 2 s
    assert (status.level, status.message) == (diag.ERROR, "no image on /camera/image for 3.1 s")


def test_rates_task_counts_frames_missed_before_the_node_and_warns_below_the_camera_rate():
    task = diag.RatesTask("/camera/image")
    session = _session()
    for i in range(21):  # 20 Hz over the last second
        session.input_rate.tick(99.0 + i * 0.05)
    cfg = {**CFG, "expected_rate_hz": 30.0}
    session.frames_received, session.frames_missed, session.dropped_frames = 20, 10, 2
    status = _run(lambda s: task(s, session, cfg, now=100.0))
    values = status.as_dict()
    assert status.level == diag.WARN
    assert status.message == "input rate 20.0 Hz below the expected 30 Hz"  # 12 of 30 (40 %) < drop_rate_warn
    assert (values["frames missed before the node"], values["frames not processed"], values["drop rate"]) == (
        "10", "12", "0.400")
    status = _run(lambda s: task(s, session, {**cfg, "expected_rate_hz": 21.0}, now=100.0))
    assert (status.level, status.message) == (diag.OK, "receiving")  # 20 Hz >= 90 % of 21 Hz
    status = _run(lambda s: task(s, session, {**cfg, "expected_rate_hz": 0.0}, now=100.0))
    assert status.level == diag.OK  # 0: no expected rate


def test_stamp_gaps_use_the_expected_period_or_the_stamps_own():
    from siammixer_ros.ros.stats import StampGaps

    ms = 1_000_000
    gaps = StampGaps()
    observed = [gaps.observe(t * 33 * ms) for t in (1, 2, 3, 4, 5, 8, 9)]  # 6 and 7 missing
    assert [m for m, _ in observed] == [0, 0, 0, 0, 0, 2, 0] and gaps.missed == 2
    assert gaps.observe(8 * 33 * ms) == (0, True) and gaps.backwards == 1  # backwards: no gap, counted apart
    assert gaps.observe(0) == (0, False)  # unstamped
    assert gaps.observe(60_000 * ms)[0] == 0  # a pause of a minute is silence, not 1800 lost frames
    known = StampGaps(expected_rate_hz=10.0)
    assert [known.observe(t * 100 * ms)[0] for t in (1, 4)] == [0, 2]


def test_resources_task_reports_the_model_and_warns_over_the_rss_limit(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 123)
    tracker = SimpleNamespace(info=SimpleNamespace(variant="xs", model_version="0.1.1"),
                              runtime=SimpleNamespace(mode="whole", providers=("CPUExecutionProvider",)))
    task = diag.ResourcesTask(model, "built-in")
    status = _run(lambda s: task(s, tracker, CFG, 200 * 2**20, 300 * 2**20))
    values = status.as_dict()
    assert status.level == diag.OK and values["model file bytes"] == "123" and values["execution mode"] == "whole"
    assert int(values["model weight bytes"]) > 0 and int(values["feature map peak bytes"]) > 0
    status = _run(lambda s: task(s, tracker, {**CFG, "diagnostics.rss_warn_mb": 150.0}, 200 * 2**20, 300 * 2**20))
    assert (status.level, status.message) == (diag.WARN, "RSS 200 MiB >= 150 MiB")
    unknown = SimpleNamespace(info=SimpleNamespace(variant="ncc-test", model_version="test"), runtime=tracker.runtime)
    values = _run(lambda s: diag.ResourcesTask(model, "built-in")(s, unknown, CFG, 1, 1)).as_dict()
    assert values["model weight bytes"] == "n/a" and "not in the architecture table" in values["feature map peak layer"]
