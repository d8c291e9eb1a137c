"""Teacher pseudo-tracks on ``../shared/data/unlabeled_videos``: boxes for clips that have no ground truth.

``python -m siammixer_ros.train.pseudo_tracks --out siammixer_ros/train/pseudo_tracks.json`` runs, per clip:

1. **Start frames**: ``starts`` frames spread evenly over the clip, each the beginning of a segment of
   ``seconds`` (20 to ``length`` frames; a shorter clip gets fewer segments, or one of what it has).
2. **Start boxes**: candidates are a multi-scale grid of boxes (sides 8-32 % of the frame's shorter side,
   three aspect ratios, half-side stride), of which the ``shortlist`` that differ most in mean Lab colour from
   the ring around them (centre-surround contrast, non-overlapping) are kept, plus the boxes of moving blobs
   (the difference to the frame ``probe`` frames later, for fixed cameras). Each is scored by the teacher
   itself (``NanoTrackTeacher``):
   template at the box, search crop at the same place ``probe`` frames later; ``peak`` is its highest
   foreground probability and ``distinct = peak - (highest probability more than 2 cells from the peak)``.
   A box the teacher finds again (high peak) and nothing else looks like (high distinct) is an object it can
   track; flat regions (sky, road) have flat maps and score low. Candidates with ``peak >= min_peak`` and
   ``distinct >= min_distinct`` are taken best ``peak * distinct`` first, at most ``per_start`` per start
   frame, none overlapping a taken one (IoU > 0.1), those whose peak moved off the centre cell (the object
   moved a quarter of its size or more in ``probe`` frames) before the others.
   Boxes closer than ``border`` sides to the frame's edge are dropped (the crop's padding makes any corner
   look distinctive).
3. **Refinement**: NanoTrack v2 initialised on the candidate updates three times on the same frame, so that
   its box regression fits the object; that box starts the track.
4. **Forward-backward check**: NanoTrack v2 (the evaluation's port, ``siammixer_ros.eval.peers.nanotrack``)
   tracks forward over the segment, then backward from its last box to the start frame. A track is kept when
   the backward track ends on the start box (IoU >= ``min_fb_iou``), the two agree on average over the segment
   (mean IoU >= ``min_mean_iou``), the forward scores stay high (10th percentile >= ``min_score``) and the box
   moves, both in the image and relative to the scene (its centre, and its centre less the camera's pan measured
   by phase correlation, get ``min_motion`` box sizes away from the start at some frame: a patch of background
   passes every consistency check, and under a panning camera it moves with everything else; neither is a
   distinct object). A segment ends at a scene cut (correlation of consecutive grey thumbnails < 0.5). A track
   that fails over the whole segment is checked again over its first half (backward from the half-way box). With
   ``--second-opinion`` LightTrack-Mobile also tracks forward from the start box and must agree with
   NanoTrack (mean IoU >= ``min_mean_iou``).

The output is only boxes (JSON: per clip counts, per track its clip, first frame and one box per frame),
committed as ``siammixer_ros/train/pseudo_tracks.json`` so that training needs no recomputation. The pair
source ``pseudo_video`` (``data.py``) decodes the frames the tracks use once into the frame cache
(``<cache>/unlabeled/<clip>/``) and draws template and search frames within one track.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siammixer_ros.train.cache import JPEG_QUALITY, CachedSequence, default_data_dir

FORMAT = "siammixer-pseudo-tracks/1"


def default_tracks_file() -> Path:
    return Path(__file__).resolve().with_name("pseudo_tracks.json")


@dataclass
class MiningParams:
    seconds: float = 3.0      # segment duration (tracked every frame) ...
    length: int = 60          # ... but at most this many frames and at least 20
    starts: int = 6           # segments per clip, spread evenly
    per_start: int = 5        # start boxes per segment
    probe: int = 5            # frames ahead for scoring candidates
    min_peak: float = 0.7
    min_distinct: float = 0.3
    min_fb_iou: float = 0.7
    min_mean_iou: float = 0.6
    min_score: float = 0.5
    min_side: int = 12        # px, candidate boxes
    shortlist: int = 40       # grid boxes scored by the teacher (the highest centre-surround contrast)
    border: float = 0.25      # candidates keep this many box sides from the frame's edge
    min_motion: float = 0.5   # the track's centre must move this many box sizes (sqrt(w h)) from the start


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def grid_candidates(height: int, width: int, min_side: int) -> list[np.ndarray]:
    short = min(height, width)
    boxes = []
    for fraction in (0.08, 0.14, 0.22, 0.32):
        for aspect in (0.6, 1.0, 1.6):  # w / h
            side = short * fraction
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            if min(w, h) < min_side:
                continue
            for y in np.arange(0, height - h, h / 2):
                for x in np.arange(0, width - w, w / 2):
                    boxes.append(np.array([x, y, w, h]))
    return boxes


def away_from_border(box: np.ndarray, height: int, width: int, margin: float) -> bool:
    """A box at the frame's edge is 'distinctive' only through the crop's padding: not an object."""
    mx, my = margin * box[2], margin * box[3]
    return box[0] >= mx and box[1] >= my and box[0] + box[2] <= width - mx and box[1] + box[3] <= height - my


def contrast_shortlist(frame: np.ndarray, boxes: list[np.ndarray], keep: int) -> list[np.ndarray]:
    """The ``keep`` boxes whose mean Lab colour differs most from a ring around them (half a side wide),
    greedily non-overlapping (IoU <= 0.3)."""
    if not boxes:
        return []
    lab = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB).astype(np.float64)
    integral = cv2.integral(lab)  # (H+1, W+1, 3)
    h, w = frame.shape[:2]
    b = np.array(boxes)

    def region(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0, x1 = np.clip(np.round(x0), 0, w).astype(int), np.clip(np.round(x1), 0, w).astype(int)
        y0, y1 = np.clip(np.round(y0), 0, h).astype(int), np.clip(np.round(y1), 0, h).astype(int)
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return total, np.maximum((x1 - x0) * (y1 - y0), 1)[:, None].astype(np.float64)

    inner, n_in = region(b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3])
    outer, n_out = region(b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                          b[:, 0] + 1.5 * b[:, 2], b[:, 1] + 1.5 * b[:, 3])
    ring = (outer - inner) / np.maximum(n_out - n_in, 1)
    contrast = np.linalg.norm(inner / n_in - ring, axis=1)
    chosen: list[np.ndarray] = []
    for k in np.argsort(-contrast):
        if all(box_iou(b[k], c) <= 0.3 for c in chosen):
            chosen.append(b[k])
        if len(chosen) >= keep:
            break
    return chosen


def motion_candidates(a: np.ndarray, b: np.ndarray, min_side: int) -> list[np.ndarray]:
    """Boxes of blobs that changed between two frames (moving objects under a fixed camera)."""
    diff = cv2.absdiff(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
    diff = cv2.GaussianBlur(diff, (5, 5), 0)
    _, mask = cv2.threshold(diff, 25, 255, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    h, w = a.shape[:2]
    boxes = []
    for x, y, bw, bh, _area in stats[1:count]:
        # A blob covering most of the frame is camera motion, not an object.
        if min(bw, bh) >= min_side and bw * bh < 0.25 * w * h:
            boxes.append(np.array([x, y, bw, bh], dtype=np.float64))
    return boxes


def score_candidate(teacher: Any, frame: np.ndarray, later: np.ndarray, box: np.ndarray
                    ) -> tuple[float, float, bool]:
    """``(peak, distinct, moved)`` of the teacher's map: template at ``box`` in ``frame``, search there in
    ``later``; ``moved``: the peak is off the centre cell (the object moved by a quarter of its size or more)."""
    from siammixer_ros.train.data import SEARCH_SIZE, TEMPLATE_SIZE, box_center, context_side, crop_linear, warp_crop

    side = context_side(box[2], box[3])
    center = box_center(box)
    pad = tuple(cv2.mean(frame)[:3])
    template = warp_crop(frame, center, crop_linear(side, TEMPLATE_SIZE), TEMPLATE_SIZE, pad)
    search = warp_crop(later, center, crop_linear(2 * side, SEARCH_SIZE), SEARCH_SIZE, pad)
    logits, _, _ = teacher.full_outputs(template, search)
    prob = 1.0 / (1.0 + np.exp(-logits))
    i, j = np.unravel_index(int(np.argmax(prob)), prob.shape)
    far = prob.copy()
    far[max(0, i - 2):i + 3, max(0, j - 2):j + 3] = 0.0
    peak = float(prob[i, j])
    centre = prob.shape[0] // 2  # cell 8 sits at the crop centre (teacher.py)
    return peak, peak - float(far.max()), max(abs(i - centre), abs(j - centre)) >= 1


def select_start_boxes(teacher: Any, frame: np.ndarray, later: np.ndarray, params: MiningParams
                       ) -> list[tuple[np.ndarray, float, float]]:
    h, w = frame.shape[:2]
    candidates = contrast_shortlist(frame, grid_candidates(h, w, params.min_side), params.shortlist)
    candidates += motion_candidates(frame, later, params.min_side)[:20]
    candidates = [b for b in candidates if away_from_border(b, h, w, params.border)]
    scored = []
    for box in candidates:
        peak, distinct, moved = score_candidate(teacher, frame, later, box)
        if peak >= params.min_peak and distinct >= params.min_distinct:
            scored.append((box, peak, distinct, moved))
    # Moving ones first (the track must move), then by the teacher's confidence times distinctiveness.
    scored.sort(key=lambda c: (not c[3], -c[1] * c[2]))
    chosen: list[tuple[np.ndarray, float, float]] = []
    for cand in scored:
        if all(box_iou(cand[0], c[0]) <= 0.1 for c in chosen):
            chosen.append(cand[:3])
        if len(chosen) >= params.per_start:
            break
    return chosen


def refine_box(tracker: Any, frame: np.ndarray, box: np.ndarray, repeats: int = 3) -> np.ndarray:
    """The teacher's own box for a candidate: updates on the same frame let its box regression fit the object
    (a grid box is not fitted to anything, and a backward track ends on the object's box, not the grid's)."""
    tracker.init(frame, tuple(float(v) for v in box))
    for _ in range(repeats):
        box, _ = tracker.update(frame)
    return np.asarray(box, dtype=np.float64)


def run_tracker(tracker: Any, frames: list[np.ndarray], box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and scores (N,) of ``tracker`` over ``frames``, initialised on ``frames[0]`` at ``box``."""
    tracker.init(frames[0], tuple(float(v) for v in box))
    boxes, scores = [np.asarray(box, dtype=np.float64)], [1.0]
    for frame in frames[1:]:
        b, s = tracker.update(frame)
        boxes.append(np.asarray(b, dtype=np.float64))
        scores.append(float(s))
    return np.array(boxes), np.array(scores)


