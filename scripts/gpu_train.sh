#!/usr/bin/env bash
# The long run on a GPU, when the `device` tool lends a machine to the task (docs/training.md, "GPU path").
# That machine gets the working tree plus carried ignored folders (64 MiB at most), has python3 3.12 with
# torch+CUDA, onnxruntime and OpenCV, and reaches nothing else: no ../shared, no pip. So:
#
#   1. here:    scripts/gpu_train.sh pack                 -> gpu_pack/ (ignored, <= 55 MiB): frames of the training and
#                                                            selection sequences, still images, the teacher, yaml+tqdm
#   2. device:  run(command="scripts/gpu_train.sh train 8", carry=["gpu_pack"], timeout_s=570)
#               resumes training/siammixer_xs_0.2 on cuda for 8 minutes; its state comes back under $OUT/run
#   3. here:    scripts/gpu_train.sh fetch <files_at>     -> copies that state into training/siammixer_xs_0.2
#   then the selection-split check on the CPU: python -m siammixer_ros.train.validate training/siammixer_xs_0.2/checkpoints/last.pt
#
# Environment: RUN (default training/siammixer_xs_0.2), CONFIG (default siammixer_ros/train/configs/xs_02.yaml),
# WORKERS (data worker processes on the device, default: cores - 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN=${RUN:-training/siammixer_xs_0.2}
CONFIG=${CONFIG:-siammixer_ros/train/configs/xs_02.yaml}
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && PY=.venv/bin/python

case "${1:-}" in
    pack)
        rm -rf gpu_pack
        "$PY" -m siammixer_ros.train.pack --config "$CONFIG" --out gpu_pack --max-mib 55
        du -sh gpu_pack
        ;;
    train)
        minutes=${2:-8}
        [[ -f gpu_pack/manifest.json ]] || { echo "gpu_pack/ missing: run 'scripts/gpu_train.sh pack' here first" >&2; exit 2; }
        [[ -f "$RUN/checkpoints/last.pt" ]] || { echo "$RUN/checkpoints/last.pt missing" >&2; exit 2; }
        out=${OUT:-/tmp/gpu_out}
        mkdir -p "$out/run/checkpoints"
        cp "$RUN"/*.csv "$RUN"/config.yaml "$out/run/" 2>/dev/null || true
        cp "$RUN"/checkpoints/last.pt "$out/run/checkpoints/"
        [[ -f "$RUN/checkpoints/best.pt" ]] && cp "$RUN/checkpoints/best.pt" "$out/run/checkpoints/"
        workers=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
        nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
        # Pair validation every 64,000 pairs on the packed selection frames; the tracking validation needs whole
        # sequences, so it runs back here on the CPU (train.validate) on what comes back.
        PYTHONPATH="$PWD:$PWD/gpu_pack/site" "$PY" -m siammixer_ros.train.cli --out "$out/run" --resume \
            --device cuda --set pack_dir=gpu_pack --set data_workers="$workers" --set threads=2 \
            --set schedule.tracking_val_every_pairs=0 --set schedule.val_every_pairs=64000 \
            --max-minutes "$minutes" --no-progress --note "GPU segment: $workers data workers, packed frames"
        rm -f "$out"/run/checkpoints/pairs_*.pt
        ls -la "$out/run" "$out/run/checkpoints"
        ;;
    fetch)
        src=${2:?usage: scripts/gpu_train.sh fetch <files_at folder>}
        src=$(find "$src" -type d -name run -path "*run" | head -1)
        [[ -n "$src" && -f "$src/checkpoints/last.pt" ]] || { echo "no run state under ${2}" >&2; exit 2; }
        cp "$src"/*.csv "$src"/config.yaml "$RUN/"
        cp "$src"/checkpoints/*.pt "$RUN/checkpoints/"
        tail -n 2 "$RUN/segments.csv"
        ;;
    *)
        sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
