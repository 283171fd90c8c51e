"""main_aro.py --flip-test and --visual-prompt: mirrored copies scored for flip consistency, boxes drawn before
the processor (from any box source, a user's --box-detector module too, also in `training.flip_test`), both
recorded in the run folder and part of its identity."""
from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest

import main_aro
from dataset_zoo import get_dataset
from dataset_zoo.boxes import box_source_for, load_detector
from dataset_zoo.splits import SPLITS
from evaluation.runs import run_folders
from runner import run as runner_run
from runner.evaluate import iterate_batches
from runner.records import read_records
from scoring.flip_consistency import flip_consistency
from training import flip_test

# What the detector module written by `write_detector` finds: the first named object, at these pixels.
DETECTED = (10, 12, 40, 44)
GREEN = (0, 255, 0)


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


def write_detector(directory, monkeypatch, module: str, body: str = None) -> str:
    """A detector module `<directory>/<module>.py` importable as `module` (a name per test: imports are cached)."""
    body = body if body is not None else (f"def detect(image, names):\n"
                                          f"    return {{names[0]: {list(DETECTED)}}} if names else {{}}\n")
    (directory / f"{module}.py").write_text(body)
    monkeypatch.syspath_prepend(str(directory))
    importlib.invalidate_caches()
    return str(directory / f"{module}.py")


def capture_images(monkeypatch) -> list:
    """Every image the run hands to the model, as it leaves the loader (visual prompt drawn)."""
    seen = []

    def recording(*args, **kwargs):
        for batch, images in iterate_batches(*args, **kwargs):
            seen.extend(images)
            yield batch, images
    monkeypatch.setattr(runner_run, "iterate_batches", recording)
    return seen


def test_a_box_detector_module_draws_at_its_pixels_and_the_run_records_it(data_root, tmp_path, monkeypatch):
    file = write_detector(tmp_path, monkeypatch, "aro_detector_draws")
    seen = capture_images(monkeypatch)
    assert cli(data_root, tmp_path / "out", "--visual-prompt", "box", "--box-detector", "aro_detector_draws:detect",
               "--box-colour", "#00ff00", "--box-width", "2") == 0
    x0, y0, x1, y1 = DETECTED
    assert len(seen) == 6
    for image in seen:
        pixels = np.asarray(image)
        assert tuple(pixels[y0, x0]) == GREEN and tuple(pixels[y1 - 1, x1 - 1]) == GREEN
        assert tuple(pixels[y0 + 2, x0 + 2]) != GREEN  # a 2 px outline, inside the box
    folder, config, _ = only_folder(tmp_path / "out")
    assert config["box_detector"] == "aro_detector_draws:detect"
    assert config["visual_prompt_info"] == {"kind": "box", "colour": "#00ff00", "width": 2, "source": {
        "source": "detector", "detector": "aro_detector_draws:detect", "file": file}}
    assert cli(data_root, tmp_path / "out", "--visual-prompt", "box", "--box-colour", "#00ff00", "--box-width",
               "2") == 0
    assert len(run_folders(tmp_path / "out")) == 2  # the detector is part of the run's identity


def test_edited_boxes_or_detector_code_are_a_different_run_not_a_skip(data_root, tmp_path, monkeypatch, capsys):
    write_detector(tmp_path, monkeypatch, "aro_detector_edited")
    flags = ("--visual-prompt", "box", "--box-detector", "aro_detector_edited:detect")
    assert cli(data_root, tmp_path / "out", *flags) == 0
    _, config, _ = only_folder(tmp_path / "out")
    assert config["identity"]["boxes"]["file"]["sha256"]
    (tmp_path / "aro_detector_edited.py").write_text("def detect(image, names):\n    return {}\n")
    capsys.readouterr()
    assert cli(data_root, tmp_path / "out", *flags) == 2
    error = capsys.readouterr().err
    assert "different inputs (boxes: " in error and "--overwrite" in error
    assert cli(data_root, tmp_path / "out", *flags, "--overwrite") == 0


