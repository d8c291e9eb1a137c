"""Benchmark of the siammixer_tracker node as deployed: a camera-like publisher at a fixed rate, the node in its
own process, and a subscriber measuring end-to-end latency (detection receive time - image stamp) and the drop
rate (published frames without a detection). Writes benchmarks/node.json and benchmarks/node.md.

    python -m siammixer_ros.tools.bench_node                      # 640x480 at 30 Hz, 1 and 2 threads, 3 repeats
    python -m siammixer_ros.tools.bench_node --model my.onnx --threads 1 --duration 10 --repeats 1
    python -m siammixer_ros.tools.bench_node --executor-threads 1 3 --paths tracking --threads 1 \
        --out benchmarks/node_executor                             # the node's executor: single vs multi-threaded
    python -m siammixer_ros.tools.bench_node --model m.onnx --soak-seconds 300   # a 5-minute soak, added to node.md

The model: --model, else a random-weight SiamMixer-XS export (realistic compute, NOT a tracker: needs torch for
the export), else the committed NCC test model (measures the node's overhead around a near-free network).
The target is set on the first frame of a synthetic textured target moving back and forth; each run takes one of
two tracker paths (``--paths``), forced with tracker parameters so that the model's scores do not decide it:

- ``tracking``: never LOST, the normal path (``tracker.scale_num`` crops a frame, 3 by default);
- ``lost``: LOST from the first frame and never re-acquired, the lost-target path: the search region grows to
  ``tracker.lost_search_max`` (3) times the normal one, searched as a 3x3 grid of crops a frame.

"Stale" frames are detections whose image waited in the node longer than one frame period before processing
started (the node's "wait" stage); frames are never queued, so it should stay 0.

The node's memory is sampled from /proc/<pid>/status every ``--rss-interval`` seconds during each run (VmRSS and its
anonymous / file / shared-memory parts): RSS at the start of the measured window, at its end and the largest.
``--soak-seconds`` runs one long run (the tracking path, the first of ``--threads``) and writes it as the ``soak``
section of the existing report (json and md) instead of replacing the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.ros.dds_profile import set_profile_defaults

REPO = Path(__file__).resolve().parents[2]
NODE = "siammixer_tracker"
# Tracker parameters forcing each path whatever the model's scores are (a random-weight model is unsure of
# everything and would otherwise drift between the paths). No frame reaches PSR 1000 or score 1.0.
PATH_PARAMS: dict[str, tuple[str, ...]] = {
    "tracking": ("tracker.lost_score:=0.0", "tracker.lost_psr:=0.0"),
    "lost": ("tracker.tracking_psr:=1000.0", "tracker.lost_psr:=1000.0", "tracker.lost_frames:=1",
             "tracker.redetect_score:=1.0", "tracker.redetect_psr:=1000.0"),
}


def _log(msg: str) -> None:
    print(f"[bench_node] {msg}", file=sys.stderr, flush=True)


def prepare_model(requested: str | None, workdir: Path) -> tuple[Path, str]:
    """(model path, description)."""
    if requested:
        return Path(requested), f"given: {requested}"
    xs = workdir / "xs_random.onnx"
    result = subprocess.run([sys.executable, "-m", "siammixer_ros.model.export", "--variant", "xs", "--random-init",
                             "--out", str(xs)], capture_output=True, text=True)
    if result.returncode == 0 and xs.is_file():
        return xs, "SiamMixer-XS with random weights (siammixer-export --random-init): realistic compute, not trained"
    _log(f"random XS export unavailable ({result.stderr.strip().splitlines()[-1:] or 'no output'}); "
         "using the NCC test model")
    from siammixer_ros.testing.ncc_model import ncc_model_path

    return ncc_model_path(16), "NCC test model (near-free network; measures the node's own overhead)"


def make_frames(width: int, height: int, count: int = 90) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """A target moving back and forth (ping-pong, so the loop has no jump)."""
    from siammixer_ros.testing.synthetic import render_sequence

    w, h = width // 8, height // 8
    half = count // 2
    xs = [width * 0.3 + i * width * 0.3 / half for i in range(half)]
    ys = [height * 0.35 + i * height * 0.2 / half for i in range(half)]
    path = list(zip(xs, ys, strict=True)) + list(zip(xs[::-1], ys[::-1], strict=True))
    boxes = [(x, y, float(w), float(h)) for x, y in path]
    seq = render_sequence(boxes, size=(width, height), seed=11, blob=10.0)
    return seq.frames, boxes[0]


class Client:
    """Publisher + subscribers + service client in the benchmark process."""

    def __init__(self, namespace: str, frames: list[np.ndarray]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from siammixer_interfaces.srv import SetTarget
        from vision_msgs.msg import Detection2DArray

        from siammixer_ros.ros.image_conversion import fill_image_msg

        self.node = rclpy.create_node(f"bench_node_client_{os.getpid()}")
        self.namespace = namespace
        self.messages = []
        for frame in frames:
            msg = fill_image_msg(Image(), frame)
            msg.header.frame_id = "camera"
            self.messages.append(msg)
        self.publisher = self.node.create_publisher(Image, f"{namespace}/camera/image", 10)
        self.received: list[tuple[int, int]] = []  # (stamp ns, receive ns)
        self.lock = threading.Lock()
        self.node.create_subscription(Detection2DArray, f"{namespace}/{NODE}/detections", self._on_detections, 100)
        self.diagnostics: list[Any] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.set_target = self.node.create_client(SetTarget, f"{namespace}/{NODE}/set_target")
        self.SetTarget = SetTarget
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_detections(self, msg) -> None:
        now = time.time_ns()
        with self.lock:
            self.received.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, now))

    def _on_diagnostics(self, msg) -> None:
        mine = [s for s in msg.status if s.hardware_id == self.namespace]
        if mine:
            self.diagnostics.append({s.name: {kv.key: kv.value for kv in s.values} for s in mine})

    def publish(self, index: int) -> int:
        msg = self.messages[index % len(self.messages)]
        now = time.time_ns()  # the node's ROS clock is the system clock: stamps are comparable
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.publisher.publish(msg)
        return now

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(5.0)
        self.node.destroy_node()


def node_memory_mib(pid: int) -> dict[str, float]:
    """The process's resident memory in MiB from /proc/<pid>/status: rss (VmRSS) = anon + file + shmem, and its
    peak hwm (VmHWM)."""
    keys = {"VmRSS:": "rss", "VmHWM:": "hwm", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name = line.split(":", 1)[0] + ":"
                if name in keys:
                    out[keys[name]] = round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return out


def process_cpu_s(pid: int) -> float | None:
    """CPU time (user + system, every thread) the process has used, in seconds, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


