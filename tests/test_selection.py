"""Loading run folders and selecting hyper-parameters on val (`evaluation.runs`, `evaluation.selection`,
`python -m evaluation.select`), on fake run folders written by tests/fixtures_runs.py."""
from __future__ import annotations

import json
import logging

import pytest

from common.errors import ToolkitError
from evaluation import select as select_cli
from evaluation.runs import load_runs
from evaluation.selection import find_candidates, matching_runs, select_best
from tests.fixtures_runs import (EXPECTED_ADAPT, EXPECTED_SCALING, SETTINGS, controlled_metrics, write_grid,
                                 write_run)

CONTROLLED = ("Controlled_Images_A", "Controlled_Images_B")


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory):
    return write_grid(tmp_path_factory.mktemp("output"))


def run_select(capsys, root, *args: str) -> tuple[int, str, str]:
    code = select_cli.main(["--output-dir", str(root), "--model-name", "llava1.5", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ loading


def test_load_runs_skips_unfinished_and_reads_typed_fields(grid_root, caplog):
    with caplog.at_level(logging.INFO, logger="evaluation.runs"):
        runs = load_runs(grid_root)
    assert not any(run.method == "scaling_vis" and run.hyperparameters["weight"] == 1.5 for run in runs)
    assert "skipping unfinished run" in caplog.text and "scaling_vis_a-1.5" in caplog.text
    adapt = next(run for run in runs if run.method == "adapt_vis")
    assert adapt.labelled.keys() == {"weight1", "weight2", "threshold"}
    assert adapt.hyperparameters.keys() == {"weight1", "weight2", "threshold", "scope", "round_confidence"}
    vsr = next(run for run in runs if run.dataset == "VSR")
    assert vsr.option is None and vsr.metric("f1_paper") is not None


def test_run_folders_of_earlier_versions_read_their_flat_hyperparameters(tmp_path):
    """Before the method registry, config.json kept the alpha family's settings at the top level."""
    folder = write_run(tmp_path, dataset="Controlled_Images_A", method="adapt_vis", weight1=0.5, weight2=1.5,
                       threshold=0.4, metrics=controlled_metrics(0.8, 0.5, 0.2))
    config = json.loads((folder / "config.json").read_text())
    del config["hyperparameters"]
    config.update(weight=None, weight1=0.5, weight2=1.5, threshold=0.4, scope="all", no_round_confidence=True)
    (folder / "config.json").write_text(json.dumps(config))
    [run] = load_runs(tmp_path)
    assert run.hyperparameters == {"weight1": 0.5, "weight2": 1.5, "threshold": 0.4, "scope": "all",
                                   "round_confidence": False}


def test_a_folder_of_an_unknown_method_is_skipped_with_a_notice(tmp_path, caplog):
    write_run(tmp_path, dataset="Controlled_Images_A", metrics=controlled_metrics(0.8, 0.5, 0.2))
    folder = write_run(tmp_path, dataset="Controlled_Images_A", method="scaling_vis", weight=0.5,
                       metrics=controlled_metrics(0.8, 0.5, 0.2))
    config = json.loads((folder / "config.json").read_text())
    config["method"] = "future_method"
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="evaluation.runs"):
        runs = load_runs(tmp_path)
    assert [run.method for run in runs] == ["base"] and "'future_method' is not one of" in caplog.text


def test_null_option_means_the_paper_default(tmp_path):
    write_run(tmp_path, dataset="VG_QA_one_obj", option=None, metrics={"accuracy": 0.4})
    assert load_runs(tmp_path)[0].option == "six"


def test_missing_or_empty_root_says_run_main_aro_first(tmp_path):
    with pytest.raises(ToolkitError, match="does not exist; run main_aro.py first"):
        load_runs(tmp_path / "nowhere")
    write_run(tmp_path, dataset="Controlled_Images_A", finished=False)
    with pytest.raises(ToolkitError, match=r"no finished runs .*\(1 unfinished\); run main_aro.py first"):
        load_runs(tmp_path)


@pytest.mark.parametrize("name", ["results.json", "config.json"])
def test_broken_json_names_the_file(tmp_path, name):
    folder = write_run(tmp_path, dataset="Controlled_Images_A", metrics={"accuracy": 0.5})
    (folder / name).write_text('{"accuracy": 0.5,')
    with pytest.raises(ToolkitError, match=f"{folder / name}: not valid JSON"):
        load_runs(tmp_path)


def test_folders_without_config_are_ignored(tmp_path):
    (tmp_path / "plots").mkdir()
    write_run(tmp_path, dataset="Controlled_Images_A", metrics={"accuracy": 0.5})
    assert len(load_runs(tmp_path)) == 1


# ------------------------------------------------------------------ selection rule


@pytest.mark.parametrize("dataset", CONTROLLED)
def test_selection_picks_the_known_best_with_its_tie_break(grid_root, dataset):
    runs = load_runs(grid_root)
    settings = {"option": "four", **SETTINGS}
    common = dict(dataset=dataset, model="llava1.5", split="val", settings=settings)
    scaling = select_best(find_candidates(runs, method="scaling_vis", **common))
    adapt = select_best(find_candidates(runs, method="adapt_vis", **common))
    assert scaling.run.hyperparameters["weight"] == EXPECTED_SCALING[dataset]
    assert (adapt.run.hyperparameters["weight1"], adapt.run.hyperparameters["weight2"], adapt.run.hyperparameters["threshold"]) == EXPECTED_ADAPT[dataset]
    assert adapt.n_candidates == 8 and len(adapt.tied) == 1


def test_scaling_tie_prefers_alpha_closest_to_one_then_smaller(tmp_path):
    for alpha in (0.5, 0.8, 1.2, 2.0):
        write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=alpha,
                  metrics=controlled_metrics(0.7, 0.5, 0.2))
    runs = load_runs(tmp_path)
    choice = select_best(runs)
    assert choice.run.hyperparameters["weight"] == 0.8
    assert {run.hyperparameters["weight"] for run in choice.tied} == {0.5, 1.2, 2.0}
    assert "tied with" in choice.reason() and "closest to 1" in choice.reason()


