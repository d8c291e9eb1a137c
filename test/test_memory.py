"""Feature-memory accounting and siammixer-model-info: the torch-free layer table agrees with the
PyTorch network, and the patch-by-patch peak reproduces the paper's 196 kB."""

from __future__ import annotations

import pytest

from siammixer_ros.core import memory
from siammixer_ros.core.memory import PAPER_PEAK_BYTES, SiamMixerConfig, feature_memory


def test_patch_by_patch_peak_is_the_papers_196_kb_and_far_below_whole_image() -> None:
    cfg = SiamMixerConfig.for_variant("xs")
    patch = feature_memory(cfg, "patch", 1)
    whole = feature_memory(cfg, "whole", 1)
    assert abs(patch["paper_peak_bytes"] - PAPER_PEAK_BYTES) <= 0.10 * PAPER_PEAK_BYTES
    assert whole["paper_peak_bytes"] / patch["paper_peak_bytes"] > 4.0
    # float32 is 4x int8; the live accounting is never below the paper's
    assert feature_memory(cfg, "patch", 4)["paper_peak_bytes"] == 4 * patch["paper_peak_bytes"]
    for mode in memory.MODES:
        m = feature_memory(cfg, mode, 1)
        assert m["live_peak_bytes"] >= m["paper_peak_bytes"]
    # patch <= row <= batched for the shallow stage
    shallow = {mode: max(r["paper_bytes"] for r in feature_memory(cfg, mode, 1)["layers"]
                         if r["stage"] == "search_patch" and r["name"] != "assembled grid")
               for mode in ("patch", "row", "batched")}
    assert shallow["patch"] * 16 == shallow["row"] and shallow["row"] * 16 == shallow["batched"]


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        feature_memory(SiamMixerConfig(), "tiles", 1)


@pytest.mark.parametrize("variant", ["xs", "s", "m", "l"])
def test_layer_table_matches_the_pytorch_network(variant: str) -> None:
    torch = pytest.importorskip("torch")
    from siammixer_ros.model import network

    torch.set_num_threads(1)
    cfg = SiamMixerConfig.for_variant(variant)
    model = network.SiamMixer(variant)
    assert memory.count_parameters(cfg) == network.count_parameters(model)
    assert memory.count_macs(cfg) == network.count_macs(model)
    if variant != "xs":
        return
    # output sizes of the convolutions of the whole search branch, layer by layer
    seen: dict[str, int] = {}
    names = {"expand", "depthwise", "project", "merge", "fc1", "fc2"}
    hooks = [mod.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, o.numel()))
             for name, mod in model.named_modules() if name.split(".")[-1] in names]
    with torch.no_grad():
        model.eval().search_features(torch.zeros(1, 3, 256, 256))
    for h in hooks:
        h.remove()
    table = {layer.name: layer.output_elements for layer in memory.branch_layers(cfg, 256, "search")}
    for name, n in seen.items():
        key = (name.replace("layers.", "layer").replace(".channel_mixing.fc", ".channel_fc"))
        assert table[key] == n, name


def test_model_info_prints_params_macs_memory_and_reduction(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from siammixer_ros.model.export import RANDOM_PROVENANCE, export_model
    from siammixer_ros.model.network import SiamMixer
    from siammixer_ros.tools.model_info import main

    path = export_model(SiamMixer("xs"), tmp_path / "xs.onnx", provenance=RANDOM_PROVENANCE)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "Parameters: 285,760" in out and "NOT TRAINED" in out
    assert "196.6 kB" in out and "paper: 4.26x" in out and "mb3.expand" in out
    assert main([str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