class MemorySampler:
    """Samples a process's memory (:func:`node_memory_mib`) every ``interval`` s in a thread: (seconds, sample).
    Also takes the process's CPU time at the start and the stop (``cpu_s``: the CPU it used in between)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._cpu_start = process_cpu_s(pid)
        self.cpu_s: float | None = None
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            sample = node_memory_mib(self.pid)
            if sample:
                self.samples.append((round(time.monotonic() - self._start, 1), sample))
            if self._stop.wait(self.interval):
                return

    def stop(self) -> list[tuple[float, dict[str, float]]]:
        self._stop.set()
        self._thread.join(5.0)
        cpu_end = process_cpu_s(self.pid)
        if self._cpu_start is not None and cpu_end is not None:
            self.cpu_s = cpu_end - self._cpu_start
        sample = node_memory_mib(self.pid)
        if sample:
            self.samples.append((round(time.monotonic() - self._start, 1), sample))
        return self.samples


def run_once(client: Client, model: Path, threads: int, mode: str, rate: float, duration: float, warmup: float,
             box: tuple[float, ...], env: dict[str, str], reliability: str = "", path: str = "tracking",
             executor_threads: int = 1, rss_interval: float = 5.0, node_params: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    namespace = client.namespace
    path_params = [arg for param in PATH_PARAMS[path] for arg in ("-p", param)]
    qos = ["-p", f"qos_overrides.{namespace}/camera/image.subscription.reliability:={reliability}"] if reliability \
        else []
    args = [sys.executable, "-m", "siammixer_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
            "-r", f"image:={namespace}/camera/image", "-p", f"model_path:={model}",
            "-p", f"intra_op_threads:={threads}", "-p", f"execution_mode:={mode}", "-p", "diagnostics.period:=1.0",
            "-p", f"diagnostics.hardware_id:={namespace}", "-p", "diagnostics.window:=10000", *path_params,
            "-p", f"executor_threads:={executor_threads}", "-p", f"expected_rate_hz:={float(rate)!r}",
            *qos, *[arg for param in node_params for arg in ("-p", param)]]
    log = tempfile.NamedTemporaryFile(prefix="bench-node-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while client.publisher.get_subscription_count() < 1 or not client.set_target.service_is_ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.05)
        # First frame until the node has it, then the target.
        response = None
        while response is None or not response.success:
            client.publish(0)
            time.sleep(0.2)
            request = client.SetTarget.Request(x=box[0], y=box[1], width=box[2], height=box[3])
            future = client.set_target.call_async(request)
            end = time.monotonic() + 10
            while not future.done() and time.monotonic() < end:
                time.sleep(0.01)
            response = future.result() if future.done() else None
            if time.monotonic() > deadline:
                raise RuntimeError(f"set_target failed: {response}")
        with client.lock:
            client.received.clear()
        client.diagnostics.clear()
        period = 1.0 / rate
        sampler: MemorySampler | None = None
        published: list[int] = []
        missed_at_start = None  # the node's own count when the measured window starts (from its last report)
        start = time.monotonic()
        i = 1
        while True:
            target = start + (i - 1) * period
            now = time.monotonic()
            if now - start > warmup + duration:
                break
            if target > now:
                time.sleep(target - now)
            stamp = client.publish(i)
            if time.monotonic() - start >= warmup:
                if sampler is None:  # memory from the start of the measured window
                    sampler = MemorySampler(process.pid, rss_interval)
                if missed_at_start is None:
                    missed_at_start = _node_missed(client.diagnostics[-1] if client.diagnostics else {})
                published.append(stamp)
            i += 1
        time.sleep(1.0)  # let the last detections and a diagnostics report arrive
        memory = sampler.stop() if sampler is not None else []
        cpu_s = sampler.cpu_s if sampler is not None else None
        with client.lock:
            received = list(client.received)
        wanted = set(published)
        latencies = np.array([(r - s) / 1e6 for s, r in received if s in wanted])
        processed = len(latencies)
        diag = client.diagnostics[-1] if client.diagnostics else {}
        latency_diag = diag.get(f"{NODE}: latency", {})
        state = diag.get(f"{NODE}: tracking", {}).get("state")
        stale = None
        if latency_diag:
            wait_p95 = float(latency_diag.get("wait p95 ms", "nan"))
            stale = "none" if wait_p95 <= period * 1e3 else f"wait p95 {wait_p95:.1f} ms > one period"
        return {
            "path": path, "final_state": state, "threads": threads, "executor_threads": executor_threads,
            "mode": mode, "published": len(published), "load_average_1min": round(os.getloadavg()[0], 2),
            "processed": processed,
            "drop_rate": 1.0 - processed / max(1, len(published)),
            "latency_ms": {"p50": float(np.percentile(latencies, 50)) if processed else None,
                           "p95": float(np.percentile(latencies, 95)) if processed else None,
                           "p99": float(np.percentile(latencies, 99)) if processed else None,
                           "max": float(latencies.max()) if processed else None},
            "output_rate_hz": processed / duration,
            # The node process's CPU time (every thread: executor, DDS, conversion, tracking) over the measured
            # window, per frame it tracked: far less distorted by other jobs than the latency.
            "node_cpu_ms_per_frame": 1000 * cpu_s / processed if cpu_s is not None and processed else None,
            "node_diagnostics": {k: latency_diag.get(k) for k in sorted(latency_diag)},
            "node_rates": diag.get(f"{NODE}: rates", {}),
            "node_missed": None if missed_at_start is None or _node_missed(diag) is None
            else _node_missed(diag) - missed_at_start,
            "resolved_mode": diag.get(f"{NODE}: model and resources", {}).get("execution mode", mode),
            "stale_frames": stale,
            "node_memory_mib": {"start": memory[0][1] if memory else None, "end": memory[-1][1] if memory else None,
                                "max_rss": max((m["rss"] for _, m in memory if "rss" in m), default=None),
                                "samples": memory},
            "node_rss_mib": (int(rss) / 2**20 if (rss := diag.get(f"{NODE}: model and resources", {})
                                                  .get("rss bytes")) else None),
        }
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _node_missed(diag: dict[str, Any]) -> int | None:
    """The node's count of frames missed before its callback (stamp gaps) in a diagnostics report."""
    value = diag.get(f"{NODE}: rates", {}).get("frames missed before the node")
    return None if value is None else int(value)


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def write_report(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    title = ["# siammixer_tracker node: end-to-end latency and drops", ""]
    lines = _summary_lines(results) if "summary" in results else title
    if "soak" in results:
        lines += _soak_lines(results["soak"])
    out.with_suffix(".md").write_text("\n".join(lines))


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def _soak_lines(soak: dict[str, Any]) -> list[str]:
    memory = soak.get("node_memory_mib", {})
    start, end = memory.get("start") or {}, memory.get("end") or {}
    samples = memory.get("samples") or []
    load = soak.get("load_average_1_5_15_min", {})
    lat = soak["latency_ms"]

    def parts(m: dict[str, float]) -> str:
        return (f"{_fmt(m.get('rss'), '.0f')} ({_fmt(m.get('anon'), '.0f')} / {_fmt(m.get('file'), '.0f')} / "
                f"{_fmt(m.get('shmem'), '.0f')})")

    return [
        "## Soak",
        "",
        f"{soak['date']}: {soak['width']}x{soak['height']} `bgr8` images at {soak['rate_hz']:g} Hz for "
        f"{soak['published'] / soak['rate_hz']:.0f} s (after the warm-up), the tracking path, {soak['threads']} "
        f"inference thread(s), executor {soak['executor_threads']}, mode {soak['mode']}. Model: {soak['model']}. "
        f"Node environment: {soak.get('node_env') or 'none added'}; extra node parameters: "
        f"{soak.get('node_params') or 'none'}. Command: `{soak['command']}`.",
        f"Load average (1 / 5 / 15 min) at the start: {' / '.join(map(str, load.get('start', [])))}; at the end: "
        f"{' / '.join(map(str, load.get('end', [])))}."
        + (f" The load was above the machine's {os.cpu_count()} CPUs: the latency and drop numbers say how the node "
           "degrades when it gets a fraction of a core, not what it does on a free machine; the memory numbers do "
           "not depend on the load." if load.get("start") and max(load["start"][0], load["end"][0]) > (os.cpu_count()
                                                                                                        or 1) else ""),
        "",
        "RSS = the node process's VmRSS (anonymous / file-backed / shared memory, MiB) from /proc/<pid>/status, "
        "sampled every few seconds: at the start of the measured window, at its end, and the largest sample.",
        "",
        "Node CPU = the node process's CPU time (user + system, all threads, /proc/<pid>/stat) over the measured "
        "window divided by the frames it tracked.",
        "",
        "| frames published | drop rate | node missed | p50 ms | p95 ms | p99 ms | max ms | node CPU ms / frame "
        "| RSS start MiB (anon / file / shm) | RSS end MiB (anon / file / shm) | RSS max MiB | samples | state |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {soak['published']} | {soak['drop_rate']:.3f} | {_fmt(soak.get('node_missed'), '.0f')} | "
        f"{_fmt(lat['p50'])} | {_fmt(lat['p95'])} | {_fmt(lat.get('p99'))} | {_fmt(lat['max'])} | "
        f"{_fmt(soak.get('node_cpu_ms_per_frame'))} | {parts(start)} | "
        f"{parts(end)} | {_fmt(memory.get('max_rss'), '.0f')} | {len(samples)} | {soak['final_state']} |",
        "",
        "RSS over the soak (s: MiB): " + ", ".join(f"{t:.0f}: {m.get('rss', 0):.0f}" for t, m in samples) + ".",
        "",
    ]


def _summary_lines(results: dict[str, Any]) -> list[str]:
    cfg = results["config"]
    lines = [
        "# siammixer_tracker node: end-to-end latency and drops",
        "",
        f"{cfg['width']}x{cfg['height']} `bgr8` images published at {cfg['rate_hz']:g} Hz for {cfg['duration_s']:g} s "
        f"(after {cfg['warmup_s']:g} s warm-up), target set on the first frame; {cfg['repeats']} run(s) per row, "
        "medians of the runs shown.",
        f"Model: {cfg['model']}. Node input QoS reliability: {cfg.get('input_reliability', 'node default')}. "
        f"Machine: {cfg['machine']}. Command: `{cfg['command']}`.",
        *([f"Load average (1 / 5 / 15 min) at the start: {' / '.join(map(str, load['start']))}; at the end: "
           f"{' / '.join(map(str, load['end']))}."] if (load := cfg.get("load_average_1_5_15_min")) else []),
        "",
        "Latency = detection received by a subscriber - image header stamp (publish time). Drop rate = published "
        "frames without a detection (the node processes the newest frame and drops the rest, by design). "
        "Node wait = frame received by the node -> its processing started (a queued frame would wait longer than "
        "one frame period: `stale frames`). Max = the largest latency of a run; the table shows the median of the "
        "runs' maxima. State = the tracking state in the node's last diagnostics report of each run.",
        "",
        "Paths, forced with tracker parameters: "
        + "; ".join(f"`{path}`: {' '.join(PATH_PARAMS[path])}" for path in cfg.get("paths", PATH_PARAMS)) + ". "
        "`tracking` runs tracker.scale_num (3) crops a frame; `lost` searches the lost-target region, "
        "tracker.lost_search_max (3) times the normal one, as a 3x3 grid of crops a frame.",
        "",
        "Executor: the node's executor_threads (1: SingleThreadedExecutor, more: MultiThreadedExecutor). Node "
        "missed = frames the node itself counted as missed before its callback (stamp gaps) in the measured window "
        "(from its diagnostics report before the window to the last one; median of the runs). "
        "Node RSS = the node process's resident memory in its last diagnostics report of a run (median of the "
        "runs). Node CPU = the node process's CPU time (all threads) over the measured window per tracked frame "
        "(median of the runs). Load = the 1-minute load average at the end of each run (min .. max of the row's "
        "runs).",
        "",
        "| path | threads | executor | mode | p50 ms | p95 ms | max ms (median of run maxima) | drop rate "
        "| node missed | output Hz | node processing p50 / p95 ms | node wait p95 ms | stale frames | state "
        "| node RSS MiB | node CPU ms / frame | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["summary"]:
        def fmt(v: float | None, spec: str = ".1f") -> str:
            return "n/a" if v is None else format(v, spec)

        lines.append(f"| {row['path']} | {row['threads']} | {row.get('executor_threads', 1)} | {row['mode']} | "
                     f"{fmt(row['p50_ms'])} | {fmt(row['p95_ms'])} | "
                     f"{fmt(row['max_ms'])} | {fmt(row['drop_rate'], '.3f')} | {fmt(row.get('node_missed'), '.0f')} | "
                     f"{fmt(row['output_rate_hz'])} | "
                     f"{fmt(row['node_processing_p50_ms'])} / {fmt(row['node_processing_p95_ms'])} | "
                     f"{fmt(row['node_wait_p95_ms'])} | {row['stale']} | {row['states']} | "
                     f"{fmt(row.get('node_rss_mib'), '.0f')} | {fmt(row.get('node_cpu_ms_per_frame'))} | "
                     f"{row.get('load', 'n/a')} |")
    target = results["target"]
    lines += ["", f"Target: p95 <= {target['p95_ms']:g} ms, no stale frames queued. "
              f"Met: {', '.join(f'{k}: {v}' for k, v in target['met'].items())}.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: random XS export, else the NCC test model)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["whole"], help="execution_mode values of the node to compare")
    parser.add_argument("--paths", nargs="+", choices=list(PATH_PARAMS), default=list(PATH_PARAMS),
                        help="tracker paths to measure (see the module docstring)")
    parser.add_argument("--executor-threads", type=int, nargs="+", default=[1],
                        help="the node's executor_threads values to compare (1: single-threaded executor)")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--reliability", choices=["", "best_effort", "reliable"], default="",
                        help="override the node's input QoS reliability (default: the node's, best effort)")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "node"), help="output path without suffix")
    parser.add_argument("--rss-interval", type=float, default=5.0, help="seconds between samples of the node's memory")
    parser.add_argument("--soak-seconds", type=float, default=0.0,
                        help="run one soak of this many seconds (tracking path, the first --threads, --modes and "
                             "--executor-threads value) and add it to the report at --out as its soak section")
    parser.add_argument("--node-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the node process only (e.g. MALLOC_ARENA_MAX=2); repeatable")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="an extra parameter of the node (e.g. frame_buffer_size:=10); repeatable")
    args = parser.parse_args(argv)
    node_env = dict(item.split("=", 1) for item in args.node_env)
    width, height = (int(v) for v in args.size.lower().split("x"))

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    set_profile_defaults(os.environ)  # both Fast DDS 2.x (Jazzy) and 3.x (Kilted) variables
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    import rclpy

    workdir = Path(tempfile.mkdtemp(prefix="bench-node-"))
    model, model_text = prepare_model(args.model, workdir)
    frames, box = make_frames(width, height)
    rclpy.init()
    namespace = f"/bench_{os.getpid()}"
    client = Client(namespace, frames)
    runs = []
    load_start = os.getloadavg()  # the machine is shared: the numbers mean little without the load beside them
    command = "python -m siammixer_ros.tools.bench_node " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.soak_seconds > 0:
        try:
            _log(f"soak: {args.soak_seconds:g} s at {args.rate:g} Hz")
            soak = run_once(client, model, args.threads[0], args.modes[0], args.rate, args.soak_seconds, args.warmup,
                            box, {**os.environ, **node_env}, args.reliability, "tracking", args.executor_threads[0],
                            args.rss_interval, tuple(args.node_param))
        finally:
            client.close()
            rclpy.try_shutdown()
        soak["load_average_1_5_15_min"] = {"start": [round(v, 2) for v in load_start],
                                           "end": [round(v, 2) for v in os.getloadavg()]}
        soak.update(command=command.strip(), model=model_text, width=width, height=height, rate_hz=args.rate,
                    node_env=node_env, node_params=args.node_param, date=time.strftime("%Y-%m-%d", time.gmtime()))
        out = Path(args.out)
        results = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
        results["soak"] = soak
        write_report(results, out)
        print(out.with_suffix(".md").read_text())
        return 0
    try:
        # Round robin: each repeat runs every configuration once, so a change of load hits all of them alike.
        plan = [(p, m, t, e, r) for r in range(args.repeats) for p in args.paths for m in args.modes
                for t in args.threads for e in args.executor_threads]
        for path, mode, threads, executor_threads, repeat in plan:
            _log(f"path {path}, mode {mode}, threads {threads}, executor threads {executor_threads}, "
                 f"run {repeat + 1}/{args.repeats}")
            result = run_once(client, model, threads, mode, args.rate, args.duration, args.warmup, box,
                              {**os.environ, **node_env}, args.reliability, path, executor_threads,
                              args.rss_interval, tuple(args.node_param))
            _log(f"  p50 {result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms, "
                 f"drop rate {result['drop_rate']:.2f}")
            runs.append(result)
    finally:
        client.close()
        rclpy.try_shutdown()
    load_end = os.getloadavg()
    summary = []
    for path, mode, threads, executor_threads in [(p, m, t, e) for p in args.paths for m in args.modes
                                                  for t in args.threads for e in args.executor_threads]:
        mine = [r for r in runs if r["path"] == path and r["threads"] == threads and r["mode"] == mode
                and r["executor_threads"] == executor_threads]
        missed = [r.get("node_missed") for r in mine]
        loads = [r["load_average_1min"] for r in mine]
        waits = [float(r["node_diagnostics"].get("wait p95 ms") or "nan") for r in mine]
        waits = [w for w in waits if w == w]
        resolved = sorted({r.get("resolved_mode", mode) for r in mine})
        processing = [(float(r["node_diagnostics"].get("processing median ms") or "nan"),
                       float(r["node_diagnostics"].get("processing p95 ms") or "nan")) for r in mine]
        summary.append({
            "path": path, "threads": threads, "executor_threads": executor_threads,
            "node_missed": _median([float(m) for m in missed if m is not None]),
            "node_rss_mib": _median([r.get("node_rss_mib") for r in mine]),
            "node_cpu_ms_per_frame": _median([r.get("node_cpu_ms_per_frame") for r in mine]),
            "load": f"{min(loads):.1f} .. {max(loads):.1f}" if loads else "n/a",
            "mode": mode if resolved == [mode] else f"{mode} ({', '.join(resolved)})",
            "states": ", ".join(sorted({str(r["final_state"]) for r in mine})),
            "node_processing_p50_ms": _median([p for p, _ in processing if p == p]),
            "node_processing_p95_ms": _median([q for _, q in processing if q == q]),
            "p50_ms": _median([r["latency_ms"]["p50"] for r in mine]),
            "p95_ms": _median([r["latency_ms"]["p95"] for r in mine]),
            "max_ms": _median([r["latency_ms"]["max"] for r in mine]),  # median of the runs' maxima
            "drop_rate": _median([r["drop_rate"] for r in mine]),
            "output_rate_hz": _median([r["output_rate_hz"] for r in mine]),
            "node_wait_p95_ms": _median(waits) if waits else None,
            "stale": "none" if all(r["stale_frames"] == "none" for r in mine) else
            "; ".join(str(r["stale_frames"]) for r in mine),
        })
    met = {f"{s['path']}, {s['mode']}, {s['threads']} thread(s), executor {s['executor_threads']}":
           ("yes" if s["p95_ms"] is not None and s["p95_ms"] <= 40.0 and s["stale"] == "none" else "no")
           for s in summary}
    results = {
        "config": {"model": model_text, "model_path": str(model), "width": width, "height": height,
                   "rate_hz": args.rate, "duration_s": args.duration, "warmup_s": args.warmup,
                   "repeats": args.repeats, "modes": args.modes, "paths": args.paths,
                   "executor_threads": args.executor_threads,
                   "input_reliability": args.reliability or "best_effort (node default)", "command": command.strip(),
                   "node_env": node_env, "node_params": args.node_param,
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                              "shared with other jobs (noisy)",
                   "load_average_1_5_15_min": {"start": [round(v, 2) for v in load_start],
                                               "end": [round(v, 2) for v in load_end]}},
        "summary": summary,
        "target": {"p95_ms": 40.0, "met": met},
        "runs": runs,
    }
    if args.out and Path(args.out).with_suffix(".json").is_file():  # keep an earlier soak
        earlier = json.loads(Path(args.out).with_suffix(".json").read_text())
        if "soak" in earlier:
            results["soak"] = earlier["soak"]
    write_report(results, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