def test_null_metric_does_not_compete(tmp_path):
    write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=0.8,
              metrics=controlled_metrics(0.9, 0.5, None))
    write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=1.5,
              metrics=controlled_metrics(0.5, 0.5, 0.1))
    assert select_best(load_runs(tmp_path), "set_accuracy").run.hyperparameters["weight"] == 1.5
    assert select_best(load_runs(tmp_path), "accuracy").run.hyperparameters["weight"] == 0.8


def test_metric_null_everywhere_is_an_error(tmp_path):
    write_run(tmp_path, dataset="COCO_QA_one_obj", split="val", method="scaling_vis", weight=0.8,
              metrics={"accuracy": 0.5})
    with pytest.raises(ToolkitError, match="'pair_accuracy' is missing or null in every candidate"):
        select_best(load_runs(tmp_path), "pair_accuracy")


def test_candidates_must_share_every_other_setting(tmp_path):
    for alpha, accuracy, limit in ((0.8, 0.6, None), (2.0, 0.99, 5)):
        write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=alpha,
                  metrics=controlled_metrics(accuracy, 0.5, 0.2), limit=limit)
    runs = load_runs(tmp_path)
    common = dict(dataset="Controlled_Images_A", model="llava1.5", method="scaling_vis", split="val")
    full = matching_runs(runs, settings={"option": "four", **SETTINGS}, **common)
    assert [run.hyperparameters["weight"] for run in full] == [0.8]
    with pytest.raises(ToolkitError, match=r"with other settings \(limit=5\)"):
        find_candidates([run for run in runs if run.hyperparameters["weight"] == 2.0], settings={"option": "four", **SETTINGS},
                        **common)


def test_duplicate_configuration_uses_the_latest_run(tmp_path):
    older = write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=0.8,
                      metrics=controlled_metrics(0.9, 0.5, 0.2), batch_size=1)
    newer = write_run(tmp_path, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=0.8,
                      metrics=controlled_metrics(0.6, 0.5, 0.2), batch_size=8)
    config = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**config, "finished_at": "2025-02-01T00:00:00+00:00"}))
    found = matching_runs(load_runs(tmp_path), dataset="Controlled_Images_A", model="llava1.5",
                          method="scaling_vis", split="val", settings={"option": "four", **SETTINGS})
    assert [run.path for run in found] == [newer] and older.exists()


# ------------------------------------------------------------------ command line


@pytest.mark.parametrize("dataset", CONTROLLED)
def test_cli_prints_flags_on_stdout_and_reason_on_stderr(grid_root, capsys, caplog, dataset):
    code, out, _ = run_select(capsys, grid_root, "--dataset", dataset, "--method", "scaling_vis")
    assert code == 0 and out == f"--weight {EXPECTED_SCALING[dataset]:g}\n"
    w1, w2, t = EXPECTED_ADAPT[dataset]
    with caplog.at_level(logging.INFO, logger="evaluation.select"):
        code, out, _ = run_select(capsys, grid_root, "--dataset", dataset, "--method", "adapt_vis")
    assert code == 0 and out == f"--weight1 {w1:g} --weight2 {w2:g} --threshold {t:g}\n"
    assert "selected:" in caplog.text and "among 8 runs" in caplog.text


def test_cli_grid_restriction_and_ignored_runtime_flags(grid_root, capsys):
    code, out, _ = run_select(capsys, grid_root, "--dataset", "Controlled_Images_A", "--method", "adapt_vis",
                              "--weight2", "2.0", "--device", "cuda", "--batch-size", "4", "--download")
    assert code == 0 and out == "--weight1 0.8 --weight2 2 --threshold 0.3\n"


@pytest.mark.parametrize("args, message", [
    (("--dataset", "VSR", "--method", "adapt_vis"), "no finished val runs of adapt_vis on VSR with model llava1.5"),
    (("--dataset", "Controlled_Images_A", "--method", "scaling_vis", "--max-new-tokens", "100"),
     "exist with other settings (max_new_tokens=10)"),
    (("--dataset", "Controlled_Images_A", "--method", "scaling_vis", "--weight", "3"), "inside the grid --weight 3"),
    (("--dataset", "COCO_QA_one_obj", "--method", "scaling_vis"), "no finished val runs of scaling_vis on COCO"),
])
def test_cli_nothing_found_is_one_line_and_exit_2(grid_root, capsys, args, message):
    code, out, err = run_select(capsys, grid_root, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_missing_root_and_bad_choice(tmp_path, capsys):
    code, _, err = run_select(capsys, tmp_path / "none", "--dataset", "VSR", "--method", "scaling_vis")
    assert code == 2 and "run main_aro.py first" in err
    with pytest.raises(SystemExit) as exit_info:
        select_cli.main(["--dataset", "VSR", "--method", "base"])
    assert exit_info.value.code == 2


def test_a_reason_names_at_most_three_ties_and_counts_the_rest(tmp_path):
    from evaluation.selection import Selection

    runs = load_runs(write_grid(tmp_path))
    candidates = [run for run in runs if run.method == "adapt_vis" and run.split == "val"][:6]
    selection = Selection(candidates[0], "accuracy", 0.5, len(candidates), tuple(candidates[1:]))
    reason = selection.reason()
    assert reason.count("weight1=") == 4 and "; 2 more, broken in favour of" in reason
