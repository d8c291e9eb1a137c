"""ONNX Runtime execution of a SiamMixer model file, with patch-based inference of the search branch.

Modes of the search branch (all give the same features, to float rounding):

- ``"whole"``: the ``search`` part on whole images (no patching) — the fastest mode on CPU, the default;
- ``"batched"``: every 16x16-pixel patch (with halo) of every search image in one ``search_patch`` call,
  then ``search_global`` on the assembled grid (fastest of the patch modes, but the halo makes it
  compute ~2x the shallow layers and hold more memory than whole-image inference);
- ``"row"``: one row of patches per ``search_patch`` call (a row's worth of shallow feature memory);
- ``"patch"``: one patch per call (the paper's patch-by-patch inference, smallest feature memory).

Patches are cut with numpy: the images are padded once (halo_before / halo_after zeros), then a
strided view gives every patch without copying until the final contiguous batch. The mask that goes
with each patch is 1 inside the image and 0 in the padding, so the graph reproduces whole-image zero
padding exactly (see siammixer_ros/model/network.py).

No torch here: numpy + onnxruntime only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siammixer_ros.core.model_file import (
    PART_HEAD,
    PART_SEARCH,
    PART_SEARCH_GLOBAL,
    PART_SEARCH_PATCH,
    PART_SEARCH_PATCH_INTERIOR,
    PART_TEMPLATE,
    ModelError,
    ModelInfo,
    read_model_file,
)

MODES = ("whole", "batched", "row", "patch")
# Measured (benchmarks/network.md): whole-image inference is the fastest on CPU; "patch" and "row"
# are the low-memory modes (the paper's patch-by-patch inference).
DEFAULT_MODE = "whole"


@dataclass(frozen=True)
class RuntimeOptions:
    """How the model is run.

    mode: one of :data:`MODES`. intra_op_threads: onnxruntime intra-op threads (0 = onnxruntime's
    default). spinning: let idle worker threads spin (lower latency, burns CPU between frames).
    providers: execution providers in order of preference; providers that this onnxruntime lacks are
    skipped (CPU is always appended last), the ones actually used are reported by the runtime.
    graph_optimization: "all", "extended", "basic" or "disabled".
    """

    mode: str = DEFAULT_MODE
    intra_op_threads: int = 1
    spinning: bool = False
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    graph_optimization: str = "all"
    # Use the model's unmasked interior-patch part when it has one (same results, faster patch modes).
    use_interior_part: bool = True
    # onnxruntime's CPU memory arena and memory patterns. Off: 33-36 MiB less resident memory for the tracker with the
    # XS model, at the same speed within noise (measured here: 241/242 MiB and 14.1/14.7 ms a 3-scale update with
    # them, 205/209 MiB and 13.8/16.0 ms without, two runs each); the buffers are small and allocated per call anyway.
    cpu_memory_arena: bool = False
    # Most search images per onnxruntime call in mode "whole" (0: the whole batch in one call); the results are the
    # same (each crop's features depend on that crop alone). One at a time by default: onnxruntime's intermediate
    # buffers (malloc'd per call, see cpu_memory_arena) then hold one crop's feature maps instead of three, and glibc
    # keeps the peak resident. Measured (siammixer_ros.tools.bench_tracker_memory, shipped XS model, 300 updates of 3
    # scales on 640x480, load average 3.2): 12 MiB resident for the updates against 37, peak 135 MiB against 172,
    # 9 page faults an update against 1,020, and no more CPU (26-28 ms against 31-32 under that load).
    search_batch: int = 1
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def patch_grid_size(search_size: int, patch_size: int) -> int:
    if patch_size <= 0 or search_size % patch_size:
        raise ModelError(f"search size {search_size} is not a multiple of the patch size {patch_size}")
    return search_size // patch_size


def make_patches(images: np.ndarray, patch_size: int, halo_before: int,
                 halo_after: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut (B,3,S,S) images into patches with halo.

    Returns ``patches`` (B*G*G,3,Q,Q) float32 and ``masks`` (B*G*G,1,Q,Q) float32, ordered image by
    image, row by row; Q = patch_size + halo_before + halo_after, G = S // patch_size.
    """
    b, c, h, w = images.shape
    if h != w:
        raise ValueError(f"search images must be square, got {h}x{w}")
    g = patch_grid_size(h, patch_size)
    q = patch_size + halo_before + halo_after
    pad = ((0, 0), (0, 0), (halo_before, halo_after), (halo_before, halo_after))
    padded = np.pad(np.asarray(images, dtype=np.float32), pad)
    view = np.lib.stride_tricks.sliding_window_view(padded, (q, q), axis=(2, 3))[:, :, ::patch_size, ::patch_size]
    # view: (B,C,G,G,Q,Q) -> (B,G,G,C,Q,Q)
    patches = np.ascontiguousarray(view.transpose(0, 2, 3, 1, 4, 5)).reshape(b * g * g, c, q, q)
    masks = patch_masks(h, patch_size, halo_before, halo_after)
    masks = np.broadcast_to(masks[None], (b,) + masks.shape).reshape(b * g * g, 1, q, q)
    return patches, np.ascontiguousarray(masks)


