"""One-pass evaluation runner (OTB OPE / got10k style).

For every (tracker, sequence): initialise on the first annotated frame with its ground-truth box, then call
``update`` on every later frame (also frames whose target is absent: the tracker is not told). Frames before
the init frame get NaN boxes. Results go to a got10k-style folder::

    <out>/<tracker>/<sequence>.txt          one "x,y,w,h" line per frame (NaN before the init frame)
    <out>/<tracker>/<sequence>_scores.txt   tracker confidence per frame (NaN up to and including init)
    <out>/<tracker>/<sequence>_times.txt    seconds per frame: init() on the init frame, update() after
    <out>/<tracker>/<sequence>_done.json    written last: marks the sequence finished (with run facts)

A sequence with a done marker is skipped unless ``force``; a sequence that fails (bad frame, tracker error)
is reported and the run goes on with the others. Times cover the tracker call only (not frame decoding).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.eval.datasets import Sequence
from siammixer_ros.eval.trackers import TrackerConfig, create_tracker, unavailable_reason


def tracker_folder_name(tracker: str) -> str:
    """Folder-safe name ("pkg.mod:factory" trackers become "pkg.mod-factory")."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tracker)


def result_paths(out_dir: Path, tracker: str, sequence: str) -> dict[str, Path]:
    folder = Path(out_dir) / tracker_folder_name(tracker)
    return {"boxes": folder / f"{sequence}.txt", "scores": folder / f"{sequence}_scores.txt",
            "times": folder / f"{sequence}_times.txt", "done": folder / f"{sequence}_done.json"}


def is_done(out_dir: Path, tracker: str, sequence: Sequence, max_frames: int | None = None) -> bool:
    done = result_paths(out_dir, tracker, sequence.name)["done"]
    if not done.is_file():
        return False
    try:
        info = json.loads(done.read_text())
    except json.JSONDecodeError:
        return False
    return info.get("frames") == _frame_count(sequence, max_frames)


def _frame_count(sequence: Sequence, max_frames: int | None) -> int:
    return len(sequence) if max_frames is None else min(len(sequence), max_frames)


def load_results(out_dir: Path, tracker: str, sequence: str) -> dict[str, Any]:
    """Boxes (N,4), scores (N,), times (N,) and the done-marker facts of one finished sequence."""
    paths = result_paths(out_dir, tracker, sequence)
    if not paths["done"].is_file():
        raise FileNotFoundError(f"no finished results for tracker {tracker} on {sequence} in {out_dir}")
    info = json.loads(paths["done"].read_text())
    boxes = np.loadtxt(paths["boxes"], delimiter=",", ndmin=2)
    scores = np.loadtxt(paths["scores"], ndmin=1)
    times = np.loadtxt(paths["times"], ndmin=1)
    return {"boxes": boxes, "scores": scores, "times": times, "info": info}


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def set_thread_limits(threads: int) -> None:
    """Limit OpenCV (and BLAS/OpenMP in processes not yet using them) to ``threads`` threads."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    import cv2

    cv2.setNumThreads(threads)


def _progress(iterable: Any, total: int, description: str, position: int = 0, leave: bool = True,
              enabled: bool = True) -> Any:
    """tqdm progress bar when tqdm is installed and stderr is a terminal; the plain iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=description, position=position, leave=leave, dynamic_ncols=True)


