"""`python -m analysis`: every figure renders from a tiny model on synthetic scenes, the COCO-annotation box path
works on a fixture in the real instances_val2017.json schema, and run folders feed the record figures."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.figures import FIGURES
from model_zoo.tiny import build_tiny_vlm, save_tiny_vlm
from tests.fixtures_data import IMAGE_SIZE, write_whatsup_qa_fixture
from tests.fixtures_runs import write_run


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    return save_tiny_vlm(*build_tiny_vlm("llava"), tmp_path_factory.mktemp("models") / "tiny-llava")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _check_folder(folder: Path, name: str) -> None:
    assert any(folder.glob(f"{name}*.png")), name
    assert any(folder.glob("*.csv")) or any(folder.glob("*.json")), name
    caption = (folder / "caption.txt").read_text().strip()
    assert caption and "\n" not in caption


@pytest.fixture(scope="module")
def model_argv(tiny_llava, tmp_path_factory) -> list[str]:
    """Flags of a model-mode analysis of the tiny LLaVA on 4 synthetic scenes; captures shared by the tests."""
    root = tmp_path_factory.mktemp("analysis")
    return ["--model-path", str(tiny_llava), "--dataset", "Synthetic_Controlled_A", "--data-root", str(root / "data"),
            "--limit", "4", "--method", "scaling_vis", "--weight", "0.5", "--max-new-tokens", "2", "--samples",
            "0,2", "--capture-dir", str(root / "captures"), "--dpi", "30"]


ATTENTION_FIGURES = ("attention-mass", "attention-variance", "heatmaps", "layer-lines", "overlap-auroc",
                     "confidence-auroc", "logit-distribution")
OTHER_FIGURES = tuple(name for name in FIGURES if name not in ATTENTION_FIGURES)


def test_attention_figures_render_from_a_tiny_model_on_synthetic_scenes(model_argv, tmp_path, capsys):
    out = tmp_path / "figures"
    for name in ATTENTION_FIGURES:
        assert main([name, *model_argv, "--out", str(out)]) == 0
        _check_folder(out / name, name)
        assert capsys.readouterr().out.startswith(f"{name}: ")
    captures = Path(model_argv[model_argv.index("--capture-dir") + 1])
    assert len(list((captures / "base").glob("*.npz"))) == 4
    assert len(list((captures / "scaling_vis_a-0.5").glob("*.npz"))) == 4
    assert len(list((out / "heatmaps").glob("*.png"))) == 2
    rows = _rows(out / "attention-mass" / "attention-mass.csv")
    base = [r for r in rows if r["configuration"] == "baseline"]
    assert len(base) == 2 and all(abs(float(r["image_mass"]) + float(r["text_mass"]) - 1) < 1e-4 for r in base)


def test_record_figures_and_saliency_render_from_a_tiny_model(model_argv, tmp_path):
    out = tmp_path / "figures"
    for name in OTHER_FIGURES:
        assert main([name, *model_argv, "--out", str(out)]) == 0
        _check_folder(out / name, name)
    sweep = _rows(out / "alpha-sweep" / "alpha-sweep.csv")
    assert sorted({float(r["alpha"]) for r in sweep}) == [0.5, 0.8, 1.0, 1.2, 1.5, 2.0]


def test_captures_are_reused_while_the_settings_match(model_argv, tmp_path):
    captures = Path(model_argv[model_argv.index("--capture-dir") + 1])
    assert main(["attention-mass", *model_argv, "--out", str(tmp_path)]) == 0
    stamp = (captures / "base" / "00000.npz").stat().st_mtime_ns
    assert main(["attention-variance", *model_argv, "--out", str(tmp_path)]) == 0
    assert (captures / "base" / "00000.npz").stat().st_mtime_ns == stamp
    changed = [*model_argv, "--out", str(tmp_path)]
    changed[changed.index("--limit") + 1] = "3"
    assert main(["attention-mass", *changed]) == 0
    assert len(list((captures / "base").glob("*.npz"))) == 3


@pytest.mark.slow
def test_all_draws_every_figure(model_argv, tmp_path, capsys):
    assert main(["all", *model_argv, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for name in FIGURES:
        _check_folder(tmp_path / name, name)
        assert f"{name}: " in printed


def _coco_instances(path: Path) -> Path:
    """instances_val2017.json in COCO's own schema for the COCO_QA_two_obj fixture images."""
    width, height = IMAGE_SIZE
    names = ["dining table", "refrigerator", "cup", "laptop", "clock", "sink", "toilet", "person"]
    categories = [{"supercategory": "thing", "id": 10 + i, "name": name} for i, name in enumerate(names)]
    ids = {name: 10 + i for i, name in enumerate(names)}
    images = [{"license": 1, "file_name": f"{image_id:012d}.jpg", "coco_url": "", "height": height, "width": width,
               "date_captured": "", "flickr_url": "", "id": image_id} for image_id in (900011, 900012, 900013, 900014)]
    pairs = [(900011, "dining table", [0, 8, 14, 12]), (900011, "refrigerator", [18, 2, 12, 20]),
             (900012, "cup", [20, 6, 8, 8]), (900012, "laptop", [2, 4, 14, 10]), (900013, "clock", [10, 0, 10, 8]),
             (900013, "sink", [8, 12, 16, 10]), (900014, "toilet", [8, 14, 12, 10]), (900014, "sink", [6, 0, 18, 9]),
             (900014, "person", [0, 0, 5, 5])]
    annotations = [{"segmentation": [[x, y, x + w, y, x + w, y + h]], "area": float(w * h), "iscrowd": 0,
                    "image_id": image, "bbox": [float(x), float(y), float(w), float(h)], "category_id": ids[name],
                    "id": 5000 + i} for i, (image, name, (x, y, w, h)) in enumerate(pairs)]
    data = {"info": {"description": "fixture"}, "licenses": [{"url": "", "id": 1, "name": "CC BY 4.0"}],
            "images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return path


def test_overlap_auroc_reads_boxes_from_coco_instance_annotations(tiny_llava, tmp_path):
    data = tmp_path / "data"
    write_whatsup_qa_fixture(data, "COCO_QA_two_obj")
    instances = _coco_instances(tmp_path / "instances_val2017.json")
    out = tmp_path / "figures"
    assert main(["overlap-auroc", "--model-path", str(tiny_llava), "--dataset", "COCO_QA_two_obj", "--data-root",
                 str(data), "--coco-annotations", str(instances), "--max-new-tokens", "2", "--out", str(out),
                 "--dpi", "40"]) == 0
    rows = _rows(out / "overlap-auroc" / "overlap-auroc.csv")
    assert {r["n"] for r in rows} == {"4"} and {r["n_without_boxes"] for r in rows} == {"0"}
    overlaps = json.loads((out / "overlap-auroc" / "overlap-auroc.json").read_text())["baseline"]
    assert len(overlaps) == 4 and all(0.0 <= v <= 1.0 for s in overlaps.values() for v in s["overlap"])
    # the same boxes as a boxes JSON (dataset_zoo/boxes.py schema) give the same overlaps
    coco = json.loads(instances.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    boxes: dict = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(files[a["image_id"]], {})[names[a["category_id"]]] = [x, y, x + w, y + h]
    for entry in boxes.values():
        entry.pop("person", None)  # a boxes JSON lists only the objects the question refers to
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    again = tmp_path / "again"
    assert main(["overlap-auroc", "--model-path", str(tiny_llava), "--dataset", "COCO_QA_two_obj", "--data-root",
                 str(data), "--boxes-json", str(tmp_path / "boxes.json"), "--max-new-tokens", "2", "--out",
                 str(again), "--capture-dir", str(out / "captures"), "--dpi", "40"]) == 0
    assert json.loads((again / "overlap-auroc" / "overlap-auroc.json").read_text())["baseline"] == overlaps


def _records(pairs: list[tuple[str, str | None]], confidence: float = 0.9) -> list[dict]:
    return [{"id": f"s{i}", "question": "q", "generation": str(p), "prediction": p, "gold": g, "correct": g == p,
             "relation": g, "confidence": confidence - 0.01 * i, "alpha": 1.0} for i, (g, p) in enumerate(pairs)]


BASE = [("left", "right"), ("left", "left"), ("on", "under"), ("on", "on"), ("under", "left"), ("right", None)]
SCALED = [("left", "left"), ("left", "left"), ("on", "under"), ("on", "left"), ("under", "under"), ("right", "right")]


def test_record_figures_read_run_folders(tmp_path):
    runs = tmp_path / "output"
    runs.mkdir()
    write_run(runs, dataset="Controlled_Images_A", samples=_records(BASE))
    write_run(runs, dataset="Controlled_Images_A", method="scaling_vis", weight=0.5, samples=_records(SCALED))
    write_run(runs, dataset="Controlled_Images_A", method="scaling_vis", weight=2.0, samples=_records(BASE))
    out = tmp_path / "figures"
    for name in ("errors", "compare", "alpha-sweep", "relation-confidence"):
        assert main([name, "--runs", str(runs), "--out", str(out), "--dpi", "40"]) == 0
        _check_folder(out / name, name)
    errors = {(r["run"], r["error_type"]): int(r["count"]) for r in _rows(out / "errors" / "errors.csv")}
    assert errors[("base", "horizontal flip")] == 1 and errors[("base", "vertical flip")] == 1
    assert errors[("base", "orthogonal")] == 1 and errors[("base", "unparsed")] == 1
    assert errors[("scaling_vis weight=0.5", "orthogonal")] == 1
    cases = json.loads((out / "compare" / "compare.json").read_text())["cases"]
    assert {(c["kind"], c["id"]) for c in cases} == {("fixed", "s0"), ("fixed", "s4"), ("fixed", "s5"),
                                                    ("broken", "s3")}
    sweep = {(float(r["alpha"]), r["relation"]): float(r["accuracy"]) for r in _rows(out / "alpha-sweep" /
                                                                                        "alpha-sweep.csv")}
    assert sweep[(1.0, "all")] == pytest.approx(2 / 6) and sweep[(0.5, "all")] == pytest.approx(4 / 6)


def test_command_line_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["heatmaps", "--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: heatmaps needs the model")
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-figure"])
    assert exit_info.value.code == 2
    assert main(["errors", "--runs", str(tmp_path / "missing")]) == 2


def test_all_on_run_folders_draws_what_the_records_allow_and_names_the_rest(tmp_path, capsys):
    runs = tmp_path / "output"
    runs.mkdir()
    write_run(runs, dataset="Controlled_Images_A", method="adapt_vis", weight1=0.5, weight2=1.5, threshold=0.4,
              samples=_records(BASE))
    assert main(["all", "--runs", str(runs), "--out", str(tmp_path / "figures"), "--dpi", "30"]) == 2
    captured = capsys.readouterr()
    assert "errors: " in captured.out and "relation-confidence: " in captured.out
    assert "error: alpha-sweep: " in captured.err and "error: compare: " in captured.err


def test_adaptvis_captures_each_sample_at_the_alpha_its_rule_chose(model_argv, tmp_path):
    argv = [*model_argv, "--out", str(tmp_path)]
    method = argv.index("--method")
    argv[method:method + 4] = ["--method", "adapt_vis", "--weight1", "0.5", "--weight2", "1.5", "--threshold", "0.4"]
    argv[argv.index("--capture-dir") + 1] = str(tmp_path / "captures")
    assert main(["layer-lines", *argv]) == 0
    stores = {p.name: p for p in (tmp_path / "captures").iterdir()}
    label = next(name for name in stores if name.startswith("adapt_vis"))
    records = [json.loads(line) for line in (stores[label] / "records.jsonl").read_text().splitlines()]
    base = [json.loads(line) for line in (stores["base"] / "records.jsonl").read_text().splitlines()]
    for record, stock in zip(records, base):
        assert record["confidence_base"] == pytest.approx(stock["confidence"])
        assert record["alpha"] == (0.5 if round(stock["confidence"], 2) < 0.4 else 1.5)
        assert record["branch"] in ("smooth", "sharpen")
