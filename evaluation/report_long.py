"""The long table of the report (`--long`): every finished run on its own row, with every hyper-parameter.

Nothing is selected or merged here: folders that hold the same configuration each get a row, so this
table is where anything left out of Table 1 / Table 2 can be found.
"""
from __future__ import annotations

from typing import Optional, Sequence

from evaluation.report_tables import Row, Table, percent
from evaluation.runs import RunRecord, dataset_label, dataset_rank, format_number, non_default_settings
from methods import method_names

# (column header, metric key) of the metrics shown for every run; "–" where a dataset lacks one.
LONG_METRICS = (("Acc", "accuracy"), ("Pair", "pair_accuracy"), ("Set", "set_accuracy"),
                ("Pair (paper)", "pair_accuracy_paper"), ("Set (paper)", "set_accuracy_paper"),
                ("F1", "f1"), ("F1 (paper)", "f1_paper"))
LONG_SETTINGS = ("option", "match", "seed", "prompt_format", "max_new_tokens", "limit")
OTHER_SETTINGS = ("dtype", "revision", "prompt_dir")


def long_table(runs: Sequence[RunRecord]) -> Table:
    """One row per run, ordered by dataset, model, split, method and hyper-parameters."""
    columns = (["Model", "Split", "Method", "Hyper-parameters", *LONG_SETTINGS, "other (non-default)", "n",
                *(name for name, _ in LONG_METRICS), "unparsed", "Run"])
    order = method_names()
    ordered = sorted(runs, key=lambda run: (dataset_rank(run.dataset), run.model, run.split,
                                            order.index(run.method), _hyperparameter_key(run), run.name))
    rows = [Row(dataset_label(run.dataset), _long_cells(run)) for run in ordered]
    return Table(title="Every run", caption="One row per finished run folder; metrics in %; hyper-parameters "
                 "and settings under their main_aro.py flag names.", row_header="Dataset",
                 groups=[(name, ("",)) for name in columns], rows=rows)


def _long_cells(run: RunRecord) -> list[Optional[str]]:
    other = non_default_settings(run.settings, run.model, OTHER_SETTINGS)
    return [run.model, run.split, run.method,
            ", ".join(f"{name}={format_number(value)}" for name, value in run.values) or None,
            *(_text(run.setting(name)) for name in LONG_SETTINGS), other or None,
            _text(run.results.get("n")), *(percent(run.metric(key)) for _, key in LONG_METRICS),
            _text(run.results.get("n_unparsed")), run.name]


def _hyperparameter_key(run: RunRecord) -> tuple:
    return tuple((0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)) for _, value in run.values)


def _text(value) -> Optional[str]:
    return None if value is None else str(value)
