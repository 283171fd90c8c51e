"""End-to-end runs of main_aro.py on generated fixture data with tiny random models saved to disk."""
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import main_aro
from runner.cli import parse_config
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from runner.records import read_records
from tests.fixtures_data import write_dataset_fixture, write_vsr_fixture

ORIGINAL_README_COMMAND = ("python main_aro.py --dataset=Controlled_Images_A --model-name='llava1.5' --download "
                           "--method adapt_vis --weight1 0.5 --weight2 1.5 --threshold 0.4 --option=four")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A tiny LLaVA and a tiny Qwen2-VL saved like hub checkpoints."""
    root = tmp_path_factory.mktemp("models")
    return {family: str(save_tiny_vlm(*build_tiny_vlm(family, seed=3), root / family))
            for family in ("llava", "qwen2_vl")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset_fixture(root, "Controlled_Images_A")
    write_vsr_fixture(root, "zeroshot", "test")
    return root


def cli(data_root, output, model_dir, *extra):
    argv = ["--data-root", str(data_root), "--output-dir", str(output), "--model-path", model_dir,
            "--max-new-tokens", "3", *extra]
    return main_aro.main(argv)


def run_folders(output):
    return sorted(p for p in output.iterdir() if p.is_dir())


def metrics(folder):
    """results.json without its `timing`, which differs between any two runs."""
    results = json.loads((folder / "results.json").read_text())
    results.pop("timing")
    return results


def test_original_readme_command_parses():
    config = parse_config(shlex.split(ORIGINAL_README_COMMAND)[2:])
    assert config.dataset == "Controlled_Images_A" and config.model_name == "llava1.5" and config.download
    assert config.method == ("adapt_vis",)
    assert config.hyperparameters == {"weight1": (0.5,), "weight2": (1.5,), "threshold": (0.4,)}
    assert config.option == "four"


def test_missing_method_means_base_and_no_arguments_means_the_demo():
    assert parse_config(["--dataset", "VSR"]).method == ("base",)
    assert parse_config([]).method == ("base", "scaling_vis", "adapt_vis")


@pytest.mark.parametrize("method_flags", [
    ["--method", "base"],
    ["--method", "scaling_vis", "--weight", "0.5"],
    ["--method", "adapt_vis", "--weight1", "0.5", "--weight2", "1.5", "--threshold", "0.4"],
])
def test_each_method_writes_a_complete_run_folder(tmp_path, data_root, model_dirs, method_flags, capsys):
    assert cli(data_root, tmp_path, model_dirs["llava"], "--dataset", "Controlled_Images_A", *method_flags) == 0
    [folder] = run_folders(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    records = read_records(folder / "samples.jsonl")
    assert config["method"] == method_flags[1] and config["finished_at"] >= config["started_at"]
    assert config["model_info"]["family"] == "llava" and config["versions"]["transformers"]
    assert len(records) == results["n"] == 8
    for key in ("id", "question", "prompt", "generation", "prediction", "gold", "correct", "confidence", "alpha"):
        assert all(key in record for record in records)
    assert results["accuracy"] == sum(r["correct"] for r in records) / 8
    assert {"pair_accuracy", "set_accuracy", "pair_accuracy_paper", "set_accuracy_paper"} <= set(results)
    if method_flags[1] == "adapt_vis":
        for record in records:
            expected = 0.5 if record["confidence_rounded"] < 0.4 else 1.5
            assert record["alpha"] == expected and record["branch"]
    assert f"{100 * results['accuracy']:.1f}" in capsys.readouterr().out
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 2


def test_a_grid_writes_what_separate_runs_write(tmp_path, data_root, model_dirs):
    grid, single = tmp_path / "grid", tmp_path / "single"
    common = ["--dataset", "VSR", "--batch-size", "2"]
    assert cli(data_root, grid, model_dirs["qwen2_vl"], *common, "--method", "base,scaling_vis,adapt_vis",
               "--weight", "0.5,2.0", "--weight1", "0.5", "--weight2", "1.5", "--threshold", "0.3,0.6") == 0
    for flags in (["--method", "scaling_vis", "--weight", "2.0"],
                  ["--method", "adapt_vis", "--weight1", "0.5", "--weight2", "1.5", "--threshold", "0.6"]):
        assert cli(data_root, single, model_dirs["qwen2_vl"], *common, *flags) == 0
    assert len(run_folders(grid)) == 5
    for folder in run_folders(single):
        twin = grid / folder.name
        assert (twin / "samples.jsonl").read_text() == (folder / "samples.jsonl").read_text()
        assert metrics(twin) == metrics(folder)
        assert {"f1", "f1_paper", "tp", "tn"} <= set(json.loads((folder / "results.json").read_text()))


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(tmp_path, data_root, model_dirs):
    flags = ["--dataset", "Controlled_Images_A", "--method", "scaling_vis", "--weight", "2.0"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli(data_root, whole, model_dirs["llava"], *flags) == 0
    assert cli(data_root, cut, model_dirs["llava"], *flags) == 0
    [folder] = run_folders(cut)
    samples = (folder / "samples.jsonl").read_text()
    lines = samples.splitlines(keepends=True)
    # What kill -9 during the fourth record's write leaves behind: three lines and a torn one.
    (folder / "samples.jsonl").write_text("".join(lines[:3]) + lines[3][:17])
    (folder / "results.json").unlink()
    assert cli(data_root, cut, model_dirs["llava"], *flags) == 0
    assert (folder / "samples.jsonl").read_text() == samples
    [reference] = run_folders(whole)
    assert metrics(folder) == metrics(reference)
    # The resumed invocation measured only the five samples it answered.
    timing = json.loads((folder / "results.json").read_text())["timing"]
    assert (timing["samples_resumed"], timing["samples_evaluated"]) == (3, 5)


def test_records_say_when_and_how_long(tmp_path, data_root, model_dirs):
    assert cli(data_root, tmp_path, model_dirs["llava"], "--dataset", "Controlled_Images_A", "--method",
               "base,scaling_vis", "--weight", "0.5") == 0
    for folder in run_folders(tmp_path):
        config = json.loads((folder / "config.json").read_text())
        for stamp in (config["started_at"], config["finished_at"]):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp)
        timing = json.loads((folder / "results.json").read_text())["timing"]
        assert timing["model_load_seconds"] > 0 and timing["evaluation_seconds"] > 0
        assert (timing["samples_evaluated"], timing["samples_resumed"]) == (8, 0)
        assert timing["samples_per_second"] == pytest.approx(8 / timing["evaluation_seconds"], rel=0.01)
        assert (timing["configurations_in_pass"], timing["processes"], timing["threshold_seconds"]) == (2, 1, None)


def test_a_finished_configuration_is_skipped_unless_overwritten(tmp_path, data_root, model_dirs, caplog):
    caplog.set_level(logging.INFO)
    flags = ["--dataset", "Controlled_Images_A", "--limit", "2"]
    assert cli(data_root, tmp_path, model_dirs["llava"], *flags) == 0
    [folder] = run_folders(tmp_path)
    finished = json.loads((folder / "config.json").read_text())["finished_at"]
    assert cli(data_root, tmp_path, model_dirs["llava"], *flags) == 0
    assert "already finished" in caplog.text
    assert json.loads((folder / "config.json").read_text())["finished_at"] == finished
    assert cli(data_root, tmp_path, model_dirs["llava"], *flags, "--overwrite") == 0
    assert len(read_records(folder / "samples.jsonl")) == 2


def test_sharded_processes_merge_into_the_single_process_result(tmp_path, data_root, model_dirs, monkeypatch):
    from runner import run as run_module
    from runner.shards import Shard

    flags = ["--dataset", "Controlled_Images_A", "--method", "scaling_vis", "--weight", "0.5"]
    assert cli(data_root, tmp_path / "single", model_dirs["llava"], *flags) == 0
    # Two processes in turn: rank 1 writes its part, then rank 0 writes its own and merges both.
    for rank in (1, 0):
        monkeypatch.setattr(run_module, "current_shard", lambda rank=rank: Shard(rank, 2))
        assert cli(data_root, tmp_path / "sharded", model_dirs["llava"], *flags) == 0
    [single], [sharded] = run_folders(tmp_path / "single"), run_folders(tmp_path / "sharded")
    assert (sharded / "samples.jsonl").read_text() == (single / "samples.jsonl").read_text()
    assert metrics(sharded) == metrics(single)
    assert not list(sharded.glob("samples.rank*.jsonl"))


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "Controlled_Images_Z"], "unknown dataset"),
    (["--model-name", "llava9"], "llava1.5"),
    (["--method", "dolla"], "unknown method 'dolla'; choose one of: base, "),
    (["--method", "adapt_vis", "--threshold", "1.5"], "outside [0, 1]"),
    (["--method", "scaling_vis", "--weight", "-1"], "--weight -1 is outside [0, inf]"),
    (["--dataset", "COCO_QA_one_obj"], "--download"),
    (["--model-path", "/nonexistent/model"], "/nonexistent/model"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, data_root, flags, message, capsys):
    argv = ["--data-root", str(data_root), "--output-dir", str(tmp_path), "--dataset", "Controlled_Images_A",
            *flags]
    assert main_aro.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err and "\n" not in err


@pytest.mark.parametrize("argv", [["--option", "three"], ["--split", "train"], ["--batch-size", "two"]])
def test_bad_flag_values_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_aro.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "invalid" in err and "--help" in err


def test_unwritable_output_directory(tmp_path, data_root, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main_aro.main(["--data-root", str(data_root), "--output-dir", str(blocker / "out"),
                          "--dataset", "Controlled_Images_A"]) == 2
    assert "cannot write to output directory" in capsys.readouterr().err


def test_weight1_above_weight2_runs_with_a_warning(tmp_path, data_root, model_dirs, caplog):
    assert cli(data_root, tmp_path, model_dirs["llava"], "--dataset", "Controlled_Images_A", "--limit", "1",
               "--method", "adapt_vis", "--weight1", "1.5", "--weight2", "0.5", "--threshold", "0.4") == 0
    assert "weight1=1.5 > weight2=0.5" in caplog.text


@pytest.mark.slow
def test_two_real_processes_merge_into_the_single_process_result(tmp_path, data_root, model_dirs):
    """torchrun starts the same processes as `accelerate launch` (WORLD_SIZE, RANK; gloo on CPU)."""
    flags = ["--dataset", "Controlled_Images_A", "--method", "scaling_vis", "--weight", "0.5", "--data-root",
             str(data_root), "--model-path", model_dirs["llava"], "--max-new-tokens", "3"]
    assert main_aro.main([*flags, "--output-dir", str(tmp_path / "single")]) == 0
    repo = Path(main_aro.__file__).resolve().parent
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           str(repo / "main_aro.py"), *flags, "--output-dir", str(tmp_path / "sharded")],
                          capture_output=True, text=True, timeout=300, cwd=repo,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    [single], [sharded] = run_folders(tmp_path / "single"), run_folders(tmp_path / "sharded")
    assert metrics(sharded) == metrics(single)
    one, two = read_records(single / "samples.jsonl"), read_records(sharded / "samples.jsonl")
    # Each process runs one thread, so reductions (and the last digits of confidences) may differ.
    assert [(r["id"], r["generation"], r["correct"]) for r in one] == \
        [(r["id"], r["generation"], r["correct"]) for r in two]
    assert all(abs(a["confidence"] - b["confidence"]) < 1e-6 for a, b in zip(one, two))
    assert not list(sharded.glob("samples.rank*.jsonl"))
