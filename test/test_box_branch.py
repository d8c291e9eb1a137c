"""The optional box-regression branch (issue #15): budget, checkpoints, export, runtime and the tracker's box modes.

Files without a box output (the shipped model, the NCC test models) must track exactly as before the branch existed:
test/data/tracker_boxes_before_box_branch.json holds the boxes the tracker gave at commit d7b5043 (before it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siammixer_ros.core import memory
from siammixer_ros.core.errors import ModelError, TrackerParamsError
from siammixer_ros.core.model_file import SHIPPED_MODEL_NAMES
from siammixer_ros.core.params import TrackerParams
from siammixer_ros.core.tracker import SiamMixerTracker
from siammixer_ros.testing.ncc_model import ncc_box_model_path
from siammixer_ros.testing.synthetic import iou, render_sequence

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "tracker_boxes_before_box_branch.json"


# --- budget and accounting (torch-free) --------------------------------------------------------------------------

def test_branch_fits_the_budget_of_issue_15() -> None:
    plain = memory.SiamMixerConfig.for_variant("xs")
    box = memory.SiamMixerConfig.for_variant("xs", box_head=True)
    assert memory.count_parameters(plain) == 285_760
    assert memory.count_parameters(box) <= 400_000
    for count in (memory.count_macs, memory.executed_macs):
        before, after = count(plain, scales=3)["total"], count(box, scales=3)["total"]
        assert after <= 1.10 * before, (count.__name__, after / before)


def test_variants_without_the_branch_keep_their_architecture_entry() -> None:
    # The exporter stores to_dict() in the file: no box keys for the paper's variants (files stay as they were).
    assert not set(memory.BOX_FIELDS) & set(memory.SiamMixerConfig.for_variant("xs").to_dict())
    cfg = memory.SiamMixerConfig.for_variant("xs", box_head=True)
    assert memory.SiamMixerConfig.from_dict(cfg.to_dict()) == cfg


# --- the network -----------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def box_model():
    from siammixer_ros.model.network import SiamMixer

    torch.manual_seed(0)
    model = SiamMixer("xs", box_head=True)
    with torch.no_grad():  # a branch whose output depends on its input (a fresh one predicts ~32 px everywhere)
        model.box_head.predict.weight.normal_(0.0, 0.05)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_torch_model_and_table_agree_with_the_branch() -> None:
    from siammixer_ros.model import network

    torch.set_num_threads(1)
    model = network.SiamMixer("xs", box_head=True)
    assert network.count_parameters(model) == memory.count_parameters(model.config)
    assert network.count_macs(model, search_batch=3) == memory.count_macs(model.config, scales=3)


def test_box_on_hidden_features_equals_box_on_features(box_model) -> None:
    z = torch.rand(1, 3, 128, 128) * 255
    x = torch.rand(2, 3, 256, 256) * 255
    with torch.no_grad():
        zf = box_model.template_features(z)
        direct = box_model.box(zf, box_model.search_features(x))
        folded = box_model.box_from_hidden(zf, box_model.search_hidden(x))
        paired = box_model.box(zf.expand(2, -1, -1, -1).contiguous(), box_model.search_features(x))
    assert direct.shape == (2, 4, 9, 9) and bool((direct > 0).all())
    assert torch.allclose(direct, folded, rtol=1e-4, atol=1e-3)
    assert torch.allclose(direct, paired, rtol=1e-5, atol=1e-4)  # training's one-template-per-pair path


def test_a_checkpoint_without_the_branch_loads_into_a_model_with_it() -> None:
    from siammixer_ros.model.network import SiamMixer, load_model_state

    torch.manual_seed(1)
    old = SiamMixer("xs")
    new = SiamMixer("xs", box_head=True)
    fresh = {k: v.clone() for k, v in new.state_dict().items() if k.startswith("box_head.")}
    added = load_model_state(new, old.state_dict())
    assert sorted(added) == sorted(k for k in fresh if not k.endswith("num_batches_tracked"))
    state = new.state_dict()
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items())
    assert all(torch.equal(state[k], v) for k, v in fresh.items())  # the branch keeps its initialisation
    # The other way round, or a half branch, is refused with the keys named.
    with pytest.raises(RuntimeError, match="box_head=True"):
        load_model_state(SiamMixer("xs"), new.state_dict())
    partial = {k: v for k, v in new.state_dict().items() if not k.startswith("box_head.predict")}
    with pytest.raises(RuntimeError, match="missing keys: box_head.predict"):
        load_model_state(SiamMixer("xs", box_head=True), partial)


# --- export and runtime ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def box_file(box_model, tmp_path_factory):
    pytest.importorskip("onnx")
    from siammixer_ros.model.export import RANDOM_PROVENANCE, export_model

    return export_model(box_model, tmp_path_factory.mktemp("box") / "xs_box.onnx", provenance=RANDOM_PROVENANCE)


@pytest.mark.parametrize("mode", ["whole", "row"])
def test_exported_box_output_equals_torch(box_model, box_file, mode) -> None:
    from siammixer_ros.core.runtime import RuntimeOptions, SiamMixerRuntime

    rng = np.random.default_rng(0)
    z = rng.uniform(0, 255, (1, 3, 128, 128)).astype(np.float32)
    x = rng.uniform(0, 255, (3, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        zf, xf = box_model.template_features(torch.from_numpy(z)), box_model.search_features(torch.from_numpy(x))
        want_response, want_box = box_model.head(zf, xf).numpy(), box_model.box(zf, xf).numpy()
    runtime = SiamMixerRuntime(box_file, RuntimeOptions(mode=mode))  # row: patch by patch, then the head
    assert runtime.has_box_output and runtime.info.box_output == "ltrb_search_pixels"
    response, box = runtime.response_and_box(runtime.template_features(z), runtime.search_features(x))
    np.testing.assert_allclose(response, want_response, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(box, want_box, rtol=1e-4, atol=1e-3)
    assert np.ptp(want_box) > 1.0  # the comparison is not between two constants
    # The response alone, as readers without the box know it, is the head's first output.
    np.testing.assert_array_equal(runtime.response(runtime.template_features(z), runtime.search_features(x)),
                                  response)


def test_model_info_shows_the_box_output_and_its_cost(box_file, capsys) -> None:
    from siammixer_ros.tools.model_info import main

    assert main([str(box_file), "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "box output: yes" in out and "box branch 45,188" in out and "of which box branch" in out
    assert main([str(REPO / "models" / SHIPPED_MODEL_NAMES["float"]), "--no-layers"]) == 0
    out = capsys.readouterr().out
    assert "box output: none" in out and "Parameters: 387,349 (0.387 M; paper 0.389 M for S)\n" in out


def test_files_without_the_branch_have_no_box_metadata(tmp_path) -> None:
    pytest.importorskip("onnx")
    import onnx

    from siammixer_ros.model.export import RANDOM_PROVENANCE, export_model
    from siammixer_ros.model.network import SiamMixer

    path = export_model(SiamMixer("xs"), tmp_path / "xs.onnx", provenance=RANDOM_PROVENANCE)
    keys = {p.key for p in onnx.load(str(path)).metadata_props}
    assert "siammixer.box_output" not in keys
    assert "box" not in json.loads(next(p.value for p in onnx.load(str(path)).metadata_props
                                         if p.key == "siammixer.architecture"))


# --- the tracker -----------------------------------------------------------------------------------------------

def test_files_without_the_branch_track_exactly_as_before() -> None:
    golden = json.loads(GOLDEN.read_text())
    seq_spec = golden["sequence"]
    seq = render_sequence([tuple(b) for b in seq_spec["boxes"]], size=tuple(seq_spec["size"]), seed=seq_spec["seed"])
    for name, want in golden["boxes"].items():
        tracker = SiamMixerTracker(REPO / name, golden["params"])
        assert tracker.params.box_mode == "scale"
        tracker.init(seq.frames[0], seq.boxes[0])
        got = [list(tracker.update(frame).box) for frame in seq.frames[1:]]
        # Bit-identical on the machine the file was made on; 0.01 px leaves room for another CPU's float kernels.
        np.testing.assert_allclose(got, want, rtol=0, atol=0.01, err_msg=name)


def _aspect_sequence(frames: int = 40):
    """A stationary target whose box turns from 2:1 to 1:2 at constant area (100 x 50 -> 50 x 100)."""
    boxes = []
    for i in range(frames):
        w = 100.0 * 0.5 ** (i / (frames - 1))
        h = 5000.0 / w
        boxes.append((160.0 - (w - 1) / 2, 120.0 - (h - 1) / 2, w, h))
    return render_sequence(boxes, size=(320, 240), seed=3, saturated=True)


def _track(mode: str, seq) -> list[tuple[float, float, float, float]]:
    tracker = SiamMixerTracker(ncc_box_model_path(), {"box_mode": mode})
    tracker.init(seq.frames[0], seq.boxes[0])
    return [tracker.update(frame).box for frame in seq.frames[1:]]


def test_regression_follows_an_aspect_change_that_scale_search_cannot() -> None:
    seq = _aspect_sequence()
    last = seq.boxes[-1]
    results = {mode: _track(mode, seq) for mode in ("scale", "regression", "both")}
    for mode in ("regression", "both"):
        box = results[mode][-1]
        assert 0.4 < box[2] / box[3] < 0.65, (mode, box)  # the truth ends at 0.5
        assert np.mean([iou(b, g) for b, g in zip(results[mode][-5:], seq.boxes[-5:], strict=True)]) > 0.8, mode
    scale = results["scale"][-1]
    assert scale[2] / scale[3] > 1.8, scale  # scale search keeps the first box's 2:1
    assert iou(scale, last) < 0.45


def test_box_modes_need_a_model_with_a_box_output() -> None:
    from siammixer_ros.testing.ncc_model import ncc_model_path

    with pytest.raises(ModelError, match="needs a model with a box output"):
        SiamMixerTracker(ncc_model_path(16), {"box_mode": "regression"})
    with pytest.raises(TrackerParamsError, match="box_mode must be one of scale, regression, both"):
        TrackerParams(box_mode="anchors")
    # scale mode on a box model is today's tracker: the box output is not used.
    seq = _aspect_sequence(6)
    plain = SiamMixerTracker(ncc_model_path(16))
    plain.init(seq.frames[0], seq.boxes[0])
    on_box_model = _track("scale", seq)
    assert on_box_model == [plain.update(frame).box for frame in seq.frames[1:]]


def test_regression_mode_runs_one_search_crop() -> None:
    seq = _aspect_sequence(4)
    for mode, crops in (("regression", 1), ("both", 3), ("scale", 3)):
        tracker = SiamMixerTracker(ncc_box_model_path(), {"box_mode": mode})
        tracker.init(seq.frames[0], seq.boxes[0])
        assert tracker.update(seq.frames[1]).search_crops == crops


def test_node_parameter_box_mode_lists_its_choices_and_refuses_others() -> None:
    from siammixer_ros.ros.params import all_param_specs, validate_change

    specs = {spec.name: spec for spec in all_param_specs()}
    spec = specs["tracker.box_mode"]
    assert spec.kind == "string" and spec.default == "scale" and spec.choices == ("scale", "regression", "both")
    defaults = {s.name: s.default for s in all_param_specs()}
    assert validate_change(defaults, {"tracker.box_mode": "both"}) is None
    assert "must be one of scale, regression, both" in validate_change(defaults, {"tracker.box_mode": "anchors"})


def _write_run(paths: dict, predicted: list[str]) -> None:
    """One finished sequence of a siammixer-eval results folder: boxes, scores, times, done (init frame 0)."""
    paths["boxes"].parent.mkdir(parents=True)
    paths["boxes"].write_text("\n".join(predicted) + "\n")
    paths["scores"].write_text("nan\n" + "1\n" * (len(predicted) - 1))
    paths["times"].write_text("0.1\n" + "0.01\n" * (len(predicted) - 1))
    paths["done"].write_text(json.dumps({"init_frame": 0}))


def test_box_fit_averages_iou_over_the_tracked_frames_only(tmp_path) -> None:
    from types import SimpleNamespace

    from siammixer_ros.eval.runner import result_paths
    from siammixer_ros.tools.box_fit import box_fit

    truth = np.array([[10, 10, 20, 20], [10, 10, 20, 20], [10, 10, 20, 20], [10, 10, 20, 20]], dtype=float)
    predicted = ["nan,nan,nan,nan", "10,10,20,10", "100,100,5,5", "10,10,20,20"]  # init, IoU 0.5, lost, IoU 1
    _write_run(result_paths(tmp_path, "siammixer", "seq"), predicted)
    rows = box_fit(tmp_path, [SimpleNamespace(name="seq", boxes=truth), SimpleNamespace(name="other", boxes=truth)])
    assert list(rows) == ["seq"]  # unfinished sequences are left out
    assert rows["seq"]["tracked_iou"] == pytest.approx(0.75)
    assert rows["seq"]["tracked_share"] == pytest.approx(2 / 3) and rows["seq"]["mean_iou"] == pytest.approx(0.5)


def test_box_fit_says_what_the_right_size_would_add(tmp_path) -> None:
    # A box on the target's centre at half its side: size error ln 2, and with the true area it would be perfect.
    from types import SimpleNamespace

    from siammixer_ros.eval import metrics
    from siammixer_ros.eval.runner import result_paths
    from siammixer_ros.tools.box_fit import box_fit

    truth = np.array([[10, 10, 20, 20]] * 3, dtype=float)
    predicted = ["nan,nan,nan,nan", "15,15,10,10", "15,15,10,10"]
    _write_run(result_paths(tmp_path, "siammixer", "seq"), predicted)
    row = box_fit(tmp_path, [SimpleNamespace(name="seq", boxes=truth)])["seq"]
    assert row["size_error"] == pytest.approx(np.log(2))
    assert row["auc"] == pytest.approx(float(metrics.success_curve(np.array([0.25, 0.25])).mean()))
    assert row["auc_true_area"] == pytest.approx(float(metrics.success_curve(np.array([1.0, 1.0])).mean()))
    assert row["auc_true_area"] > row["auc"] + 0.5


def test_the_size_gate_keeps_a_regressed_size_far_from_the_current_one_out() -> None:
    # The aspect sequence keeps its area: every regressed box is within a few per cent of the current size, so a
    # gate of 0.3 takes them all and `both` follows the turn exactly as without a gate; a gate narrower than any
    # change takes none, and the box keeps its shape as the scale search alone would.
    seq = _aspect_sequence()
    both = _track("both", seq)

    def gated(gate: float) -> list[tuple[float, float, float, float]]:
        tracker = SiamMixerTracker(ncc_box_model_path(), {"box_mode": "both", "box_size_gate": gate})
        tracker.init(seq.frames[0], seq.boxes[0])
        return [tracker.update(frame).box for frame in seq.frames[1:]]

    np.testing.assert_allclose(gated(0.3), both, rtol=0, atol=1e-9)
    shut = gated(1e-9)
    assert shut[-1][2] / shut[-1][3] > 1.8, shut[-1]
    np.testing.assert_allclose(shut, _track("scale", seq), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="box_size_gate"):
        SiamMixerTracker(ncc_box_model_path(), {"box_size_gate": -0.1})


def test_a_target_smaller_than_box_min_target_px_keeps_the_scale_search_size() -> None:
    # The aspect sequence's target is sqrt(5000) = 70.7 px throughout: a threshold under it changes nothing, one
    # over it takes no regressed box, so `both` tracks exactly as `scale` (the first box's 2:1 stays).
    seq = _aspect_sequence()

    def with_threshold(pixels: float) -> list[tuple[float, float, float, float]]:
        tracker = SiamMixerTracker(ncc_box_model_path(), {"box_mode": "both", "box_min_target_px": pixels})
        tracker.init(seq.frames[0], seq.boxes[0])
        return [tracker.update(frame).box for frame in seq.frames[1:]]

    np.testing.assert_allclose(with_threshold(60.0), _track("both", seq), rtol=0, atol=1e-9)
    small = with_threshold(80.0)
    np.testing.assert_allclose(small, _track("scale", seq), rtol=0, atol=1e-9)
    assert small[-1][2] / small[-1][3] > 1.8, small[-1]
    with pytest.raises(ValueError, match="box_min_target_px"):
        SiamMixerTracker(ncc_box_model_path(), {"box_min_target_px": -1.0})
