"""One run folder per configuration: `config.json`, `samples.jsonl`, `results.json`, plus `results.csv`.

Crash safety: sample records are appended one batch at a time with a single `write` followed by
flush and fsync, so after `kill -9` the file holds complete lines plus at most one torn last line.
`RunFolder.completed_records` drops a torn line (truncating it away) before a resumed run appends,
so nothing written is lost and no sample is ever recorded twice.
"""
from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Optional

from common.errors import ToolkitError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
SUMMARY_CSV = "results.csv"

# Columns of the cumulative results.csv: hyper-parameters first, then metrics. Metrics a dataset
# does not have (pair accuracy on VSR, F1 on WhatsUp) stay empty.
CSV_SETTINGS = ("run", "dataset", "model", "method", "hyperparameters", "option", "split", "match", "seed",
                "prompt_format", "max_new_tokens", "limit", "finished_at")
CSV_METRICS = ("accuracy", "pair_accuracy", "set_accuracy", "pair_accuracy_paper",
               "set_accuracy_paper", "f1", "f1_paper", "precision", "recall", "n", "n_correct",
               "n_unparsed")


def ensure_writable(directory: Path) -> None:
    """Create the output root and prove it is writable before any model is loaded."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ToolkitError(f"cannot write to output directory {directory}: {err.strerror}; choose "
                           f"another one with --output-dir") from None


def write_json_atomic(path: Path, payload) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def to_jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl_atomic(path: Path, records: Iterable[dict]) -> None:
    """Rewrite a samples file in one piece (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_jsonl(records), encoding="utf-8")
    os.replace(tmp, path)


class RunFolder:
    """The files of one configuration's run, and the operations that keep them consistent."""

    def __init__(self, path: Path, samples_name: str = SAMPLES_FILE):
        self.path = path
        self.samples_path = path / samples_name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def is_finished(self) -> bool:
        return self.results_path.exists()

    def reset(self) -> None:
        """Forget a previous run of this configuration (used by --overwrite)."""
        for name in (CONFIG_FILE, RESULTS_FILE):
            (self.path / name).unlink(missing_ok=True)
        for part in self.path.glob("samples*.jsonl"):
            part.unlink()

    def read_config(self) -> Optional[dict]:
        return json.loads(self.config_path.read_text()) if self.config_path.exists() else None

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, config)

    def read_results(self) -> dict:
        return json.loads(self.results_path.read_text())

    def write_results(self, results: dict) -> None:
        write_json_atomic(self.results_path, results)

    def completed_records(self) -> list[dict]:
        """The records already written, after cutting away a line torn by an interrupted write."""
        return read_records(self.samples_path, repair=True)

    def append(self, records: Iterable[dict]) -> None:
        """Append one batch of records durably: one write, then flush and fsync."""
        text = to_jsonl(records)
        if not text:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.samples_path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """Parse a samples file; with `repair`, truncate a torn (unterminated or unparsable) last line."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, good_bytes = [], 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if good_bytes + len(line) < len(raw):
                raise ToolkitError(f"{path}: line {len(records) + 1} is not valid JSON and is not "
                                   f"the last line; the file was edited by hand. Delete the run "
                                   f"folder or rerun with --overwrite") from None
            break
        good_bytes += len(line)
    if good_bytes < len(raw):
        if not repair:
            raise ToolkitError(f"{path}: the last line is incomplete; rerun the same command to "
                               f"resume (it repairs the file)")
        logger.warning("%s: dropping a torn last line left by an interrupted run", path)
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return records


def describe_hyperparameters(settings: dict) -> str:
    """`weight=0.8 scope=prefill` for the csv; an auto threshold as `threshold=auto=0.6123` (rule=value)."""
    values = dict(settings.get("hyperparameters") or {})
    if values.get("threshold") == "auto" and "threshold_auto" in settings:
        values["threshold"] = f"auto={settings['threshold_auto']['value']!r}"
    return " ".join(f"{name}={value}" for name, value in values.items())


def append_summary_row(output_root: Path, settings: dict, metrics: dict) -> None:
    """Add one finished run to the cumulative results.csv (locked: parallel sweeps share it)."""
    path = output_root / SUMMARY_CSV
    row = {key: settings.get(key) for key in CSV_SETTINGS}
    row["hyperparameters"] = describe_hyperparameters(settings)
    row.update({key: metrics.get(key) for key in CSV_METRICS})
    with open(path, "a", newline="", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            writer = csv.DictWriter(handle, fieldnames=CSV_SETTINGS + CSV_METRICS)
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