def run_sequence(tracker_name: str, sequence: Sequence, out_dir: Path, config: TrackerConfig,
                 force: bool = False, max_frames: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run one tracker on one sequence and save its results; returns a status dict (never raises on bad data)."""
    status: dict[str, Any] = {"tracker": tracker_name, "sequence": sequence.name}
    if not force and is_done(out_dir, tracker_name, sequence, max_frames):
        return {**status, "status": "skipped", "reason": "already done (use --force to rerun)"}
    started = time.time()
    try:
        frame_count = _frame_count(sequence, max_frames)
        init_frame = sequence.first_annotated
        if init_frame >= frame_count:
            return {**status, "status": "error", "error": "no annotated frame within the frames to run"}
        tracker = create_tracker(tracker_name, config)
        boxes = np.full((frame_count, 4), np.nan)
        scores = np.full(frame_count, np.nan)
        times = np.full(frame_count, np.nan)
        frames = _progress(sequence.frames, frame_count, f"{tracker_name}/{sequence.name}", position=1,
                           leave=False, enabled=progress)
        for index, image in enumerate(frames):
            if index >= frame_count:
                break
            if index < init_frame:
                continue
            if index == init_frame:
                box = tuple(float(v) for v in sequence.boxes[index])
                tick = time.perf_counter()
                tracker.init(image, box)
                times[index] = time.perf_counter() - tick
                boxes[index] = box
                continue
            tick = time.perf_counter()
            box, score = tracker.update(image)
            times[index] = time.perf_counter() - tick
            boxes[index] = box
            scores[index] = score
        if hasattr(frames, "close"):
            frames.close()
    except Exception as error:  # keep going with the other sequences; say exactly what failed
        return {**status, "status": "error", "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=4)}
    paths = result_paths(out_dir, tracker_name, sequence.name)
    paths["boxes"].parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(paths["boxes"], "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in boxes))
    _write_atomic(paths["scores"], "".join(f"{v:.6f}\n" for v in scores))
    _write_atomic(paths["times"], "".join(f"{v:.7f}\n" for v in times))
    info = {"tracker": tracker_name, "sequence": sequence.name, "frames": frame_count, "init_frame": init_frame,
            "threads": config.threads, "model_path": str(config.model_path) if tracker_name == "siammixer" else None,
            "wall_seconds": round(time.time() - started, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "host": platform.node(), "python": platform.python_version()}
    _write_atomic(paths["done"], json.dumps(info, indent=1) + "\n")
    return {**status, "status": "done", "wall_seconds": info["wall_seconds"]}


def _worker_init(threads: int) -> None:
    set_thread_limits(threads)


def _worker_run(task: tuple[str, Sequence, Path, TrackerConfig, bool, int | None]) -> dict[str, Any]:
    tracker_name, sequence, out_dir, config, force, max_frames = task
    return run_sequence(tracker_name, sequence, out_dir, config, force, max_frames, progress=False)


@dataclass
class RunSummary:
    statuses: list[dict[str, Any]]
    skipped_trackers: dict[str, str]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [s for s in self.statuses if s["status"] == "error"]


def run_experiment(trackers: list[str], sequences: list[Sequence], out_dir: Path, config: TrackerConfig,
                   jobs: int = 1, force: bool = False, max_frames: int | None = None, progress: bool = True,
                   log: Any = print) -> RunSummary:
    """Run every available tracker on every sequence; unavailable trackers are skipped with a message."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    runnable = []
    for name in trackers:
        reason = unavailable_reason(name, config)
        if reason:
            skipped[name] = reason
            log(f"skipping tracker {name}: {reason}")
        else:
            runnable.append(name)
    tasks = [(name, sequence, out_dir, config, force, max_frames) for name in runnable for sequence in sequences]
    statuses: list[dict[str, Any]] = []

    def record(status: dict[str, Any]) -> None:
        statuses.append(status)
        if status["status"] == "error":
            log(f"error: {status['tracker']} on {status['sequence']}: {status['error']}")

    if jobs <= 1:
        set_thread_limits(config.threads)
        for task in _progress(tasks, len(tasks), "sequences", position=0, enabled=progress):
            record(run_sequence(*task, progress=progress))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_worker_init, initargs=(config.threads,)) as pool:
            results = pool.imap_unordered(_worker_run, tasks)
            for status in _progress(results, len(tasks), "sequences", position=0, enabled=progress):
                record(status)
    return RunSummary(statuses, skipped)
