"""`--threshold auto`: the paper's VSR rule (mean over the labels yes/no of the val split's mean alpha = 1
confidence), where its confidences come from, how it is recorded, resumed, and handed to the test run by
`evaluation.select`."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import main_aro
from common.errors import ToolkitError
from dataset_zoo.base import Sample
from evaluation import select as select_cli
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from runner import run as run_module
from methods import Configuration, get_method
from methods.registry import format_value as format_number
from runner.config import RunConfig, run_name, validate
from runner.records import read_records
from runner.threshold import same_settings_folders, threshold_from_confidences
from tests.fixtures_data import _vsr_row, write_vsr_fixture

ADAPT = ["--method", "adapt_vis", "--weight1", "0.5", "--weight2", "1.5"]


def sample(i: int, answer: str) -> Sample:
    return Sample(id=f"s{i}", index=i, image_path=Path("unused.jpg"), question="q", options=("yes", "no"),
                  answer=answer, relation="left of")


# ------------------------------------------------------------------ the rule


def test_threshold_is_the_mean_of_the_per_label_means():
    samples = [sample(0, "yes"), sample(1, "no"), sample(2, "yes"), sample(3, "no"), sample(4, "no")]
    confidence = {"s0": 0.9, "s1": 0.2, "s2": 0.7, "s3": 0.4, "s4": 0.3, "unused": 0.0}
    threshold = threshold_from_confidences(samples, confidence, split="val", source="test")
    # yes: (0.9 + 0.7) / 2 = 0.8; no: (0.2 + 0.4 + 0.3) / 3 = 0.3; not the pooled mean 2.5 / 5 = 0.5.
    assert threshold.value == pytest.approx(0.55, abs=1e-12)
    assert threshold.n_per_label == {"yes": 2, "no": 3}
    assert threshold.mean_confidence_per_label == pytest.approx({"yes": 0.8, "no": 0.3})
    assert threshold.to_dict()["split"] == "val" and threshold.to_dict()["value"] == threshold.value


def test_a_split_without_one_label_is_an_error():
    with pytest.raises(ToolkitError, match="no 'no' sample"):
        threshold_from_confidences([sample(0, "yes")], {"s0": 0.5}, split="val", source="test")


def test_parse_and_validate_auto():
    threshold = get_method("adapt_vis").hyperparameter("threshold")
    assert threshold.parse("auto") == ("auto",) and threshold.parse("0.3, auto") == (0.3, "auto")
    with pytest.raises(ToolkitError, match="not a valid float \\(or auto\\)"):
        threshold.parse("0.3,high")
    validate(RunConfig(dataset="VSR_random", method=("adapt_vis",), hyperparameters={"threshold": "auto"}))
    with pytest.raises(ToolkitError, match="yes/no tasks \\(VSR\\) and does not apply to Controlled_Images_A"):
        validate(RunConfig(dataset="Controlled_Images_A", method=("adapt_vis",), hyperparameters={"threshold": "auto"}))


def test_format_number_is_short_and_exact():
    assert [format_number(v) for v in (0.8, 2.0, 0.25, None, "auto")] == ["0.8", "2", "0.25", "none", "auto"]
    value = 0.6123456789012345
    assert float(format_number(value)) == value


def test_same_settings_folders_are_found_by_name(tmp_path):
    config = RunConfig(dataset="VSR", model_name="llava1.5", method=("adapt_vis",))
    specs = [Configuration.of("base"), Configuration.of("scaling_vis", weight=0.5),
             Configuration.of("adapt_vis", weight1=0.5, weight2=1.5, threshold="auto")]
    mine = [tmp_path / run_name(config, spec, None, "val") for spec in specs]
    others = [tmp_path / run_name(config, specs[0], None, "test"),
              tmp_path / run_name(RunConfig(dataset="VSR", model_name="llava1.5", limit=3), specs[0], None, "val"),
              tmp_path / run_name(RunConfig(dataset="VSR", model_name="qwen2-vl"), specs[0], None, "val")]
    for folder in mine + others:
        folder.mkdir()
    assert same_settings_folders(tmp_path, config, None, "val") == sorted(mine)


# ------------------------------------------------------------------ end to end on a VSR fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_vlm(*build_tiny_vlm("llava", seed=3), tmp_path_factory.mktemp("model") / "llava"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """40 VSR rows, labels alternating, so the 8 val samples hold both labels."""
    root = tmp_path_factory.mktemp("data")
    rows = [_vsr_row(910000 + i, "train2017", f"The cat is {'left' if i % 3 else 'right'} of the dog.", i % 2,
                     "left of", "cat", "dog") for i in range(40)]
    write_vsr_fixture(root, "zeroshot", "test", rows=rows)
    return root


def cli(data_root, output, model_dir, *flags) -> int:
    return main_aro.main(["--data-root", str(data_root), "--output-dir", str(output), "--model-path", model_dir,
                          "--dataset", "VSR", "--max-new-tokens", "2", "--batch-size", "3", *flags])


def folders(output: Path, split: str, label: str = "") -> list[Path]:
    return sorted(p for p in output.iterdir() if p.is_dir() and f"__{split}__" in p.name and label in p.name)


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def used_threshold(config: dict) -> float:
    """The number a run compared confidences with: an auto threshold's recorded value, else the given one."""
    if config["hyperparameters"]["threshold"] == "auto":
        return config["threshold_auto"]["value"]
    return config["hyperparameters"]["threshold"]


