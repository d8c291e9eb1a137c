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
