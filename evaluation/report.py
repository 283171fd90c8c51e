"""Turn run folders into the paper's tables: Table 1 (WhatsUp: Acc, Pair Acc, Set Acc per subset), Table 2
(VSR: Acc, F1, F1 (paper)) and Table 4 (general QA: POPE-A/P/R/AVG, GQA, VQAv2, TextVQA), as Markdown
and LaTeX (booktabs), with deltas over the baseline.

Examples:
    python -m evaluation.report output/                                   # Markdown tables on stdout
    python -m evaluation.report output/ --split test --format both --out output/tables   # tables.md + .tex
    python -m evaluation.report output/ --model llava1.5 --long           # plus one row per run
    python -m evaluation.report output/ --plot output/plots               # PNG curves and histograms

One table per (model, split, settings) and benchmark family. Rows: Baseline, then every other
registered method present, in the registry's order (e.g. +DoLa, +VCD, ScalingVis, AdaptVis). On the
test split, when val runs of the same settings exist, each method gets one row whose hyper-parameters
are selected per dataset on val (`evaluation.selection`; the notes list them);
otherwise (val or all split, or no val runs) every configuration present gets its own row, named by
its hyper-parameters. The caption says which rule applied. Values are percentages with one decimal;
"84.9 (+24.6)" is a value and its difference to the Baseline row; "–" marks a missing run or metric.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError
from dataset_zoo.catalog import CONTROLLED, GENERAL, SPECS, VSR
from dataset_zoo.splits import SPLITS
from evaluation.report_long import long_table
from evaluation.report_tables import Row, Table, render_latex, render_markdown, with_delta
from evaluation.runs import (RunRecord, dataset_label, dataset_rank, format_number,
                             latest_per_configuration, load_runs, non_default_settings)
from evaluation.selection import METRICS, matching_runs, select_best
from methods import all_methods, get_method

logger = logging.getLogger(__name__)

# Why a table lists every configuration instead of the val-selected one (selection happens for test only).
NO_SELECTION_REASONS = {"val": "the val split is the selection grid",
                        "all": "split all contains the val samples, so nothing is selected on val"}


@dataclass(frozen=True)
class Column:
    """One column group: a dataset with one option count, and the (sub-column, metric key) pairs it shows."""

    dataset: str
    option: Optional[str]
    label: str
    metrics: tuple[tuple[str, str], ...]


def family_of(dataset: str) -> Optional[str]:
    spec = SPECS.get(dataset)
    return spec.family if spec else None


def method_title(method: str) -> str:
    return get_method(method).title


def hyperparameter_label(method: str, hyperparameters: dict) -> str:
    """ "α=0.8" or "α₁=0.5, α₂=1.5, β=0.4" (the paper's names; the legend maps them to flags), plus the
    other hyper-parameters where they differ from their defaults (", scope=all")."""
    parts = []
    for hyperparameter in get_method(method).hyperparameters:
        value = hyperparameters.get(hyperparameter.name)
        if hyperparameter.short:
            parts.append(f"{hyperparameter.symbol or hyperparameter.name}={format_number(value)}")
        elif value != hyperparameter.default:
            parts.append(f"{hyperparameter.name}={format_number(value)}")
    return ", ".join(parts)


def hyperparameter_legend(methods: Sequence[str]) -> str:
    """ "α = --weight (ScalingVis); α₁, α₂, β = --weight1, --weight2, --threshold (AdaptVis)." for `methods`."""
    parts = []
    for method in methods:
        labelled = [h for h in get_method(method).hyperparameters if h.short and h.symbol]
        if labelled:
            parts.append(f"{', '.join(h.symbol for h in labelled)} = {', '.join(h.flag for h in labelled)} "
                         f"({method_title(method)})")
    return "; ".join(parts) + "." if parts else ""


# ------------------------------------------------------------------ tables


def build_tables(runs: Sequence[RunRecord], *, pool: Optional[Sequence[RunRecord]] = None,
                 metric: str = "accuracy", paper_pair_set: bool = False) -> list[Table]:
    """Table 1 / Table 2 for every (model, split, settings) among `runs`.

    pool: the runs to select hyper-parameters from (default: `runs`); pass every loaded run when
        `runs` is filtered to one split, so that test tables can still see the val runs.
    """
    shown = latest_per_configuration(runs)
    pool = latest_per_configuration(pool if pool is not None else runs)
    contexts: dict[tuple, list[RunRecord]] = {}
    for run in shown:
        contexts.setdefault(_context(run), []).append(run)
    tables = []
    for context in sorted(contexts, key=_context_order):
        for number in TABLE_KINDS:
            members = [run for run in contexts[context] if table_number(run.dataset) == number]
            if members:
                tables.append(_build_table(number, context, members, pool, metric, paper_pair_set))
    return tables


# The paper's table numbers: 1 WhatsUp, 2 VSR, 4 the general-QA check of the appendix (Tables 3, 4, 10).
TABLE_KINDS = {1: "WhatsUp", 2: "VSR", 4: "General QA"}
POPE_COLUMNS = (("A", "adversarial"), ("P", "popular"), ("R", "random"))


def table_number(dataset: str) -> int:
    family = family_of(dataset)
    return 2 if family == VSR else 4 if family == GENERAL else 1


def _context(run: RunRecord) -> tuple:
    """(model, split, settings but option): the runs one table compares (option varies per dataset)."""
    return (run.model, run.split, tuple(item for item in run.settings if item[0] != "option"))


def _context_order(context: tuple) -> tuple:
    model, split, settings = context
    return (model, SPLITS.index(split) if split in SPLITS else len(SPLITS), repr(settings))


def _columns(runs: Sequence[RunRecord], paper_pair_set: bool) -> list[Column]:
    pairs = sorted({(run.dataset, run.option) for run in runs}, key=lambda p: (dataset_rank(p[0]), p[1] or ""))
    columns = []
    for dataset, option in pairs:
        if dataset == "POPE":
            columns.extend(_pope_columns(option))
            continue
        several = sum(other == dataset for other, _ in pairs) > 1
        label = dataset_label(dataset) + (f" ({option})" if several else "")
        columns.append(Column(dataset, option, label, _column_metrics(dataset, paper_pair_set)))
    return columns


def _pope_columns(option: Optional[str]) -> list[Column]:
    """POPE-A/P/R/AVG (accuracy) as the paper lays them out: from one run over all subsets (its per-subset
    metrics and their average), or one column per single-subset run."""
    if option != "all":
        short = dict((name, letter) for letter, name in POPE_COLUMNS).get(option, option)
        return [Column("POPE", option, f"POPE-{short}", (("Acc", "accuracy"),))]
    return ([Column("POPE", option, f"POPE-{letter}", (("Acc", f"per_subset.{subset}.accuracy"),))
             for letter, subset in POPE_COLUMNS]
            + [Column("POPE", option, "POPE-AVG", (("Acc", "subset_average.accuracy"),))])


def _column_metrics(dataset: str, paper_pair_set: bool) -> tuple[tuple[str, str], ...]:
    family = family_of(dataset)
    if family == CONTROLLED:
        suffix, key = (" (paper)", "_paper") if paper_pair_set else ("", "")
        return (("Acc", "accuracy"), (f"Pair{suffix}", f"pair_accuracy{key}"), (f"Set{suffix}", f"set_accuracy{key}"))
    if family == VSR:
        return (("Acc", "accuracy"), ("F1", "f1"), ("F1 (paper)", "f1_paper"))
    return (("Acc", "accuracy"),)


def _build_table(number: int, context: tuple, runs: list[RunRecord], pool: Sequence[RunRecord],
                 metric: str, paper_pair_set: bool) -> Table:
    model, split, settings = context
    columns = _columns(runs, paper_pair_set)
    baselines = {column: _find(runs, column, "base", {}) for column in columns}
    rows = [Row("Baseline", [cell for column in columns for cell in _cells(baselines[column], column, None)])]
    rules, notes = [], []
    present = [m.name for m in all_methods() if m.name != "base" and any(run.method == m.name for run in runs)]
    for method in present:
        method_runs = [run for run in runs if run.method == method]
        selections = _val_selections(pool, columns, model, method, settings, metric) if split == "test" else {}
        if selections:
            rows.append(_selected_row(method, method_runs, columns, baselines, selections, notes))
            rules.append(f"{method_title(method)}: hyper-parameters selected per dataset on val by {metric}, "
                         f"ties broken in favour of {get_method(method).preference_rule} (listed below)")
        elif method_runs:
            rows.extend(_configuration_rows(method, method_runs, columns, baselines))
            why = NO_SELECTION_REASONS.get(split, "no val runs to select on")
            rules.append(f"{method_title(method)}: one row per configuration present ({why})")
    kind = TABLE_KINDS[number]
    groups = [(column.label, tuple(name for name, _ in column.metrics)) for column in columns]
    changed = non_default_settings(settings, model)
    title = f"Table {number} · {kind} · {model} · {split}" + (f" · {changed}" if changed else "")
    caption = _caption(number, model, split, settings, paper_pair_set, rules, present)
    return Table(title=title, caption=caption, row_header="Method", groups=groups, rows=rows, notes=notes)


def _find(runs: Sequence[RunRecord], column: Column, method: str, hyperparameters: dict) -> Optional[RunRecord]:
    return next((run for run in runs if (run.dataset, run.option, run.method) == (column.dataset, column.option,
                 method) and run.hyperparameters == hyperparameters), None)


def _cells(run: Optional[RunRecord], column: Column, baseline: Optional[RunRecord]) -> list[Optional[str]]:
    if run is None:
        return [None] * len(column.metrics)
    return [with_delta(run.metric(key), baseline.metric(key) if baseline else None) for _, key in column.metrics]


def _val_selections(pool: Sequence[RunRecord], columns: list[Column], model: str, method: str,
                    settings: tuple, metric: str) -> dict[Column, object]:
    """{column: Selection or ToolkitError} for the columns that have val runs of this method and settings."""
    selections: dict[Column, object] = {}
    for column in columns:
        candidates = matching_runs(pool, dataset=column.dataset, model=model, method=method, split="val",
                                   settings={**dict(settings), "option": column.option})
        if candidates:
            try:
                selections[column] = select_best(candidates, metric)
            except ToolkitError as err:
                selections[column] = err
    return selections


def _selected_row(method: str, method_runs: list[RunRecord], columns: list[Column], baselines: dict,
                  selections: dict, notes: list[str]) -> Row:
    cells, chosen, first_note = [], [], len(notes)
    for column in columns:
        selection = selections.get(column)
        run = None
        if selection is None:
            notes.append(f"{method_title(method)} on {column.label}: no val runs with these settings.")
        elif isinstance(selection, ToolkitError):
            notes.append(f"{method_title(method)} on {column.label}: no selection ({selection}).")
        else:
            label = hyperparameter_label(method, selection.run.hyperparameters)
            run = _find(method_runs, column, method, selection.run.hyperparameters)
            chosen.append(f"{column.label} {label}")
            if run is None:
                notes.append(f"{method_title(method)} on {column.label}: {label} selected on val has no "
                             f"finished test run.")
        cells.extend(_cells(run, column, baselines[column]))
    if chosen:
        notes.insert(first_note, f"{method_title(method)} selected on val: {'; '.join(chosen)}.")
    return Row(method_title(method), cells)


def _configuration_rows(method: str, method_runs: list[RunRecord], columns: list[Column],
                        baselines: dict) -> list[Row]:
    configurations = sorted({run.values for run in method_runs}, key=_configuration_order)
    rows = []
    for items in configurations:
        hyperparameters = dict(items)
        cells = [cell for column in columns for cell in
                 _cells(_find(method_runs, column, method, hyperparameters), column, baselines[column])]
        label = hyperparameter_label(method, hyperparameters)
        rows.append(Row(f"{method_title(method)} ({label})" if label else method_title(method), cells))
    return rows


def _configuration_order(items: tuple) -> list:
    """Numbers in order, then words, None first: a stable row order for any mix of hyper-parameters."""
    return [(0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)) if value is not None
            else (-1, 0, "") for _, value in items]


def _caption(number: int, model: str, split: str, settings: tuple, paper_pair_set: bool,
             rules: list[str], methods: Sequence[str]) -> str:
    parts = [f"{TABLE_KINDS[number]} results in % for {model} on the {split} split "
             f"(settings: {non_default_settings(settings, model) or 'main_aro.py defaults'}).",
             "In parentheses: difference to the Baseline row of the same model, split and settings."]
    if number == 1:
        parts.append("Pair/Set (paper): the original formula, correct pairs / (n/2) and sets / (n/4)."
                     if paper_pair_set else "Pair/Set: pairs and sets with every member in the split.")
    elif number == 4:
        parts.append("POPE: accuracy on the adversarial (A), popular (P) and random (R) subsets and their mean "
                     "(AVG); GQA: exact match, VQAv2 and TextVQA: VQA accuracy, after the official answer "
                     "normalisation (paper appendix, Tables 3, 4 and 10).")
    else:
        parts.append("F1: standard F1 of the answer yes, 2TP/(2TP+FP+FN); F1 (paper): harmonic mean of TPR "
                     "and TNR, which the original code reports as F1.")
    parts += [rule + "." for rule in rules]
    legend = hyperparameter_legend(methods)
    if rules and legend:
        parts.append(legend)
    return " ".join(parts)


# ------------------------------------------------------------------ command line


def filter_runs(runs: Sequence[RunRecord], *, split: Optional[str] = None, model: Optional[str] = None,
                datasets: Sequence[str] = ()) -> list[RunRecord]:
    """The runs to show; ToolkitError naming the available values when a filter matches nothing."""
    for name, wanted, value_of in (("split", split and [split], lambda r: r.split),
                                   ("model", model and [model], lambda r: r.model),
                                   ("dataset", list(datasets), lambda r: r.dataset)):
        if not wanted:
            continue
        available = sorted({value_of(run) for run in runs})
        unknown = [value for value in wanted if value not in available]
        if unknown:
            raise ToolkitError(f"no finished runs with {name} {', '.join(unknown)}; available: "
                               f"{', '.join(available)}")
        runs = [run for run in runs if value_of(run) in wanted]
    return list(runs)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m evaluation.report", description=__doc__.split("\n\n")[0],
                                     epilog="Examples:" + __doc__.split("Examples:")[1].split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_root", help="the --output-dir of main_aro.py")
    parser.add_argument("--split", choices=SPLITS, default=None, help="only this split (default: every one)")
    parser.add_argument("--model", default=None, help="only this model (its name in config.json)")
    parser.add_argument("--dataset", default="", help="only these datasets (comma-separated)")
    parser.add_argument("--metric", choices=METRICS, default="accuracy",
                        help="metric that selects hyper-parameters on val (default: %(default)s)")
    parser.add_argument("--paper-pair-set", action="store_true",
                        help="show the original pair/set formula (pair_accuracy_paper, set_accuracy_paper)")
    parser.add_argument("--long", action="store_true", help="add a table with one row per run")
    parser.add_argument("--format", choices=("markdown", "latex", "both"), default="markdown",
                        help="markdown (tables.md), latex (tables.tex, booktabs) or both")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder to write tables.md / tables.tex into (created if missing); unset: stdout")
    parser.add_argument("--plot", default=None, metavar="DIR",
                        help="also write PNG plots into this folder (created if missing)")
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def render(tables: Sequence[Table], fmt: str) -> str:
    renderer = render_markdown if fmt == "markdown" else render_latex
    return "\n".join(renderer(table) for table in tables)


TABLE_FILES = {"markdown": "tables.md", "latex": "tables.tex"}


def write_output(tables: Sequence[Table], fmt: str, out: Optional[str]) -> list[Path]:
    """Print the rendered tables, or write them into the folder `out` (tables.md, tables.tex); returns the
    files written."""
    formats = ("markdown", "latex") if fmt == "both" else (fmt,)
    if out is None:
        sys.stdout.write("\n".join(render(tables, name) for name in formats))
        return []
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ToolkitError(f"--out {out} is a file; --out names a folder (tables.md / tables.tex go into it)")
    paths = []
    for name in formats:
        path = folder / TABLE_FILES[name]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(render(tables, name), encoding="utf-8")
        except OSError as err:
            raise ToolkitError(f"cannot write {path}: {err.strerror}; choose another --out") from None
        paths.append(path)
    return paths


def report(args: argparse.Namespace) -> None:
    pool = load_runs(args.output_root)
    datasets = [name.strip() for name in args.dataset.split(",") if name.strip()]
    runs = filter_runs(pool, split=args.split, model=args.model, datasets=datasets)
    tables = build_tables(runs, pool=pool, metric=args.metric, paper_pair_set=args.paper_pair_set)
    if args.long:
        tables.append(long_table(runs))
    for path in write_output(tables, args.format, args.out):
        logger.info("wrote %s", path)
    if args.plot:
        from evaluation.plots import write_plots  # matplotlib is only imported when plots are asked for
        for path in write_plots(runs, Path(args.plot), pool=pool, metric=args.metric):
            logger.info("wrote %s", path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """0 on success; 2 with one error line on stderr for a problem the user can fix."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        report(args)
    except ToolkitError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
