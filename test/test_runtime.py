"""The onnxruntime runtime: every execution mode gives the same features as whole-image inference and
as PyTorch; bad models, modes and inputs fail with clear messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siammixer_ros.core.model_file import ModelError, read_model_file
from siammixer_ros.core.runtime import MODES, RuntimeOptions, SiamMixerRuntime, assemble_grid, make_patches

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def xs_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One exported random-weight SiamMixer-XS (non-trivial BN statistics) and its torch model."""
    from siammixer_ros.model.export import RANDOM_PROVENANCE, export_model
    from siammixer_ros.model.network import SiamMixer

    torch.manual_seed(0)
    model = SiamMixer("xs")
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
            if hasattr(mod, "template_running_mean"):  # the template part must fold the template branch's own
                mod.template_running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.template_running_var.copy_(torch.rand(n, generator=g) + 0.5)
    model.eval()
    path = tmp_path_factory.mktemp("model") / "xs_random.onnx"
    export_model(model, path, provenance=RANDOM_PROVENANCE, variant="xs")
    return path, model


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.uniform(0, 255, (1, 3, 128, 128)).astype(np.float32),
            rng.uniform(0, 255, (2, 3, 256, 256)).astype(np.float32))


def test_metadata_says_what_the_model_is(xs_model: tuple[Path, object]) -> None:
    info, parts = read_model_file(xs_model[0])
    assert (info.variant, info.template_size, info.search_size, info.stride, info.response_size) == \
        ("xs", 128, 256, 16, 9)
    assert (info.patch_size, info.halo_before, info.halo_after, info.patch_feature_size,
            info.patch_feature_channels) == (16, 6, 3, 2, 32)
    assert info.model_version == "untrained" and "NOT TRAINED" in info.provenance["training"]
    assert "mean" in info.normalisation and "BGR" in info.normalisation
    assert set(parts) == {"template", "search", "search_patch", "search_patch_interior", "search_global", "head"}
    for blob in parts.values():
        assert onnx.load_from_string(blob).opset_import[0].version >= 17


def test_all_modes_match_each_other_pytorch_and_the_main_graph(xs_model, inputs) -> None:
    import onnxruntime as ort

    path, model = xs_model
    z, x = inputs
    with torch.no_grad():
        # The search parts stop before MB4's projection, which the head applies to the template side.
        ref_xf = model.search_hidden(torch.from_numpy(x)).numpy()
        ref_zf = model.template_features(torch.from_numpy(z)).numpy()
        ref_r = model.head(torch.from_numpy(ref_zf), model.search_features(torch.from_numpy(x))).numpy()
        assert np.abs(model.head_from_hidden(torch.from_numpy(ref_zf), torch.from_numpy(ref_xf)).numpy()
                      - ref_r).max() <= 1e-4
    results = {}
    # "batched-masked": every patch through the masked part (no interior part), the other modes use both
    for name in (*MODES, "batched-masked"):
        mode = name.split("-")[0]
        rt = SiamMixerRuntime(path, RuntimeOptions(mode=mode, use_interior_part=name != "batched-masked"))
        assert rt.mode == mode and rt.providers == ["CPUExecutionProvider"]
        zf = rt.template_features(z)
        xf = rt.search_features(x)
        r = rt.response(zf, xf)
        assert zf.shape == (1, 256, 8, 8) and xf.shape == (2, 256, 16, 16) and r.shape == (2, 1, 9, 9)
        assert {"template", "search", "head"} <= set(rt.last_timings)
        results[name] = (xf, r)
        assert np.abs(zf - ref_zf).max() <= 1e-4
        assert np.abs(xf - ref_xf).max() <= 1e-4, name
        assert np.abs(r - ref_r).max() <= 1e-4, name
    for mode in results:
        assert np.abs(results[mode][0] - results["whole"][0]).max() <= 1e-4
        assert np.abs(results[mode][1] - results["whole"][1]).max() <= 1e-4
    main = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    r_main = main.run(None, {"template": z, "search": x})[0]
    assert np.abs(r_main - results["whole"][1]).max() <= 1e-4
    # the scores are not all alike, so equality above means something
    assert np.ptp(results["whole"][1]) > 0


