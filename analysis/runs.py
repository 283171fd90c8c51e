"""Run-folder mode: the records of finished `main_aro.py` runs (config.json + samples.jsonl + results.json).

`--runs` takes run folders or output roots holding them (every finished run folder directly inside is read).
Records are the samples.jsonl lines: id, gold, prediction, correct, relation, confidence (at alpha = 1),
alpha, ...
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.errors import ToolkitError
from evaluation.runs import RunRecord, format_number, load_runs, read_run
from runner.records import CONFIG_FILE, RESULTS_FILE, SAMPLES_FILE, read_records


@dataclass(frozen=True)
class RunSet:
    """One set of records (samples.jsonl lines) and what produced them: a finished run folder, or in model mode
    the collected baseline or method configuration. `config`: the run's config.json (model mode: the dataset)."""

    label: str
    dataset: str
    model: str
    method: str
    hyperparameters: dict
    split: str
    records: list
    config: dict


def run_label(run: RunRecord) -> str:
    """`base`, `scaling_vis weight=0.8`, `adapt_vis weight1=0.5 weight2=1.5 threshold=0.4`."""
    values = " ".join(f"{name}={format_number(value)}" for name, value in run.hyperparameters.items())
    return f"{run.method} {values}".strip()


def load_run_sets(paths: Sequence[str]) -> list[RunSet]:
    runs: list[RunRecord] = []
    for text in paths:
        path = Path(text)
        if (path / CONFIG_FILE).is_file():
            if not (path / RESULTS_FILE).is_file():
                raise ToolkitError(f"{path} is not finished (no {RESULTS_FILE}); rerun its command to finish it")
            runs.append(read_run(path))
        else:
            runs.extend(load_runs(path))
    sets = []
    for run in runs:
        records = read_records(run.path / SAMPLES_FILE)
        if not records:
            raise ToolkitError(f"{run.path / SAMPLES_FILE} holds no records; the figure needs the per-sample "
                               f"records of the run")
        sets.append(RunSet(run_label(run), run.dataset, run.model, run.method, run.hyperparameters, run.split,
                           records, run.config))
    return sets