def expected_threshold(records: list[dict]) -> float:
    means = [sum(c) / len(c) for c in ([r["confidence"] for r in records if r["gold"] == label]
                                       for label in ("yes", "no"))]
    return sum(means) / 2


def test_auto_on_val_is_computed_recorded_and_applied(tmp_path, data_root, model_dir):
    assert cli(data_root, tmp_path, model_dir, "--split", "val", *ADAPT, "--threshold", "auto") == 0
    [folder] = folders(tmp_path, "val", "_t-auto")
    config, records = config_of(folder), read_records(folder / "samples.jsonl")
    auto = config["threshold_auto"]
    assert config["hyperparameters"]["threshold"] == "auto"
    assert auto["value"] == pytest.approx(expected_threshold(records), abs=1e-12)
    assert auto["split"] == "val" and auto["source"] == "a confidence pass over the val split"
    assert auto["n_per_label"] == {"yes": sum(r["gold"] == "yes" for r in records),
                                   "no": sum(r["gold"] == "no" for r in records)}
    assert min(auto["n_per_label"].values()) >= 1 and len(records) == 8
    for record in records:  # AdaptVis compared the rounded confidence with the recorded number
        assert record["alpha"] == (0.5 if record["confidence_rounded"] < auto["value"] else 1.5)
    row = (tmp_path / "results.csv").read_text().splitlines()[1]
    assert f"threshold=auto={auto['value']!r}" in row


def test_a_finished_val_run_supplies_the_confidences_without_a_pass(tmp_path, data_root, model_dir, monkeypatch):
    assert cli(data_root, tmp_path, model_dir, "--split", "val", "--method", "base") == 0
    [base] = folders(tmp_path, "val", "__base__")
    monkeypatch.setattr(run_module, "confidence_pass", lambda *a: pytest.fail("confidences were recomputed"))
    assert cli(data_root, tmp_path, model_dir, "--split", "test", *ADAPT, "--threshold", "auto") == 0
    [folder] = folders(tmp_path, "test")
    auto = config_of(folder)["threshold_auto"]
    assert auto["source"] == f"records of {base.name}" and auto["split"] == "val"
    assert auto["value"] == expected_threshold(read_records(base / "samples.jsonl"))
    assert len(read_records(folder / "samples.jsonl")) == 32


