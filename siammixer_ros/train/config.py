"""Training configuration: nested dataclasses read from / written to YAML.

Unknown keys are an error (a typo must not silently train with a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siammixer_ros.train.data import AugmentConfig, PairConfig


@dataclass
class LabelConfig:
    pos_radius: float = 16.0   # px in the search crop (SiamFC: R = 16)
    neg_radius: float = 16.0   # cells between pos_radius and neg_radius are ignored
    # > 0: a positive cell's label is the IoU of the target's size in the search crop with the size the crop's
    # scale stands for, to this power (soft labels: a crop at the wrong scale is a worse answer); 0: labels 1.
    size_iou_power: float = 0.0


@dataclass
class LossConfig:
    triplet_weight: float = 1.0
    distill_weight: float = 0.0           # 0 disables the teacher
    distill_mode: str = "bce"             # "bce" (per cell) or "kl" (spatial distribution)
    distill_temperature: float = 1.0
    distill_skip_kinds: list[str] = field(default_factory=list)  # pair kinds the teacher's map does not supervise
    # False: the teacher's map does not supervise the cells labelled positive (so that size-aware labels there are
    # not pulled back towards the teacher's scale-blind probabilities); True: every cell, as before.
    distill_labelled_positives: bool = True
    feature_distill_weight: float = 0.0   # teacher backbone features through a training-only 1x1 adapter
    teacher_dir: str | None = None        # default ../shared/peers/nanotrack_v2
    # Weight of the scale-ranking loss on the pairs drawn with scale crops (PairConfig.scale_rank_prob); 0: off.
    scale_rank_weight: float = 0.0
    box_weight: float = 0.0               # box branch's IoU loss (needs box_head: true); 0 = no branch loss
    box_loss: str = "giou"                # "giou" or "iou" (linear IoU)
    box_teacher_min_logit: float = 0.0    # pseudo pairs: cells where the teacher's foreground logit is above this


@dataclass
class OptimConfig:
    name: str = "adamw"                   # "adamw" or "sgd"
    lr: float = 2e-3
    min_lr_ratio: float = 0.02            # cosine decays to lr * min_lr_ratio
    warmup_pairs: int = 3000
    weight_decay: float = 1e-4
    momentum: float = 0.9                 # SGD only
    grad_clip: float = 10.0               # max gradient norm of the backbone (the head is not clipped)
    head_lr_mult: float = 0.01            # LR factor of the head's scalar scale and bias
    batch_size: int = 32


@dataclass
class ScheduleConfig:
    total_pairs: int = 150_000            # the cosine schedule's length; training stops there
    checkpoint_every_s: float = 300.0
    val_every_pairs: int = 6_400
    tracking_val_every_pairs: int = 25_600  # 0 disables the tracking validation


@dataclass
class ValConfig:
    pairs: int = 256                      # fixed validation pairs from the validation split
    seed: int = 12345
    select_metric: str = "val_peak_hit"   # higher is better; "val_track_auc" once tracking validation runs
    # Which sequences the in-training validation (pairs, tracking, checkpoint selection) uses: "validation" (the
    # README's validation split; runs before 0.2) or "selection" (training sequences held back from training,
    # SELECTION_SEQUENCES in siammixer_ros/eval/datasets.py), which keeps the validation split for reporting only.
    split: str = "validation"
    tracking_sequences: list[str] | None = None  # None: every sequence of that split
    tracking_max_frames: int = 60         # first frames of each sequence; 0 = every frame
    tracking_backend: str = "builtin"     # "builtin" (torch SiamFC) or "tracker" (core tracker on an export)
    # Passes per sequence from evenly spread annotated frames (temporal restarts, OTB's TRE); 1 = one pass from the
    # first frame. More passes: one early loss on a short split no longer decides best.pt (docs/training.md).
    tracking_starts: int = 1


@dataclass
class TrainConfig:
    variant: str = "xs"
    box_head: bool = False                # the box regression branch (docs/network.md); off = the paper's network
    seed: int = 0
    threads: int = 1
    channels_last: bool = True
    prefetch: bool = True                 # build the next batch in a thread while this one trains
    data_workers: int = 0                 # >0: batches built in this many processes (a GPU machine's cores)
    data_dir: str | None = None           # default ../shared/data beside the repository
    cache_dir: str | None = None          # default $SIAMMIXER_CACHE or ~/.cache/siammixer_ros
    val_sequences: list[str] | None = None  # default: the shared README's validation split
    train_sequences: list[str] | None = None  # default: the training split (minus the selection split if used)
    device: str = "cpu"                   # "cuda" on a GPU machine; data and teacher stay on the CPU
    pack_dir: str | None = None           # a data pack (siammixer_ros/train/pack.py) instead of data_dir + cache
    autocast_bf16: bool = False           # bfloat16 autocast of the network's forward pass (CPU with avx512_bf16, GPU)
    pairs: PairConfig = field(default_factory=PairConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    val: ValConfig = field(default_factory=ValConfig)
    init_checkpoint: str | None = None    # start from these weights (not a resume: fresh optimiser/step)


def _build(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config keys in {where or 'top level'}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _build(type(default), value, f"{where}.{name}".lstrip("."))
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any] | None) -> TrainConfig:
    return _build(TrainConfig, values, "")


def merge_config_dicts(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: nested mappings merge key by key; any other value (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_dict(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The config file's values with its ``base:`` chain resolved (``base`` is relative to the file's folder).

    A config then holds only its differences from the recipe it starts from; cycles are an error.
    """
    path = Path(path).resolve()
    if not path.is_file():
        where = f" (base of {_chain[-1]})" if _chain else ""
        raise FileNotFoundError(f"config file not found: {path}{where}")
    if path in _chain:
        raise ValueError(f"config base cycle: {' -> '.join(str(p) for p in (*_chain, path))}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config is a mapping of keys, not {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'base' must be a file name (relative to the config's folder)")
    return merge_config_dicts(read_config_dict(path.parent / base, (*_chain, path)), values)


def apply_overrides(cfg: TrainConfig, assignments: list[str]) -> TrainConfig:
    """``cfg`` with ``dotted.key=value`` assignments applied (values parsed as YAML; unknown keys are an error)."""
    values = config_to_dict(cfg)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects dotted.key=value, got {assignment!r}")
        override: dict[str, Any] = {}
        node = override
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
        values = merge_config_dicts(values, override)
    return config_from_dict(values)


def load_config(path: str | Path) -> TrainConfig:
    return config_from_dict(read_config_dict(path))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value
    return convert(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


__all__ = ["AugmentConfig", "LabelConfig", "LossConfig", "OptimConfig", "PairConfig", "ScheduleConfig",
           "TrainConfig", "ValConfig", "apply_overrides", "config_from_dict", "config_to_dict", "load_config",
           "merge_config_dicts", "read_config_dict", "save_config"]