def patch_masks(search_size: int, patch_size: int, halo_before: int, halo_after: int) -> np.ndarray:
    """(G*G,1,Q,Q) float32: 1 where a patch's pixel (halo included) lies inside the image."""
    g = patch_grid_size(search_size, patch_size)
    q = patch_size + halo_before + halo_after
    inside = np.pad(np.ones((search_size, search_size), np.float32), ((halo_before, halo_after),) * 2)
    view = np.lib.stride_tricks.sliding_window_view(inside, (q, q))[::patch_size, ::patch_size]
    return np.ascontiguousarray(view).reshape(g * g, 1, q, q)


def assemble_grid(patch_features: np.ndarray, batch: int, grid: int) -> np.ndarray:
    """(B*G*G,C,g,g) patch outputs -> (B,C,G*g,G*g) feature map."""
    n, c, gh, gw = patch_features.shape
    if n != batch * grid * grid:
        raise ValueError(f"expected {batch * grid * grid} patch outputs, got {n}")
    x = patch_features.reshape(batch, grid, grid, c, gh, gw).transpose(0, 3, 1, 4, 2, 5)
    return np.ascontiguousarray(x).reshape(batch, c, grid * gh, grid * gw)


_OPT_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


def session_options(options: RuntimeOptions) -> Any:
    """onnxruntime SessionOptions for ``options`` (threads, spinning, graph optimisation)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if options.graph_optimization not in _OPT_LEVELS:
        raise ModelError(f"unknown graph_optimization {options.graph_optimization!r}; "
                         f"choose one of {', '.join(_OPT_LEVELS)}")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[options.graph_optimization])
    if options.intra_op_threads < 0:
        raise ModelError(f"intra_op_threads must be >= 0, got {options.intra_op_threads}")
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    so.enable_cpu_mem_arena = options.cpu_memory_arena
    so.enable_mem_pattern = options.cpu_memory_arena
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if options.spinning else "0")
    return so


def resolve_providers(requested: tuple[str, ...] | list[str], provider_options: dict[str, dict[str, Any]] | None = None
                      ) -> list[Any]:
    """The requested providers this onnxruntime has, in order, CPU last (always available)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    out: list[Any] = []
    for name in requested:
        if name in available and name != "CPUExecutionProvider":
            opts = (provider_options or {}).get(name)
            out.append((name, opts) if opts else name)
    out.append("CPUExecutionProvider")
    return out


