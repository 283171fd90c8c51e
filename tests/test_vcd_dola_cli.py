"""VCD and DoLa end to end: main_aro.py run folders, records, grids equal to separate runs, the report's
+VCD / +DoLa rows, and one-line errors for bad values."""
from __future__ import annotations

import json
import re

import pytest

import main_aro
from evaluation.runs import run_folders
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from runner.records import read_records
from tests.fixtures_data import write_vsr_fixture


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The shipped toy model on 4 synthetic Controlled-A samples: base, VCD at alpha 0 and 1, DoLa."""
    root = tmp_path_factory.mktemp("toy")
    argv = ["--model-name", "toy", "--limit", "4", "--data-root", str(root / "data"), "--output-dir",
            str(root / "out"), "--method", "base,vcd,dola", "--cd-alpha", "0,1"]
    assert main_aro.main(argv) == 0
    return root


def _folders(output):
    """{configuration label: run folder} (`<model>/<dataset>/<label>__...`)."""
    return {folder.name.split("__")[0]: folder for folder in run_folders(output)}


def test_each_configuration_gets_a_complete_run_folder(toy_run):
    folders = _folders(toy_run / "out")
    assert set(folders) == {"base", "vcd_a-0.00_b-0.10_T-500_s-55", "vcd_a-1.00_b-0.10_T-500_s-55",
                            "dola_l-high_rt-0.10_rp-1.20"}
    vcd = json.loads((folders["vcd_a-1.00_b-0.10_T-500_s-55"] / "config.json").read_text())
    assert vcd["method"] == "vcd"
    assert vcd["hyperparameters"] == {"cd_alpha": 1.0, "cd_beta": 0.1, "noise_step": 500, "cd_seed": 55,
                                      "sample": False}
    dola = json.loads((folders["dola_l-high_rt-0.10_rp-1.20"] / "config.json").read_text())
    assert dola["hyperparameters"] == {"dola_layers": "high", "relative_top": 0.1, "dola_repetition_penalty": 1.2}
    records = {label: read_records(folder / "samples.jsonl") for label, folder in folders.items()}
    assert all(len(rows) == 4 for rows in records.values())
    assert all(isinstance(r["head_size"], int) and r["head_size"] >= 1
               for r in records["vcd_a-1.00_b-0.10_T-500_s-55"])
    assert all(r["premature_layers"] and set(r["premature_layers"]) <= {2}  # the toy LM's high bucket: [2]
               for r in records["dola_l-high_rt-0.10_rp-1.20"])
    base = [r["generation"] for r in records["base"]]
    assert [r["generation"] for r in records["vcd_a-0.00_b-0.10_T-500_s-55"]] == base  # alpha 0: the baseline
    assert [r["confidence"] for r in records["vcd_a-1.00_b-0.10_T-500_s-55"]] == [r["confidence"] for r in records["base"]]


def test_the_report_has_vcd_and_dola_rows(toy_run, capsys):
    from evaluation import report

    assert report.main([str(toy_run / "out"), "--split", "all"]) in (0, None)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| +")]
    assert [row.split(" (")[0] for row in rows] == ["| +DoLa", "| +VCD", "| +VCD"]
    assert "--cd-alpha" in out


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    write_vsr_fixture(root / "data", "zeroshot", "test")
    save_tiny_vlm(*build_tiny_vlm("qwen2_vl", seed=3, text_config={"initializer_range": 0.3}), root / "model")
    return root


def _cli(root, output, *flags):
    return main_aro.main(["--data-root", str(root / "data"), "--model-path", str(root / "model"), "--dataset",
                          "VSR", "--output-dir", str(output), "--max-new-tokens", "3", "--batch-size", "2", *flags])


def test_a_grid_writes_what_separate_runs_write(qwen_dir, tmp_path):
    grid, single = tmp_path / "grid", tmp_path / "single"
    assert _cli(qwen_dir, grid, "--method", "vcd,dola", "--cd-alpha", "0.5,1", "--noise-step", "999",
                "--dola-layers", "low,high", "--sample") == 0
    for flags in (["--method", "vcd", "--cd-alpha", "1", "--noise-step", "999", "--sample"],
                  ["--method", "dola", "--dola-layers", "low"]):
        assert _cli(qwen_dir, single, *flags) == 0
    assert len(_folders(grid)) == 4 and "vcd_a-1.00_b-0.10_T-999_s-55_sample-true" in _folders(grid)
    twins = _folders(grid)
    for label, folder in _folders(single).items():
        assert (twins[label] / "samples.jsonl").read_text() == (folder / "samples.jsonl").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--method", "vcd", "--cd-beta", "2"], r"error: --cd-beta 2 is outside \[0, 1\]"),
    (["--method", "vcd", "--noise-step", "1000"], r"error: --noise-step 1000 is outside \[0, 999\]"),
    (["--method", "dola", "--dola-layers", "mid"], "error: --dola-layers 'mid' is not low, high"),
    (["--method", "dola", "--relative-top", "-0.1"], r"error: --relative-top -0.1 is outside \[0, 1\]"),
    (["--method", "base", "--cd-alpha", "1"], "error: --cd-alpha is a hyper-parameter of vcd"),
])
def test_bad_values_are_one_line_and_exit_2(tmp_path, flags, message, capsys):
    assert main_aro.main(["--output-dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.match(message, err)


def test_the_final_layer_is_refused_at_run_time(qwen_dir, tmp_path, capsys):
    assert _cli(qwen_dir, tmp_path, "--method", "dola", "--dola-layers", "0,2") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # progress bars aside
    assert len(errors) == 1 and "error: --dola-layers 0,2 includes layer 2 (the final layer" in errors[0]
