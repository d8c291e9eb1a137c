"""siammixer-tune-tracker: grids name every configuration, a folder never mixes parameters, and the table ranks
configurations by the same one-pass metrics as siammixer-eval (here: the NCC test model on a tiny video dataset).
The eval CLI's --set / --tracker-params reach the tracker the same way."""

import json

import pytest
import yaml
from test_eval_datasets import write_video_sequence

from siammixer_ros.core.errors import TrackerParamsError
from siammixer_ros.eval import cli
from siammixer_ros.testing.ncc_model import ncc_model_path
from siammixer_ros.tools import tune_tracker


def test_grid_names_configs_and_sweeps_from_the_base():
    grid = {"base": {"window_influence": 0.2}, "configs": {"plain": {}, "no_memory": {"template_weight": 0.0}},
            "sweeps": {"scale_lr": [0.4, 0.5]}}
    configs = tune_tracker.configurations(grid)
    assert configs == {
        "plain": {"window_influence": 0.2},
        "no_memory": {"window_influence": 0.2, "template_weight": 0.0},
        "scale_lr=0.4": {"window_influence": 0.2, "scale_lr": 0.4},
        "scale_lr=0.5": {"window_influence": 0.2, "scale_lr": 0.5},
    }
    with pytest.raises(TrackerParamsError, match="configuration bad: .*online_weight"):
        tune_tracker.configurations({"configs": {"bad": {"online_weight": 2.0}}})
    with pytest.raises(TrackerParamsError, match="no configuration"):
        tune_tracker.configurations({})


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    boxes = [f"{40 + 3 * i},{30 + i},40,40" for i in range(6)]
    write_video_sequence(root / "slide", boxes, {"name": "slide", "aerial": True}, size=(120, 160))
    return root


def test_search_writes_a_ranked_table_and_refuses_to_mix_parameters(dataset, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"configs": {"plain": {"template_weight": 0.0, "distractor_subtract": 0.0},
                                                "memories": {}}}))
    out = tmp_path / "tune"
    args = ["--grid", str(grid), "--dataset", str(dataset), "--model", str(ncc_model_path(16)), "--out", str(out),
            "--max-frames", "0", "--jobs", "1"]
    assert tune_tracker.main(args) == 0
    table = json.loads((out / "table.json").read_text())
    assert {r["config"] for r in table["rows"]} == {"plain", "memories"}
    aucs = [r["auc_all"] for r in table["rows"]]
    assert aucs == sorted(aucs, reverse=True) and all(0.0 <= a <= 1.0 for a in aucs)
    assert set(table["rows"][0]["per_sequence"]) == {"slide"}
    assert "| plain |" in (out / "table.md").read_text()
    # The same folder with other parameters is refused: results of two settings never mix.
    grid.write_text(yaml.safe_dump({"configs": {"plain": {"template_weight": 0.3}}}))
    assert tune_tracker.main(args) == 2
    assert "holds results of other parameters" in capsys.readouterr().err


def test_table_splits_the_mean_by_the_sequences_the_model_trained_on(dataset, tmp_path):
    # A model whose provenance says it trained on "slide" (and not on "still"): every row carries both groups' means,
    # which a user reads to see whether a setting gains only on sequences the network has memorised.
    import dataclasses

    import onnx

    from siammixer_ros.core.model_file import read_model_file, write_model_file

    boxes = ["50,40,40,40"] * 6
    write_video_sequence(dataset / "still", boxes, {"name": "still", "aerial": False}, size=(120, 160))
    source = ncc_model_path(16)
    info, parts = read_model_file(source)
    model = tmp_path / "trained_on_slide.onnx"
    write_model_file(model, onnx.load(str(source)), parts,
                     dataclasses.replace(info, provenance={**info.provenance, "train_sequences": ["slide", "gone"]}))
    assert tune_tracker.model_train_sequences(model) == {"slide", "gone"}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"configs": {"plain": {"template_weight": 0.0}}}))
    out = tmp_path / "tune"
    assert tune_tracker.main(["--grid", str(grid), "--dataset", str(dataset), "--model", str(model), "--out", str(out),
                              "--max-frames", "0", "--jobs", "1"]) == 0
    row = json.loads((out / "table.json").read_text())["rows"][0]
    assert row["auc_trained_on"] == pytest.approx(row["per_sequence"]["slide"])
    assert row["auc_not_trained_on"] == pytest.approx(row["per_sequence"]["still"])
    assert (row["sequences_trained_on"], row["sequences_not_trained_on"]) == (1, 1)
    table = (out / "table.md").read_text()
    assert "| trained on | not trained on |" in table
    assert f"| {row['auc_trained_on']:.3f} | {row['auc_not_trained_on']:.3f} |" in table
    # A model without the list (the NCC fixture), or one group empty: no columns, nothing invented.
    assert tune_tracker.model_train_sequences(source) == set()
    assert not tune_tracker.add_training_groups([dict(row)], {"slide", "still"})


def test_eval_cli_takes_tracker_parameters(tmp_path, capsys):
    params = tmp_path / "node.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"tracker": {"scale_num": 1}}}}))
    assert cli.tracker_params_from_args(params, ["template_weight=0.0"]) == {"scale_num": 1, "template_weight": 0.0}
    with pytest.raises(TrackerParamsError, match="scale_num"):
        cli.tracker_params_from_args(None, ["scale_num=2"])
    with pytest.raises(TrackerParamsError, match="NAME=VALUE"):
        cli.tracker_params_from_args(None, ["scale_num"])


def test_bench_tracker_times_model_files_and_configurations_round_robin(tmp_path) -> None:
    # siammixer-bench-tracker --compare A B: the tracker on each file in turn on the same frames, 1 and 2 threads, so
    # that their ratio comes from one run; --memories GRID: the same for a grid's configurations on one file.
    from siammixer_ros.testing.ncc_model import ncc_box_model_path, ncc_model_path
    from siammixer_ros.tools.bench_tracker import main

    a, b = ncc_model_path(16), ncc_box_model_path()
    small = ["--frames", "4", "--warmup", "1", "--width", "320", "--height", "240", "--out-dir", str(tmp_path)]
    assert main(["--compare", str(a), str(b), *small]) == 0
    report = json.loads((tmp_path / "tracker_models.json").read_text())
    assert set(report["threads"]) == {"1", "2"}
    for rows in report["threads"].values():
        assert list(rows) == [str(a), str(b)] and all(r["median_s"] > 0 for r in rows.values())
    table = (tmp_path / "tracker_models.md").read_text()
    assert f"| {a} | 1 |" in table and "+0.00 ms (1.00x)" in table
    with pytest.raises(SystemExit):
        main(["--compare", str(a), *small])  # one file: nothing to compare

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"configs": {"plain": {"template_weight": 0.0}, "memories": {}}}, sort_keys=False))
    assert main(["--model", str(a), "--memories", str(grid), *small]) == 0
    memories = json.loads((tmp_path / "tracker_memories.json").read_text())
    assert list(memories["threads"]["1"]) == ["plain", "memories"]
    assert "| plain | 1 |" in (tmp_path / "tracker_memories.md").read_text()
