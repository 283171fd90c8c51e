"""`python -m evaluation.report`: Table 1 / Table 2 cells, deltas, selection rule, LaTeX, long table, plots,
errors; on fake run folders written by tests/fixtures_runs.py (the expected numbers are its constants)."""
from __future__ import annotations

import re

import pytest

from evaluation import report
from evaluation.report_tables import latex_escape, with_delta
from tests.fixtures_runs import SCALING_TEST, SCALING_VAL, controlled_metrics, write_grid, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory):
    return write_grid(tmp_path_factory.mktemp("output"))


def run_report(capsys, *args) -> tuple[int, str, str]:
    code = report.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def parse_markdown(text: str) -> dict[str, dict]:
    """{title: {"caption", "rows": {label: {column: cell}}, "notes": [...]}} from the Markdown output."""
    tables, current, header = {}, None, None
    for line in text.splitlines():
        title = re.match(r"\*\*(.+?)\.\*\* (.*)", line)
        if title:
            current = tables[title.group(1)] = {"caption": title.group(2), "rows": {}, "notes": []}
            header = None
        elif line.startswith("| ") and current is not None:
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            if header is None:
                header = cells
            elif not cells[0].startswith("---"):
                current["rows"][cells[0]] = dict(zip(header[1:], cells[1:]))
        elif line.startswith("- ") and current is not None:
            current["notes"].append(line[2:])
    return tables


def parse_latex_rows(text: str) -> dict[str, list[str]]:
    """{row label: cells} of the body rows (between \\midrule and \\bottomrule) of every table."""
    rows = {}
    for body in re.findall(r"\\midrule\n(.*?)\\bottomrule", text, flags=re.S):
        for line in body.strip().splitlines():
            label, *cells = [part.strip() for part in line.removesuffix(r"\\").split(" & ")]
            rows[label] = cells
    return rows


@pytest.fixture(scope="module")
def markdown(grid_root):
    return report.render(report.build_tables(report.load_runs(grid_root)), "markdown")


# ------------------------------------------------------------------ Table 1 / Table 2 cells


def test_test_table_uses_the_val_selected_configuration_with_deltas(markdown):
    table = parse_markdown(markdown)["Table 1 · WhatsUp · llava1.5 · test"]
    rows = table["rows"]
    assert list(rows) == ["Baseline", "ScalingVis", "AdaptVis"]
    assert rows["Baseline"]["Controlled_A Acc"] == "60.3"
    # alpha 1.2 was selected on val (tie with 0.5); the unselected 0.5 scores 95.0 on test and must not show.
    assert rows["ScalingVis"]["Controlled_A Acc"] == "64.5 (+4.2)"
    assert rows["AdaptVis"]["Controlled_A Acc"] == "84.9 (+24.6)"
    assert rows["AdaptVis"]["Controlled_A Pair"] == "61.2 (+20.6)"
    assert rows["AdaptVis"]["Controlled_A Set"] == "30.3 (+30.3)"
    assert rows["ScalingVis"]["Controlled_B Acc"] == "70.0 (-3.1)"
    assert "selected per dataset on val by accuracy" in table["caption"]
    assert "ScalingVis selected on val: Controlled_A α=1.2; Controlled_B α=0.8." in table["notes"]
    assert "AdaptVis selected on val: Controlled_A α₁=0.5, α₂=1.5, β=0.4; Controlled_B α₁=0.5, α₂=1.5, β=0.3." \
        in table["notes"]


def test_missing_cells_are_dashes_and_explained(markdown):
    table = parse_markdown(markdown)["Table 1 · WhatsUp · llava1.5 · test"]
    rows = table["rows"]
    # Controlled_B's selected AdaptVis configuration was never run on test.
    assert [rows["AdaptVis"][f"Controlled_B {name}"] for name in ("Acc", "Pair", "Set")] == ["–", "–", "–"]
    assert any("Controlled_B: α₁=0.5, α₂=1.5, β=0.3 selected on val has no finished test run" in note
               for note in table["notes"])
    # A null metric is missing, and a value without a baseline value gets no delta.
    assert rows["Baseline"]["Controlled_B Set"] == "–"
    assert rows["ScalingVis"]["Controlled_B Set"] == "10.0"


