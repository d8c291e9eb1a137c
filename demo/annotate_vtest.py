"""Cut the demo clip from OpenCV's vtest sample and annotate the target (run once; the results are shipped).

    /work/devvenv/bin/python demo/annotate_vtest.py ../shared/data/unlabeled_videos/vtest.mp4

Writes demo/vtest_clip.mp4 (frames FIRST..LAST of vtest, 640x480, 10 fps, MPEG-4 Part 2),
demo/vtest_clip_groundtruth.txt (x,y,w,h per clip frame) and demo/vtest_clip_annotation_check.jpg (every
clip frame cropped around its box, for the visual check). The procedure is described in demo/ANNOTATION.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
FIRST, LAST = 580, 719  # vtest frames of the clip (inclusive)
# The target (woman with fair hair and a black coat) in frame FIRST, picked by eye; later frames follow her blob.
SEED_BOX = (155, 358, 57, 122)
DIFF_THRESHOLD = 35  # max-channel |frame - background| above which a pixel is foreground
MIN_AREA = 150  # px; smaller components are noise
MAX_JUMP = 40.0  # px; a component further than this from the previous box is not the target
# Clip frames whose target blob merged with another person's (checked on zoomed crops with a 10-px grid):
# boxes read by hand from those crops. Clip index -> (x, y, w, h).
MANUAL_BOXES = {
    4: (183, 354, 43, 126),  # vtest 584: the feet of a man walking above touch her head
    5: (186, 354, 48, 126),  # vtest 585: same
}


def read_video(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise SystemExit(f"cannot read {path}")
    return np.stack(frames)


def foreground(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    mask = (cv2.absdiff(frame, background).max(axis=2) > DIFF_THRESHOLD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))


def follow_blob(frames: np.ndarray, background: np.ndarray, seed: tuple[int, int, int, int]) -> list[tuple]:
    """Per frame, the bounding box of the foreground component nearest the previous box."""
    boxes, previous = [], seed
    for index, frame in enumerate(frames):
        if index in MANUAL_BOXES:
            previous = MANUAL_BOXES[index]
            boxes.append(previous)
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats(foreground(frame, background))
        components = [tuple(int(v) for v in stats[i, :4]) for i in range(1, count) if stats[i, 4] > MIN_AREA]
        centre = np.array([previous[0] + previous[2] / 2, previous[1] + previous[3] / 2])

        def cost(box: tuple, centre: np.ndarray = centre, height: float = previous[3]) -> float:
            return float(np.linalg.norm(np.array([box[0] + box[2] / 2, box[1] + box[3] / 2]) - centre)
                         + 0.5 * abs(box[3] - height))

        best = min(components, key=cost)
        jump = np.linalg.norm(np.array([best[0] + best[2] / 2, best[1] + best[3] / 2]) - centre)
        if jump > MAX_JUMP:
            raise SystemExit(f"clip frame {index}: no foreground component near the target (nearest {jump:.0f} px "
                             "away): read its box by hand into MANUAL_BOXES")
        boxes.append(best)
        previous = best
    return boxes


def check_sheet(frames: np.ndarray, boxes: list[tuple], columns: int = 14, size: int = 96) -> np.ndarray:
    tiles = []
    for index, (frame, (x, y, w, h)) in enumerate(zip(frames, boxes, strict=True)):
        cx, cy, half = x + w // 2, y + h // 2, 80
        padded = cv2.copyMakeBorder(frame, half, half, half, half, cv2.BORDER_CONSTANT)
        crop = padded[cy:cy + 2 * half, cx:cx + 2 * half].copy()
        cv2.rectangle(crop, (x - cx + half, y - cy + half), (x + w - cx + half, y + h - cy + half), (0, 0, 255), 1)
        crop = cv2.resize(crop, (size, size))
        cv2.putText(crop, str(index), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        tiles.append(crop)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vtest", type=Path, help="vtest.mp4 (../shared/data/unlabeled_videos/vtest.mp4)")
    args = parser.parse_args()
    frames = read_video(args.vtest)
    # Static camera: the per-pixel median over the whole video (every 3rd frame) is the empty scene.
    background = np.median(frames[::3], axis=0).astype(np.uint8)
    clip = frames[FIRST:LAST + 1]
    boxes = follow_blob(clip, background, SEED_BOX)
    writer = cv2.VideoWriter(str(HERE / "vtest_clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0,
                             (clip.shape[2], clip.shape[1]))
    for frame in clip:
        writer.write(frame)
    writer.release()
    (HERE / "vtest_clip_groundtruth.txt").write_text("".join(f"{x},{y},{w},{h}\n" for x, y, w, h in boxes))
    cv2.imwrite(str(HERE / "vtest_clip_annotation_check.jpg"), check_sheet(clip, boxes), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"wrote {len(boxes)} frames and boxes to {HERE}")


if __name__ == "__main__":
    main()