def test_patch_cutting_round_trip() -> None:
    images = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    patches, masks = make_patches(images, 16, 6, 3)
    assert patches.shape == (8, 3, 25, 25) and masks.shape == (8, 1, 25, 25)
    # patch (image 1, row 1, col 0) starts 6 px before pixel (16, 0)
    np.testing.assert_array_equal(patches[1 * 4 + 2, :, 6:22, 6:22], images[1, :, 16:32, 0:16])
    assert masks[0, 0, :6].sum() == 0 and masks[0, 0, 6:, 6:].all() and masks[3, 0, 22:].sum() == 0
    cores = patches[:, :, 6:22, 6:22]
    np.testing.assert_array_equal(assemble_grid(cores, 2, 2), images)


def test_threads_spinning_and_providers_are_configurable(xs_model, inputs) -> None:
    path, _ = xs_model
    opts = RuntimeOptions(mode="row", intra_op_threads=2, spinning=True,
                          providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))
    rt = SiamMixerRuntime(path, opts)
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    assert rt.providers[-1] == "CPUExecutionProvider"
    assert all(p in available for p in rt.providers)
    assert rt.search_features(inputs[1][:1]).shape == (1, 256, 16, 16)


def test_bad_models_modes_and_inputs_fail_clearly(xs_model, inputs, tmp_path: Path) -> None:
    path, _ = xs_model
    with pytest.raises(ModelError, match="not found"):
        SiamMixerRuntime(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="not a loadable ONNX"):
        SiamMixerRuntime(junk)
    with pytest.raises(ModelError, match="unknown runtime mode 'fast'"):
        SiamMixerRuntime(path, RuntimeOptions(mode="fast"))
    # a model file without the patch parts runs whole-image only
    from siammixer_ros.core.model_file import write_model_file

    info, parts = read_model_file(path)
    whole_only = {k: onnx.load_from_string(v) for k, v in parts.items() if k in ("template", "search", "head")}
    small = write_model_file(tmp_path / "whole_only.onnx", onnx.load(str(path)), whole_only, info)
    SiamMixerRuntime(small, RuntimeOptions(mode="whole"))
    with pytest.raises(ModelError, match="no patch parts.*'batched'"):
        SiamMixerRuntime(small, RuntimeOptions(mode="batched"))
    rt = SiamMixerRuntime(path, RuntimeOptions(mode="batched"))
    with pytest.raises(ValueError, match=r"search must have shape \(B,3,256,256\)"):
        rt.search_features(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(ValueError, match=r"template must have shape \(1,3,128,128\)"):
        rt.template_features(inputs[1])


def test_export_cli_refuses_random_weights_in_models_dir(tmp_path: Path) -> None:
    from siammixer_ros.model.export import main

    with pytest.raises(SystemExit):
        main(["--variant", "xs", "--random-init", "--out", str(tmp_path / "models" / "x.onnx")])
    with pytest.raises(SystemExit):
        main(["--variant", "xs", "--out", str(tmp_path / "x.onnx")])  # neither checkpoint nor random
    assert main(["--variant", "xs", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.onnx")]) == 2


def test_export_from_checkpoint_records_provenance(tmp_path: Path) -> None:
    from siammixer_ros.model.export import main
    from siammixer_ros.model.network import SiamMixer

    model = SiamMixer("xs")
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "epoch": 3, "dataset": "GOT-10k"}, ckpt)
    out = tmp_path / "trained.onnx"
    assert main(["--variant", "xs", "--checkpoint", str(ckpt), "--model-version", "1.2", "--out", str(out)]) == 0
    info, _ = read_model_file(out)
    assert info.model_version == "1.2" and info.provenance == {"checkpoint": "ckpt.pt", "epoch": 3,
                                                              "dataset": "GOT-10k"}


def test_exported_search_parts_stop_before_the_projection(xs_model) -> None:
    from siammixer_ros.core import memory
    from siammixer_ros.model.network import SiamMixerConfig
    assert read_model_file(xs_model[0])[0].search_output == "mb4_hidden"
    cfg = SiamMixerConfig.for_variant("xs")
    paper, executed = memory.count_macs(cfg, scales=3), memory.executed_macs(cfg, scales=3)
    # 3 search maps skip the 256x256 projection at 16x16; the head does it once at 8x8.
    assert paper["search"] - executed["search"] == 3 * 256 * 256 * 16 * 16
    assert executed["head"] - paper["head"] == 256 * 256 * 8 * 8


def test_memory_arena_is_off_unless_asked_for():
    from siammixer_ros.core.runtime import session_options

    default = session_options(RuntimeOptions())
    assert not default.enable_cpu_mem_arena and not default.enable_mem_pattern
    arena = session_options(RuntimeOptions(cpu_memory_arena=True))
    assert arena.enable_cpu_mem_arena and arena.enable_mem_pattern