def test_val_table_lists_every_configuration(markdown):
    table = parse_markdown(markdown)["Table 1 · WhatsUp · llava1.5 · val"]
    labels = list(table["rows"])
    assert labels[:5] == ["Baseline", "ScalingVis (α=0.5)", "ScalingVis (α=0.8)", "ScalingVis (α=1.2)",
                          "ScalingVis (α=2)"]
    assert len([label for label in labels if label.startswith("AdaptVis (")]) == 8
    assert table["rows"]["AdaptVis (α₁=0.5, α₂=1.5, β=0.4)"]["Controlled_A Acc"] == "85.0 (+25.0)"
    assert "one row per configuration present (the val split is the selection grid)" in table["caption"]


def test_unfinished_runs_are_not_reported(markdown, grid_root):
    assert "α=1.5" not in markdown
    long = report.render([report.long_table(report.load_runs(grid_root))], "markdown")
    rows = parse_markdown(long)["Every run"]["rows"]
    assert len(long.splitlines()) - 4 == 39  # title, blank, header, rule + one line per finished run
    assert not any("weight=1.5 " in (row["Hyper-parameters"] or "") for row in rows.values())


def test_vsr_table_without_val_runs_shows_every_configuration(markdown):
    table = parse_markdown(markdown)["Table 2 · VSR · llava1.5 · test"]
    rows = table["rows"]
    assert list(rows) == ["Baseline", "ScalingVis (α=0.5)", "ScalingVis (α=2)"]
    assert rows["Baseline"] == {"VSR Acc": "62.4", "VSR F1": "55.0", "VSR F1 (paper)": "51.3"}
    assert rows["ScalingVis (α=0.5)"] == {"VSR Acc": "65.0 (+2.6)", "VSR F1": "60.0 (+5.0)",
                                         "VSR F1 (paper)": "62.5 (+11.2)"}
    assert "no val runs to select on" in table["caption"] and "harmonic mean of TPR and TNR" in table["caption"]


def test_split_all_lists_every_configuration_and_says_why(tmp_path):
    write_run(tmp_path, dataset="COCO_QA_one_obj", split="val", method="scaling_vis", weight=0.8,
              metrics={"accuracy": 0.6})
    for alpha in (0.8, 2.0):
        write_run(tmp_path, dataset="COCO_QA_one_obj", split="all", method="scaling_vis", weight=alpha,
                  metrics={"accuracy": 0.5})
    table = parse_markdown(report.render(report.build_tables(report.load_runs(tmp_path)), "markdown"))[
        "Table 1 · WhatsUp · llava1.5 · all"]
    assert table["rows"] == {"Baseline": {"COCO one-obj Acc": "–"}, "ScalingVis (α=0.8)": {"COCO one-obj Acc": "50.0"},
                             "ScalingVis (α=2)": {"COCO one-obj Acc": "50.0"}}
    assert "split all contains the val samples" in table["caption"]


def test_each_model_gets_its_own_table(markdown):
    table = parse_markdown(markdown)["Table 1 · WhatsUp · qwen2-vl · test"]
    assert table["rows"] == {"Baseline": {"Controlled_A Acc": "50.0", "Controlled_A Pair": "30.0",
                                          "Controlled_A Set": "0.0"}}


def test_paper_pair_set_columns(grid_root):
    tables = report.build_tables(report.load_runs(grid_root), paper_pair_set=True)
    rows = parse_markdown(report.render(tables, "markdown"))["Table 1 · WhatsUp · llava1.5 · test"]["rows"]
    assert rows["AdaptVis"]["Controlled_A Pair (paper)"] == "30.6 (+10.3)"
    assert rows["AdaptVis"]["Controlled_A Set (paper)"] == "15.2 (+15.2)"