def test_a_resumed_run_keeps_its_recorded_threshold(tmp_path, data_root, model_dir):
    assert cli(data_root, tmp_path, model_dir, "--split", "val", *ADAPT, "--threshold", "auto") == 0
    [folder] = folders(tmp_path, "val")
    config = config_of(folder)
    # An interrupted run whose first records were decided with threshold 0.0 (every sample: weight2).
    config["threshold_auto"]["value"] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "results.json").unlink()
    lines = (folder / "samples.jsonl").read_text().splitlines(keepends=True)
    (folder / "samples.jsonl").write_text("".join(lines[:3]))
    assert cli(data_root, tmp_path, model_dir, "--split", "val", *ADAPT, "--threshold", "auto") == 0
    assert used_threshold(config_of(folder)) == 0.0
    assert all(r["alpha"] == 1.5 for r in read_records(folder / "samples.jsonl")[3:])


def test_select_hands_the_val_threshold_to_the_test_run(tmp_path, data_root, model_dir, capsys):
    grid = [*ADAPT[:3], "0.5,0.8", "--weight2", "1.5", "--threshold", "auto"]
    assert cli(data_root, tmp_path, model_dir, "--split", "val", *grid) == 0
    capsys.readouterr()
    assert select_cli.main(["--output-dir", str(tmp_path), "--model-path", model_dir, "--dataset", "VSR",
                            "--max-new-tokens", "2", "--method", "adapt_vis", "--threshold", "auto"]) == 0
    flags = capsys.readouterr().out.split()
    chosen = float(flags[flags.index("--threshold") + 1])
    assert select_cli.main(["--output-dir", str(tmp_path), "--model-path", model_dir, "--dataset", "VSR",
                            "--max-new-tokens", "2", "--method", "adapt_vis"]) == 0   # as run.sh calls it
    assert capsys.readouterr().out.split() == flags
    val_values = {used_threshold(config_of(folder)) for folder in folders(tmp_path, "val")}
    assert val_values == {chosen}  # one val split, one threshold, printed with every digit
    assert cli(data_root, tmp_path, model_dir, "--split", "test", "--method", "adapt_vis", *flags) == 0
    [test_run] = folders(tmp_path, "test")
    assert used_threshold(config_of(test_run)) == chosen and "threshold_auto" not in config_of(test_run)


def test_auto_outside_yes_no_tasks_is_one_line_before_anything_loads(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    assert main_aro.main(["--output-dir", str(tmp_path), "--dataset", "Controlled_Images_A", *ADAPT,
                          "--threshold", "0.3,auto"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --threshold auto") and err.count("\n") == 1
    assert "loaded" not in caplog.text


@pytest.mark.slow
def test_two_real_processes_share_one_auto_threshold(tmp_path, data_root, model_dir):
    """Process 0 computes and records the threshold; the other process waits for it and uses it too."""
    flags = ["--split", "val", *ADAPT, "--threshold", "auto"]
    assert cli(data_root, tmp_path / "single", model_dir, *flags) == 0
    repo = Path(main_aro.__file__).resolve().parent
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           str(repo / "main_aro.py"), "--data-root", str(data_root), "--output-dir",
                           str(tmp_path / "sharded"), "--model-path", model_dir, "--dataset", "VSR",
                           "--max-new-tokens", "2", "--batch-size", "3", *flags],
                          capture_output=True, text=True, timeout=300, cwd=repo,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    [single], [sharded] = folders(tmp_path / "single", "val"), folders(tmp_path / "sharded", "val")
    # Each process runs one thread, so the last digits of confidences may differ from the single run.
    assert used_threshold(config_of(sharded)) == pytest.approx(used_threshold(config_of(single)), abs=1e-6)
    one, two = read_records(single / "samples.jsonl"), read_records(sharded / "samples.jsonl")
    assert [(r["id"], r["alpha"]) for r in one] == [(r["id"], r["alpha"]) for r in two]
