"""VEA end to end: main_aro.py on the shipped toy model (layers profiled on the synthetic scenes and cached),
run folders and records, the neutral setting equal to the baseline, the report's +VEA rows, one-line errors."""
from __future__ import annotations

import json

import pytest

import main_aro
from evaluation.runs import run_folders
from runner.records import read_records


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The command of the issue on 4 synthetic Controlled-A samples, with its data and output in a temporary
    folder: the toy model has no published layer set, so its layers are profiled (and cached) first."""
    root = tmp_path_factory.mktemp("vea")
    assert cli(root, "--method", "vea") == 0
    return root


def cli(root, *flags) -> int:
    data = str(root / "data")
    return main_aro.main(["--model-name", "toy", "--dataset", "Synthetic_Controlled_A", "--limit", "4",
                          "--data-root", data, "--vea-root", data, "--output-dir", str(root / "out"), *flags])


def folders(output):
    """{configuration label: run folder} (`<model>/<dataset>/<label>__...`)."""
    return {folder.name.split("__")[0]: folder for folder in run_folders(output)}


def test_a_vea_run_writes_its_folder_records_and_layer_profile(toy_run):
    [(label, folder)] = folders(toy_run / "out").items()
    assert label.startswith("vea_a-0.50_s-0.50_vea_root-")
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] == "vea" and config["hyperparameters"]["vea_lambda"] == 10.0
    assert config["hyperparameters"]["vea_layers"] == "auto" and config["hyperparameters"]["vea_hint"] is True
    [profile] = (toy_run / "data" / "vea_profiles").iterdir()
    layers = json.loads(profile.read_text())["layers"]
    assert len(layers) == 1 and len(json.loads(profile.read_text())["layer_auroc"]) == 4   # ceil(0.1 x 4) of 4
    records = read_records(folder / "samples.jsonl")
    assert len(records) == 4 and json.loads((folder / "results.json").read_text())["n"] == 4
    assert all(r["vea_layers"] == layers and r["vea_layer_source"] == "profiled" and r["vea_hint"] for r in records)
    assert all(0 < r["confidence"] <= 1 and 0 < r["vea_confidence"] <= 1 for r in records)


def test_the_neutral_setting_equals_the_baseline_and_the_profile_is_reused(toy_run, monkeypatch):
    import methods.vea_profile

    monkeypatch.setattr(methods.vea_profile, "profile_layers", lambda *a, **k: pytest.fail("profiled again"))
    assert cli(toy_run, "--method", "base,vea", "--vea-alpha", "1,0.3", "--no-vea-hint") == 0
    runs = {label.split("_vea_root")[0]: read_records(folder / "samples.jsonl")
            for label, folder in folders(toy_run / "out").items()}
    assert {"base", "vea_a-1.00_s-0.50_vea_hint-false", "vea_a-0.30_s-0.50_vea_hint-false"} <= set(runs)
    base = [r["generation"] for r in runs["base"]]
    assert [r["generation"] for r in runs["vea_a-1.00_s-0.50_vea_hint-false"]] == base
    assert [r["confidence"] for r in runs["vea_a-0.30_s-0.50_vea_hint-false"]] == [r["confidence"] for r in runs["base"]]


def test_the_report_has_vea_rows(toy_run, capsys):
    from evaluation import report

    assert cli(toy_run, "--method", "base,vea", "--vea-layers", "1+2", "--vea-lambda", "off") == 0
    capsys.readouterr()
    assert report.main([str(toy_run / "out"), "--split", "all"]) in (0, None)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| +VEA")]
    assert len(rows) >= 2 and any("vea_layers=1+2" in row and "vea_lambda=off" in row for row in rows)
    assert "--vea-alpha" in out


@pytest.mark.parametrize("flags, message", [
    (["--vea-alpha", "2"], "--vea-alpha 2 is outside [0, 1]"),
    (["--vea-layers", "1,x"], "--vea-layers 'x' is not auto, profile, all or layer indices joined by +"),
    (["--vea-lambda", "0.5"], "--vea-lambda 0.5 is outside [1, inf]"),
    (["--vea-layers", "2+9"], "VEA layers 9 (given) do not exist: toy has 4 language-model layers (0-3)"),
    (["--vea-profile", "COCO_QA_one_obj", "--vea-layers", "profile"],
     "cannot profile layers on COCO_QA_one_obj: it has no boxes of its own; give a boxes JSON with --vea-boxes"),
])
def test_bad_values_are_one_error_line_and_exit_2(tmp_path, capsys, flags, message):
    """Values the registry can check fail before anything loads; the others once the model is known (the
    runner's progress bar may then still hold the start of the error's line)."""
    assert cli(tmp_path, "--method", "vea", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and message in err.split("error: ")[1].splitlines()[0]