def test_settings_groups_and_options_stay_apart(tmp_path):
    write_run(tmp_path, dataset="VG_QA_one_obj", option="six", metrics={"accuracy": 0.359})
    write_run(tmp_path, dataset="VG_QA_one_obj", option="two", metrics={"accuracy": 0.5})
    write_run(tmp_path, dataset="VG_QA_one_obj", option="six", metrics={"accuracy": 0.9}, limit=5)
    tables = parse_markdown(report.render(report.build_tables(report.load_runs(tmp_path)), "markdown"))
    full, smoke = tables["Table 1 · WhatsUp · llava1.5 · test"], tables["Table 1 · WhatsUp · llava1.5 · test · limit=5"]
    assert full["rows"]["Baseline"] == {"VG one-obj (six) Acc": "35.9", "VG one-obj (two) Acc": "50.0"}
    assert smoke["rows"]["Baseline"] == {"VG one-obj Acc": "90.0"} and "settings: limit=5" in smoke["caption"]


def test_delta_is_the_difference_of_the_displayed_values():
    assert with_delta(0.6454, 0.6026) == "64.5 (+4.2)"  # raw difference 4.28 would print +4.3
    assert with_delta(0.5, 0.5) == "50.0 (+0.0)" and with_delta(None, 0.5) is None and with_delta(0.5, None) == "50.0"


# ------------------------------------------------------------------ LaTeX and output files


def test_latex_has_the_same_cells_in_booktabs(grid_root):
    latex = report.render(report.build_tables(report.load_runs(grid_root), pool=None), "latex")
    rows = parse_latex_rows(latex)
    assert rows["AdaptVis"][:3] == ["84.9 (+24.6)", "61.2 (+20.6)", "30.3 (+30.3)"]
    assert rows["AdaptVis"][3:] == ["--", "--", "--"]
    assert rows[r"ScalingVis ($\alpha$=0.5)"] == ["65.0 (+2.6)", "60.0 (+5.0)", "62.5 (+11.2)"]
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\multicolumn{3}{c}{Controlled\_A}",
                    r"\cmidrule(lr){2-4}", r"$\alpha_1$=0.5, $\alpha_2$=1.5, $\beta$=0.4"):
        assert command in latex
    assert latex.count(r"\begin{table}") == latex.count(r"\end{table}") == 4
    assert "-{}-weight" in latex and "–" not in latex


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 |x| –") == r"a\_b \& 50\% \#1 \textbar{}x\textbar{} --"


def test_cli_writes_markdown_and_latex_files(grid_root, tmp_path, capsys):
    code, out, _ = run_report(capsys, grid_root, "--split", "test", "--format", "both", "--out", tmp_path / "tables")
    assert code == 0 and out == ""
    md, tex = (tmp_path / "tables" / "tables.md").read_text(), (tmp_path / "tables" / "tables.tex").read_text()
    assert "| AdaptVis | 84.9 (+24.6) |" in md and "val ·" not in md
    assert r"AdaptVis & 84.9 (+24.6)" in tex


def test_cli_stdout_filters_and_long_table(grid_root, capsys):
    code, out, _ = run_report(capsys, grid_root, "--model", "qwen2-vl", "--long")
    tables = parse_markdown(out)
    assert code == 0 and list(tables) == ["Table 1 · WhatsUp · qwen2-vl · test", "Every run"]
    row = tables["Every run"]["rows"]["Controlled_A"]
    assert (row["Model"], row["Method"], row["option"], row["Acc"], row["Pair (paper)"]) == \
        ("qwen2-vl", "base", "four", "50.0", "15.0")


# ------------------------------------------------------------------ plots