class SiamMixerRuntime:
    """Runs a SiamMixer model file with onnxruntime (see the module docstring for the modes).

    Raises :class:`ModelError` with a clear message for a missing/invalid model or an unsupported mode.
    """

    def __init__(self, model_path: str | Path, options: RuntimeOptions | None = None) -> None:
        import onnxruntime as ort

        self.options = options or RuntimeOptions()
        if self.options.mode not in MODES:
            raise ModelError(f"unknown runtime mode {self.options.mode!r}; choose one of {', '.join(MODES)}")
        if self.options.search_batch < 0:
            raise ModelError(f"search_batch must be >= 0 (0: one call), got {self.options.search_batch}")
        self.model_path = Path(model_path)
        self.info: ModelInfo
        self.info, parts = read_model_file(self.model_path)
        self.mode = self.options.mode
        if self.mode != "whole" and not self.info.has_patch_parts:
            raise ModelError(f"{self.model_path} has no patch parts (search_patch, search_global): "
                             f"mode {self.mode!r} is not available, use mode 'whole'")
        needed = [PART_TEMPLATE, PART_HEAD] + ([PART_SEARCH] if self.mode == "whole"
                                               else [PART_SEARCH_PATCH, PART_SEARCH_GLOBAL])
        if self.mode != "whole" and self.options.use_interior_part and PART_SEARCH_PATCH_INTERIOR in parts:
            needed.append(PART_SEARCH_PATCH_INTERIOR)
        so = session_options(self.options)
        providers = resolve_providers(self.options.providers, self.options.provider_options)
        self._sessions: dict[str, Any] = {}
        for name in needed:
            try:
                self._sessions[name] = ort.InferenceSession(parts[name], sess_options=so, providers=providers)
            except Exception as exc:  # onnxruntime raises several exception types
                raise ModelError(f"{self.model_path}: part '{name}' cannot be loaded: {exc}") from exc
        self.providers: list[str] = list(self._sessions[PART_TEMPLATE].get_providers())
        self.last_timings: dict[str, float] = {}
        if self.mode != "whole":
            self._grid = patch_grid_size(self.info.search_size, self.info.patch_size)
            masks = patch_masks(self.info.search_size, self.info.patch_size, self.info.halo_before,
                                self.info.halo_after)
            # Grid positions whose patch (halo included) lies wholly inside the image.
            self._interior_flags = masks.reshape(masks.shape[0], -1).min(axis=1) > 0

    # --- checks ---------------------------------------------------------------------------------
    def _check_images(self, images: np.ndarray, size: int, what: str, batch_one: bool = False) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            raise ValueError(f"{what} must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1:] != (3, size, size) or (batch_one and images.shape[0] != 1):
            shape = f"({'1' if batch_one else 'B'},3,{size},{size})"
            raise ValueError(f"{what} must have shape {shape}, got {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"{what} is an empty batch")
        return np.ascontiguousarray(images, dtype=np.float32)

    # --- branches -------------------------------------------------------------------------------
    def template_features(self, template: np.ndarray) -> np.ndarray:
        """(1,3,T,T) float32 BGR 0..255 -> template features."""
        z = self._check_images(template, self.info.template_size, "template", batch_one=True)
        t0 = time.perf_counter()
        out = self._sessions[PART_TEMPLATE].run(None, {"template": z})[0]
        self.last_timings["template"] = time.perf_counter() - t0
        return out

    def search_features(self, search: np.ndarray) -> np.ndarray:
        """(B,3,S,S) float32 BGR 0..255 -> (B,C,S/stride,S/stride) search features, in ``self.mode``."""
        x = self._check_images(search, self.info.search_size, "search")
        t0 = time.perf_counter()
        if self.mode == "whole":
            out = self._run_whole(x)
            self.last_timings["search"] = time.perf_counter() - t0
            return out
        b, g = x.shape[0], self._grid
        patches, masks = make_patches(x, self.info.patch_size, self.info.halo_before, self.info.halo_after)
        t1 = time.perf_counter()
        n = patches.shape[0]
        fs, fc = self.info.patch_feature_size, self.info.patch_feature_channels
        feats = np.empty((n, fc, fs, fs), np.float32)
        interior = np.tile(self._interior_flags, b)
        step = {"batched": n, "row": g, "patch": 1}[self.mode]
        for start in range(0, n, step):
            self._run_patches(patches, masks, interior, start, min(start + step, n), feats)
        t2 = time.perf_counter()
        grid = assemble_grid(feats, b, g)
        out = self._sessions[PART_SEARCH_GLOBAL].run(None, {"patch_grid": grid})[0]
        t3 = time.perf_counter()
        self.last_timings.update(search=t3 - t0, search_patch_cut=t1 - t0, search_patch=t2 - t1,
                                 search_global=t3 - t2)
        return out

    def _run_whole(self, x: np.ndarray) -> np.ndarray:
        """The ``search`` part on ``x``, ``options.search_batch`` images per call (same results as one call: every
        image's features depend on that image alone)."""
        session, step = self._sessions[PART_SEARCH], self.options.search_batch
        if step <= 0 or step >= x.shape[0]:
            return session.run(None, {"search": x})[0]
        return np.concatenate([session.run(None, {"search": x[start:start + step]})[0]
                               for start in range(0, x.shape[0], step)])

    def _run_patches(self, patches: np.ndarray, masks: np.ndarray, interior: np.ndarray, start: int, stop: int,
                     out: np.ndarray) -> None:
        """One ``search_patch`` call over patches[start:stop] (two when it mixes interior and border patches
        and the model has the interior part), written into out[start:stop]."""
        masked = self._sessions[PART_SEARCH_PATCH]
        inner = self._sessions.get(PART_SEARCH_PATCH_INTERIOR)
        flags = interior[start:stop]
        if inner is None or not flags.any():
            out[start:stop] = masked.run(None, {"patches": patches[start:stop], "patch_masks": masks[start:stop]})[0]
        elif flags.all():
            out[start:stop] = inner.run(None, {"patches": patches[start:stop]})[0]
        else:
            view = out[start:stop]
            p, m = patches[start:stop], masks[start:stop]
            view[flags] = inner.run(None, {"patches": np.ascontiguousarray(p[flags])})[0]
            border = ~flags
            view[border] = masked.run(None, {"patches": np.ascontiguousarray(p[border]),
                                             "patch_masks": np.ascontiguousarray(m[border])})[0]

    def response(self, template_features: np.ndarray, search_features: np.ndarray) -> np.ndarray:
        """Correlation head: (1,C,t,t) x (B,C,s,s) -> (B,1,R,R) raw scores (logits)."""
        t0 = time.perf_counter()
        out = self._sessions[PART_HEAD].run(None, {
            "template_features": np.ascontiguousarray(template_features, dtype=np.float32),
            "search_features": np.ascontiguousarray(search_features, dtype=np.float32)})[0]
        self.last_timings["head"] = time.perf_counter() - t0
        return out

    @property
    def has_box_output(self) -> bool:
        """Whether the model's head also returns the box regression (``siammixer.box_output`` metadata)."""
        return self.info.has_box_output

    def response_and_box(self, template_features: np.ndarray, search_features: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """The head's outputs: ``response`` (B,1,R,R) and ``box`` (B,4,R,R) (l, t, r, b in search-crop pixels
        from each cell's point, see core/model_file.py), or None for a model without the box output."""
        t0 = time.perf_counter()
        outputs = self._sessions[PART_HEAD].run(None, {
            "template_features": np.ascontiguousarray(template_features, dtype=np.float32),
            "search_features": np.ascontiguousarray(search_features, dtype=np.float32)})
        self.last_timings["head"] = time.perf_counter() - t0
        return outputs[0], (outputs[1] if self.info.has_box_output and len(outputs) > 1 else None)

    def __repr__(self) -> str:
        return (f"SiamMixerRuntime({self.model_path.name}, variant={self.info.variant}, mode={self.mode}, "
                f"threads={self.options.intra_op_threads}, providers={self.providers})")