def camera_motion(frames: list[np.ndarray], width: int = 320) -> np.ndarray:
    """(N, 2) displacement of the scene's content since ``frames[0]`` (pixels): chained frame-to-frame phase
    correlation on grey frames shrunk by a whole factor to about ``width`` px. A pan or sweep moves everything
    by about this much (within ~10 % of the pan's speed on a synthetic pan: fractional shifts bias it)."""
    factor = max(1, round(frames[0].shape[1] / width))
    small = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    if factor > 1:
        small = [cv2.resize(f, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA) for f in small]
    window = cv2.createHanningWindow(small[0].shape[::-1], cv2.CV_32F)
    steps = [np.zeros(2)] + [np.array(cv2.phaseCorrelate(a, b, window)[0]) * factor
                             for a, b in zip(small[:-1], small[1:], strict=True)]
    return np.cumsum(np.array(steps), axis=0)


def first_cut(frames: list[np.ndarray], threshold: float = 0.5) -> int:
    """Index of the first frame after a scene cut, or ``len(frames)``: a track must not continue across a cut
    (trailers, films). A cut: the correlation of consecutive 64x36 grey thumbnails falls below ``threshold``
    (0.09 at Megamind's cut at frame 98; >= 0.98 within the sweeping and driving clips)."""
    thumbs = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (64, 36), interpolation=cv2.INTER_AREA)
              .astype(np.float64).ravel() for f in frames]
    for i in range(1, len(thumbs)):
        a, b = thumbs[i - 1] - thumbs[i - 1].mean(), thumbs[i] - thumbs[i].mean()
        denominator = math.sqrt(float(a @ a) * float(b @ b))
        if denominator > 0 and float(a @ b) / denominator < threshold:
            return i
    return len(frames)


