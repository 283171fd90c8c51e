"""main_aro.py on the general benchmarks, end to end on the shipped toy model and fixture copies."""
import json

import pytest

import main_aro
from runner.records import read_records
from tests.fixtures_general import write_general_fixture


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in ("POPE", "GQA", "VQAv2"):
        write_general_fixture(root, name)
    return root


def cli(data_root, output, *flags):
    return main_aro.main(["--data-root", str(data_root), "--output-dir", str(output), "--model-name", "toy",
                          "--max-new-tokens", "3", *flags])


def folders(output):
    return {p.name.split("__")[2]: p for p in output.iterdir() if p.is_dir()}


def test_pope_grid_in_one_pass_records_verdicts_and_subset_metrics(data_root, tmp_path):
    assert cli(data_root, tmp_path, "--dataset", "POPE", "--method", "base,scaling_vis,adapt_vis",
               "--weight", "0.5,2", "--weight1", "0.5", "--weight2", "1.5", "--threshold", "0.4") == 0
    runs = folders(tmp_path)
    assert set(runs) == {"base", "scaling_vis_a-0.5", "scaling_vis_a-2", "adapt_vis_w1-0.5_w2-1.5_t-0.4"}
    for folder in runs.values():
        assert "__all__" in folder.name  # the POPE option (subset) is part of the run's name
        records = read_records(folder / "samples.jsonl")
        results = json.loads((folder / "results.json").read_text())
        assert len(records) == results["n"] == 6 and all("prediction" in r and "correct" in r for r in records)
        assert results["accuracy"] == sum(r["correct"] for r in records) / 6
        assert set(results["per_subset"]) == {"adversarial", "popular", "random"}
        assert set(results["subset_average"]) == {"accuracy", "precision", "recall", "f1", "yes_ratio"}
        assert results["yes_ratio"] == sum(r["prediction"] == "yes" for r in records) / 6
    assert json.loads((runs["base"] / "config.json").read_text())["dataset_info"]["option"] == "all"


@pytest.mark.parametrize("dataset", ["VQAv2", "GQA"])
def test_short_answer_runs_record_scores_and_vqa_accuracy(data_root, tmp_path, dataset):
    assert cli(data_root, tmp_path, "--dataset", dataset, "--method", "base") == 0
    [folder] = folders(tmp_path).values()
    records = read_records(folder / "samples.jsonl")
    results = json.loads((folder / "results.json").read_text())
    assert all(0.0 <= r["score"] <= 1.0 for r in records) and "confusion" not in results
    assert results["accuracy"] == pytest.approx(sum(r["score"] for r in records) / len(records))


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "TextVQA"], "TextVQA data not found: place the parquet files data/validation-*.parquet"),
    (["--dataset", "POPE", "--option", "four"], "option 'four' is not available for POPE"),
    (["--dataset", "POPE", "--prompt-variant", "reversed"], "apply to the WhatsUp datasets only"),
])
def test_bad_input_is_one_error_line_and_exit_2(data_root, tmp_path, capsys, flags, message):
    assert cli(data_root, tmp_path, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_an_unknown_subset_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_aro.main(["--dataset", "POPE", "--option", "hard"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and "adversarial" in err and err.count("\n") == 1


def test_report_prints_the_papers_general_qa_table(data_root, tmp_path, capsys):
    """Table 4/10 layout: Baseline and each method, POPE-A/P/R/AVG, GQA, VQAv2 (TextVQA has no fixture here)."""
    from evaluation import report
    from tests.test_report import parse_markdown

    for dataset in ("POPE", "GQA", "VQAv2"):
        assert cli(data_root, tmp_path, "--dataset", dataset, "--method", "base,scaling_vis", "--weight", "2") == 0
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    tables = parse_markdown(capsys.readouterr().out)
    [(title, table)] = [(t, v) for t, v in tables.items() if "General QA" in t]
    assert title.startswith("Table 4 · General QA · toy")
    assert list(table["rows"]) == ["Baseline", "ScalingVis (α=2)"]
    columns = list(table["rows"]["Baseline"])
    assert columns == ["POPE-A Acc", "POPE-P Acc", "POPE-R Acc", "POPE-AVG Acc", "GQA Acc", "VQAv2 Acc"]
    pope = [json.loads((p / "results.json").read_text()) for p in tmp_path.iterdir()
            if p.is_dir() and p.name.startswith("POPE__toy__base__")][0]
    assert table["rows"]["Baseline"]["POPE-A Acc"] == f"{100 * pope['per_subset']['adversarial']['accuracy']:.1f}"
    assert table["rows"]["Baseline"]["POPE-AVG Acc"] == f"{100 * pope['subset_average']['accuracy']:.1f}"
    assert "POPE: accuracy on the adversarial (A)" in table["caption"]