def test_plots_are_written_with_deterministic_names(grid_root, tmp_path, capsys):
    code, _, _ = run_report(capsys, grid_root, "--split", "test", "--plot", tmp_path / "plots")
    names = sorted(path.name for path in (tmp_path / "plots").iterdir())
    assert code == 0 and names == sorted(
        [f"{kind}__{dataset}__llava1.5__test__four.png" for kind in ("scaling_vis", "adapt_vis", "confidence")
         for dataset in ("Controlled_Images_A", "Controlled_Images_B")] + ["scaling_vis__VSR__llava1.5__test.png"])
    for path in (tmp_path / "plots").iterdir():
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_plot_names_gain_a_hash_only_when_settings_collide(tmp_path):
    from evaluation.plots import write_plots
    for limit in (None, 5):
        write_run(tmp_path, dataset="Controlled_Images_A", method="scaling_vis", weight=0.8,
                  metrics=controlled_metrics(0.7, 0.5, 0.2), limit=limit)
    names = [path.name for path in write_plots(report.load_runs(tmp_path), tmp_path / "plots")]
    assert len(names) == 2 and all(re.fullmatch(r"scaling_vis__Controlled_Images_A__llava1\.5__test__four__"
                                                r"[0-9a-f]{8}\.png", name) for name in names)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("args, message", [
    (("--model", "llava1.6"), "no finished runs with model llava1.6; available: llava1.5, qwen2-vl"),
    (("--split", "all"), "no finished runs with split all; available: test, val"),
    (("--dataset", "VSR,COCO_QA_one_obj"), "no finished runs with dataset COCO_QA_one_obj"),
])
def test_cli_filters_that_match_nothing(grid_root, capsys, args, message):
    code, out, err = run_report(capsys, grid_root, *args)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_missing_root_and_broken_results(tmp_path, capsys):
    code, _, err = run_report(capsys, tmp_path / "missing")
    assert code == 2 and "run main_aro.py first" in err
    folder = write_run(tmp_path / "out", dataset="Controlled_Images_A", metrics={"accuracy": 0.5})
    (folder / "results.json").write_text("{")
    code, _, err = run_report(capsys, tmp_path / "out")
    assert code == 2 and f"{folder / 'results.json'}: not valid JSON" in err and err.count("\n") == 1


def test_out_names_a_folder_not_a_file(grid_root, tmp_path, capsys):
    (tmp_path / "t.md").write_text("")
    code, _, err = run_report(capsys, grid_root, "--out", tmp_path / "t.md")
    assert code == 2 and "--out names a folder" in err


def test_cli_bad_choice_exits_2(grid_root):
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(grid_root), "--format", "html"])
    assert exit_info.value.code == 2


def test_test_split_curves_come_from_the_val_grid_with_the_test_results_marked(grid_root, monkeypatch, tmp_path):
    """Issue 12 item 3: on test only the selected configurations exist, so the curve is the val grid's."""
    from evaluation import plots

    drawn = {}

    def keep(figure, path):
        axes = figure.axes[0]
        drawn[path.name] = ([(tuple(line.get_xdata()), tuple(line.get_ydata()), line.get_label())
                             for line in axes.lines if "Baseline" not in line.get_label()],
                            [tuple(map(tuple, c.get_offsets())) for c in axes.collections])
        return [path]

    monkeypatch.setattr(plots, "_save", keep)
    runs = report.load_runs(grid_root)
    plots.write_plots([run for run in runs if run.split == "test"], tmp_path, pool=runs)
    [(xs, ys, label)], [marked] = drawn["scaling_vis__Controlled_Images_A__llava1.5__test__four.png"]
    val = SCALING_VAL["Controlled_Images_A"]
    assert xs == tuple(sorted(val)) and ys == tuple(100 * val[a] for a in sorted(val)) and label.endswith("(val)")
    assert sorted(marked) == sorted((alpha, 100 * values[0]) for alpha, values in
                                    SCALING_TEST["Controlled_Images_A"].items())
    lines, _ = drawn["scaling_vis__VSR__llava1.5__test.png"]  # no val runs: the test points themselves
    assert [label for _, _, label in lines] == ["ScalingVis"]