def check_track(forward: np.ndarray, scores: np.ndarray, backward: np.ndarray, params: MiningParams,
                camera: np.ndarray | None = None) -> tuple[bool, dict[str, float]]:
    """Forward-backward consistency; ``backward`` is in forward frame order (its last box is the start frame).

    ``camera``: (N, 2) scene displacement since the first frame (:func:`camera_motion`); the box must move
    relative to it, so that a patch of background carried along by a pan does not count as a moving object.
    """
    ious = np.array([box_iou(f, b) for f, b in zip(forward, backward, strict=True)])
    centres = forward[:, :2] + forward[:, 2:] / 2
    size = math.sqrt(forward[0, 2] * forward[0, 3])
    motion = np.linalg.norm(centres - centres[0], axis=1).max() / size
    if camera is not None:
        # Both in the image and in the scene: a static patch has no image motion whatever the (noisy) camera
        # estimate says, and background under a pan has no motion relative to the camera.
        relative = centres - camera[:len(centres)]
        motion = min(motion, np.linalg.norm(relative - relative[0], axis=1).max() / size)
    stats = {"fb_iou": float(ious[0]), "mean_iou": float(ious.mean()),
             "score_p10": float(np.percentile(scores[1:], 10)), "motion": float(motion)}
    ok = stats["fb_iou"] >= params.min_fb_iou and stats["mean_iou"] >= params.min_mean_iou \
        and stats["score_p10"] >= params.min_score and stats["motion"] >= params.min_motion
    return ok, stats