@pytest.mark.parametrize("spec, flags, message", [
    ("detector.py:detect", ("--visual-prompt", "box"), "is not MODULE:FUNCTION"),
    ("no_such_detector_module:detect", ("--visual-prompt", "box"), "no module no_such_detector_module"),
    ("aro_detector_broken:detect", ("--visual-prompt", "box"),
     "importing aro_detector_broken failed (ModuleNotFoundError: No module named 'not_installed')"),
    ("aro_detector_bad:missing", ("--visual-prompt", "box"), "has no missing"),
    ("aro_detector_bad:detect", (), "add --visual-prompt box"),
    ("aro_detector_bad:detect", ("--visual-prompt", "box", "--boxes-json", "b.json"), "two box sources"),
], ids=["file-path", "no-module", "import-fails", "no-function", "no-visual-prompt", "two-sources"])
def test_a_bad_box_detector_is_one_error_line_before_the_model_loads(spec, flags, message, data_root, tmp_path,
                                                                     monkeypatch, capsys, caplog):
    write_detector(tmp_path, monkeypatch, "aro_detector_bad")
    write_detector(tmp_path, monkeypatch, "aro_detector_broken", "import not_installed\n")
    assert cli(data_root, tmp_path / "out", "--box-detector", spec, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert "loaded" not in caplog.text and not (tmp_path / "out" / "toy").exists()


def test_flip_test_draws_a_box_detectors_boxes_on_both_images(data_root, tmp_path, monkeypatch, capsys):
    write_detector(tmp_path, monkeypatch, "aro_detector_flips")
    output = tmp_path / "flip.jsonl"
    assert flip_test.main(["--data-root", str(data_root), "--limit", "2", "--max-new-tokens", "2", "--visual-prompt",
                           "box", "--box-detector", "aro_detector_flips:detect", "--output", str(output)]) == 0
    metrics = json.loads((tmp_path / "flip.jsonl.metrics.json").read_text())
    assert metrics["visual_prompt"]["source"]["detector"] == "aro_detector_flips:detect"
    assert (metrics["visual_prompt"]["drawn"], metrics["visual_prompt"]["missing"]) == (4, 0)  # originals and flips


def test_flip_test_refuses_a_bad_box_detector_before_the_model_loads(data_root, tmp_path, monkeypatch, capsys):
    write_detector(tmp_path, monkeypatch, "aro_detector_flip_bad")
    assert flip_test.main(["--data-root", str(data_root), "--visual-prompt", "box", "--box-detector",
                           "aro_detector_flip_bad:nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --box-detector aro_detector_flip_bad:nothing") and err.count("\n") == 1


def test_flip_test_offers_the_toolkits_splits():
    [split] = [action for action in flip_test.build_parser()._actions if action.dest == "split"]
    assert tuple(split.choices) == SPLITS


def test_a_detector_module_in_the_current_directory_imports_without_sys_path(tmp_path, monkeypatch):
    # `python main_aro.py` puts the script's folder on sys.path, not the current directory.
    (tmp_path / "aro_detector_cwd.py").write_text("def detect(image, names):\n    return {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    importlib.invalidate_caches()
    assert load_detector("aro_detector_cwd:detect").__module__ == "aro_detector_cwd"


@pytest.mark.parametrize("flags, message", [
    (("--box-colour", "yellow"), "--box-colour applies only with --visual-prompt box"),
    (("--box-width", "5", "--boxes-json", "b.json"), "--box-width and --boxes-json apply only with --visual-prompt"),
    (("--coco-annotations", "instances.json"), "--coco-annotations applies only with --visual-prompt box"),
    (("--visual-prompt", "box", "--box-width", "0"), "--box-width must be >= 1"),
    (("--visual-prompt", "box", "--box-colour", "nocolour"), "unknown box colour 'nocolour'"),
], ids=["colour", "width-and-json", "coco", "width-0", "bad-colour"])
def test_box_flags_without_a_box_prompt_or_out_of_range_are_one_error_line(flags, message, data_root, tmp_path,
                                                                             capsys):
    # Ignored, they would still have changed the run folder's hash (a second folder for the same run).
    assert cli(data_root, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_box_flags_at_their_defaults_need_no_box_prompt_and_the_analysis_keeps_its_boxes():
    from runner.cli import parse_config
    from runner.config import RunConfig, validate

    assert parse_config(["--box-colour", "red", "--box-width", "3"]) == parse_config(["--method", "base"])
    # python -m analysis reads --boxes-json / --coco-annotations for its overlap figures, with no visual prompt.
    validate(RunConfig(coco_annotations="instances_val2017.json", boxes_json="boxes.json"))


@pytest.mark.parametrize("flags, message", [
    (("--box-width", "5"), "--box-width applies only with --visual-prompt box"),
    (("--visual-prompt", "box", "--box-colour", "nocolour"), "unknown box colour 'nocolour'"),
    (("--device", "gpu"), "unknown device 'gpu'"),
])
def test_flip_test_checks_its_box_flags_and_device_before_loading(flags, message, data_root, tmp_path, capsys):
    assert flip_test.main(["--data-root", str(data_root), "--output", str(tmp_path / "flip.jsonl"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "flip.jsonl").exists()
