"""main_aro.py --flip-test and --visual-prompt: mirrored copies scored for flip consistency, boxes drawn before
the processor, both recorded in the run folder and part of its identity."""
from __future__ import annotations

import json

import numpy as np
import pytest

import main_aro
from dataset_zoo import get_dataset
from dataset_zoo.boxes import box_source_for
from evaluation.runs import run_folders
from runner.evaluate import iterate_batches
from runner.records import read_records
from scoring.flip_consistency import flip_consistency


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def cli(data_root, output, *flags):
    return main_aro.main(["--data-root", str(data_root), "--output-dir", str(output), "--model-name", "toy",
                          "--limit", "6", "--method", "base", *flags])


def only_folder(output):
    [folder] = run_folders(output)
    return folder, json.loads((folder / "config.json").read_text()), json.loads((folder / "results.json").read_text())


def test_flip_test_answers_the_mirrors_and_scores_consistency_on_top_of_the_same_metrics(data_root, tmp_path):
    assert cli(data_root, tmp_path / "plain") == 0
    assert cli(data_root, tmp_path / "flip", "--flip-test") == 0
    _, _, plain = only_folder(tmp_path / "plain")
    folder, config, results = only_folder(tmp_path / "flip")
    records = read_records(folder / "samples.jsonl")
    flipped = [r for r in records if r["id"].endswith("~flip")]
    assert len(records) == 12 and len(flipped) == 6 and config["dataset_info"]["flip_test"] == {"flipped": 6,
                                                                                                  "refused": 0}
    for key in ("n", "accuracy", "n_correct", "n_unparsed"):  # the originals' metrics, as without flips
        assert results[key] == plain[key]
    assert results["flip_consistency"] == flip_consistency(records)
    gold = {r["id"]: r["gold"] for r in records}
    assert all(gold[r["id"]] == {"left": "right", "right": "left"}.get(gold[r["id"][:-5]], gold[r["id"][:-5]])
               for r in flipped)


def test_visual_prompts_reach_the_images_and_the_run_records_them(data_root, tmp_path):
    samples = get_dataset("Synthetic_Controlled_A", root=data_root)[:2]
    source = box_source_for("Synthetic_Controlled_A", root=data_root)
    from dataset_zoo.visual_prompt import BoxPrompt

    [(_, plain)] = list(iterate_batches(samples, 2, 0))
    [(_, boxed)] = list(iterate_batches(samples, 2, 0, BoxPrompt(source, colour="#00ff00", width=2)))
    for sample, before, after in zip(samples, plain, boxed):
        x0, y0, _, _ = source.boxes(sample, before)[0].box
        assert tuple(np.asarray(after)[y0, x0]) == (0, 255, 0) and tuple(np.asarray(before)[y0, x0]) != (0, 255, 0)
    assert cli(data_root, tmp_path, "--visual-prompt", "box", "--box-colour", "yellow") == 0
    assert cli(data_root, tmp_path) == 0
    folders = run_folders(tmp_path)
    assert len(folders) == 2  # a visual prompt is part of the run's identity
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    info = [c["visual_prompt_info"] for c in configs if c["visual_prompt"] == "box"]
    assert info == [{"kind": "box", "colour": "yellow", "width": 3,
                     "source": {"source": "synthetic_sidecar", "file": info[0]["source"]["file"]}}]


def test_a_dataset_without_boxes_is_one_error_line_before_the_model_loads(tmp_path, capsys, caplog):
    from tests.fixtures_data import write_vsr_fixture

    write_vsr_fixture(tmp_path / "data", "zeroshot", "test")
    assert main_aro.main(["--data-root", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"),
                          "--dataset", "VSR", "--visual-prompt", "box"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: VSR ships no object boxes") and err.count("\n") == 1
    assert "loaded" not in caplog.text and not (tmp_path / "out" / "toy").exists()