def read_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise RuntimeError(f"cannot open video {video}")
    frames, index, last = {}, 0, max(wanted) if wanted else -1
    try:
        while index <= last:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if index in wanted:
                frames[index] = frame
            index += 1
    finally:
        capture.release()
    return frames


def frame_count(video: Path) -> tuple[int, float]:
    """Frames that actually decode (the container's count can be off by a few), and the frame rate."""
    capture = cv2.VideoCapture(str(video))
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count, fps


def segment_starts(n: int, fps: float, params: MiningParams) -> list[tuple[int, int]]:
    """``(start, length)`` of up to ``starts`` segments spread over ``n`` frames (``probe`` frames to spare)."""
    length = min(max(20, min(params.length, round(params.seconds * fps))), n - params.probe)
    if length < 10:
        return []
    last = n - max(length, params.probe + 1)
    count = max(1, min(params.starts, last // max(1, length // 2) + 1))
    return [(int(round(s)), length) for s in np.linspace(0, last, count)]


def mine_clip(video: Path, teacher: Any, make_tracker: Any, second: Any | None, params: MiningParams,
              progress: Any | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    n, fps = frame_count(video)
    segments = segment_starts(n, fps, params)
    wanted = {i for s, length in segments for i in range(s, s + max(length, params.probe + 1))}
    frames = read_frames(video, wanted)
    tracks, tried = [], 0
    for start, length in segments:
        seg = [frames[i] for i in range(start, start + length)]
        cut = first_cut(seg)
        if cut < 10:
            if progress is not None:
                progress.update(1)
            continue
        seg = seg[:cut]
        camera = camera_motion(seg)
        for box, peak, distinct in select_start_boxes(teacher, frames[start], frames[start + params.probe], params):
            tried += 1
            box = refine_box(make_tracker(), seg[0], box)
            forward, scores = run_tracker(make_tracker(), seg, box)
            backward, _ = run_tracker(make_tracker(), seg[::-1], forward[-1])
            ok, stats = check_track(forward, scores, backward[::-1], params, camera)
            half = len(seg) // 2
            if not ok and half >= 10:  # the first half may hold where the whole did not
                forward, scores = forward[:half], scores[:half]
                backward, _ = run_tracker(make_tracker(), seg[:half][::-1], forward[-1])
                ok, stats = check_track(forward, scores, backward[::-1], params, camera)
            if ok and second is not None:
                other, _ = run_tracker(second(), seg[:len(forward)], box)
                stats["second_mean_iou"] = float(np.mean([box_iou(a, b) for a, b in zip(forward, other, strict=True)]))
                ok = stats["second_mean_iou"] >= params.min_mean_iou
            if ok:
                tracks.append({"clip": video.stem, "start": start, "peak": round(peak, 3),
                               "distinct": round(distinct, 3), **{k: round(v, 3) for k, v in stats.items()},
                               "boxes": [[round(float(v), 1) for v in b] for b in forward]})
            if progress is not None:
                progress.set_postfix_str(f"{video.stem}: kept {len(tracks)}/{tried}")
        if progress is not None:
            progress.update(1)
    summary = {"frames": n, "segments": len(segments), "tracks_tried": tried, "tracks_kept": len(tracks),
               "frames_kept": sum(len(t["boxes"]) for t in tracks)}
    return tracks, summary


def write_tracks(path: Path, header: dict[str, Any], tracks: list[dict[str, Any]]) -> None:
    """JSON with one track per line (readable diffs; the file is committed)."""
    lines = ["{", f'"format": {json.dumps(FORMAT)},']
    for key, value in header.items():
        lines.append(f"{json.dumps(key)}: {json.dumps(value)},")
    lines.append('"tracks": [')
    lines.append(",\n".join(json.dumps(t) for t in tracks))
    lines.append("]}")
    Path(path).write_text("\n".join(lines) + "\n")


def load_tracks(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pseudo-track file at {path} "
                                f"(python -m siammixer_ros.train.pseudo_tracks --out {path})")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    return data


def load_track_sequences(path: Path, data_dir: Path, cache_dir: Path) -> list[CachedSequence]:
    """One :class:`CachedSequence` per track (named ``<clip>#<k>``, boxes NaN outside the track), its clip's
    frames decoded into ``<cache_dir>/unlabeled/<clip>/`` the first time (only the frames tracks use)."""
    data = load_tracks(path)
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for track in data["tracks"]:
        by_clip.setdefault(track["clip"], []).append(track)
    if not by_clip:
        raise ValueError(f"{path} holds no track")
    result = []
    for clip, tracks in sorted(by_clip.items()):
        video = Path(data_dir) / "unlabeled_videos" / f"{clip}.mp4"
        n = int(data["clips"][clip]["frames"])
        wanted = sorted({t["start"] + i for t in tracks for i in range(len(t["boxes"]))})
        out = Path(cache_dir) / "unlabeled" / clip
        _cache_frames(video, out, wanted)
        for k, t in enumerate(tracks):
            boxes = np.full((n, 4), np.nan)
            boxes[t["start"]:t["start"] + len(t["boxes"])] = np.asarray(t["boxes"], dtype=np.float64)
            result.append(CachedSequence(f"{clip}#{k}", out, boxes))
    return result


def _cache_frames(video: Path, out: Path, wanted: list[int]) -> None:
    stamp = {"size": video.stat().st_size if video.is_file() else None,
             "frames": hashlib.sha1(json.dumps(wanted).encode()).hexdigest()}
    done = out / "done.json"
    if done.is_file():
        try:
            if json.loads(done.read_text()) == stamp:
                return
        except json.JSONDecodeError:
            pass
    if not video.is_file():
        raise FileNotFoundError(f"unlabeled clip {video} not found (set --data or $SIAMMIXER_DATA)")
    out.mkdir(parents=True, exist_ok=True)
    frames = read_frames(video, set(wanted))
    missing = sorted(set(wanted) - set(frames))
    if missing:
        raise RuntimeError(f"{video} ends before frame {missing[0]} that a pseudo track uses")
    for index, frame in frames.items():
        cv2.imwrite(str(out / f"{index:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    done.write_text(json.dumps(stamp))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NanoTrack v2 pseudo-tracks on the unlabeled clips, kept when "
                                                 "they pass a forward-backward check (boxes only, JSON).")
    parser.add_argument("--out", type=Path, required=True,
                        help="output JSON (the committed one: siammixer_ros/train/pseudo_tracks.json)")
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="the shared data folder")
    parser.add_argument("--peers", type=Path, default=None, help="peer model folder (default ../shared/peers)")
    parser.add_argument("--clips", nargs="*", help="clip names (default: every unlabeled_videos/*.mp4)")
    parser.add_argument("--second-opinion", action="store_true", help="LightTrack-Mobile must agree too")
    parser.add_argument("--threads", type=int, default=1)
    for f in MiningParams.__dataclass_fields__.values():
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from siammixer_ros.eval.peers.nanotrack import NanoTrack
    from siammixer_ros.eval.trackers import DEFAULT_PEERS_DIR
    from siammixer_ros.train.teacher import NanoTrackTeacher

    cv2.setNumThreads(1)
    peers = args.peers or DEFAULT_PEERS_DIR
    params = MiningParams(**{k: getattr(args, k) for k in MiningParams.__dataclass_fields__})
    teacher = NanoTrackTeacher(peers / "nanotrack_v2", threads=args.threads)

    def make_tracker() -> NanoTrack:
        return NanoTrack(peers, "v2", threads=args.threads)
    second = None
    if args.second_opinion:
        from siammixer_ros.eval.peers.lighttrack import LightTrack

        def second() -> LightTrack:
            return LightTrack(peers, threads=args.threads)
    clip_dir = args.data / "unlabeled_videos"
    videos = sorted(clip_dir.glob("*.mp4"))
    if args.clips:
        videos = [v for v in videos if v.stem in args.clips]
    if not videos:
        print(f"no clips found in {clip_dir}", file=sys.stderr)
        return 2
    total = sum(len(segment_starts(*frame_count(v), params)) for v in videos)
    tracks, clips = [], {}
    t0 = time.time()
    with tqdm(total=total, unit="segment", file=sys.stderr) as progress:
        for video in videos:
            clip_tracks, summary = mine_clip(video, teacher, make_tracker, second, params, progress)
            tracks += clip_tracks
            clips[video.stem] = summary
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = {"generated": time.strftime("%Y-%m-%d", time.gmtime()),
              "command": f"python -m siammixer_ros.train.pseudo_tracks {command}",
              "teacher": "NanoTrack v2 (siammixer_ros.eval.peers.nanotrack), start boxes scored by NanoTrackTeacher",
              "second_opinion": "LightTrack-Mobile" if args.second_opinion else None,
              "params": asdict(params), "seconds": round(time.time() - t0), "clips": clips}
    write_tracks(args.out, header, tracks)
    print(f"{len(tracks)} tracks, {sum(len(t['boxes']) for t in tracks)} frames kept -> {args.out}")
    for name, s in clips.items():
        print(f"  {name}: {s['tracks_kept']}/{s['tracks_tried']} tracks, {s['frames_kept']} frames "
              f"(clip {s['frames']} frames, {s['segments']} segments)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
