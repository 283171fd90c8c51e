"""Finished run folders as small typed records, shared by the report and the hyper-parameter selection.

    from evaluation.runs import load_runs
    runs = load_runs("output")            # every folder with config.json + results.json
    runs[0].dataset, runs[0].method, runs[0].hyperparameters, runs[0].metric("accuracy")

A folder of a method this installation does not know (e.g. written by a newer version with more
methods) is skipped with a notice.

Run folders sit at `<root>/<model>/<dataset>/<run>/`; folders of the earlier flat layout
(`<root>/<run>/`) are read as well.

A run folder is finished when its `results.json` exists (main_aro.py writes it last, atomically);
folders without it are still running or were interrupted, and are skipped with a logged note.

A config.json or results.json that is not valid JSON raises `ToolkitError` naming the file instead
of being skipped: both files are written through a temporary file and a rename, so a broken one was
damaged from outside, and silently dropping it would turn a result into a "–" cell or, worse, let
the val selection pick the second-best configuration without anyone noticing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from common.errors import ToolkitError
from dataset_zoo.catalog import VSR, get_spec
from methods import get_method, method_names
from methods.registry import format_value as format_number
from model_zoo.registry import auto_prompt_format
from runner.config import AUTO, RESULT_SETTINGS, RunConfig
from runner.records import CONFIG_FILE, RESULTS_FILE

logger = logging.getLogger(__name__)

SETTINGS = RESULT_SETTINGS
# Display order and names in tables and plots (the paper's Table 1 order, then Synthetic, then VSR).
DATASET_ORDER = ("Controlled_Images_A", "Controlled_Images_B", "COCO_QA_one_obj", "COCO_QA_two_obj",
                 "VG_QA_one_obj", "VG_QA_two_obj", "Synthetic_Controlled_A", "Synthetic_Controlled_B",
                 "VSR", "VSR_zeroshot", "VSR_random", "POPE", "GQA", "VQAv2", "TextVQA")
DATASET_LABELS = {"Controlled_Images_A": "Controlled_A", "Controlled_Images_B": "Controlled_B",
                  "COCO_QA_one_obj": "COCO one-obj", "COCO_QA_two_obj": "COCO two-obj",
                  "VG_QA_one_obj": "VG one-obj", "VG_QA_two_obj": "VG two-obj",
                  "Synthetic_Controlled_A": "Synthetic_A", "Synthetic_Controlled_B": "Synthetic_B",
                  "VSR": "VSR", "VSR_zeroshot": "VSR zero-shot", "VSR_random": "VSR random"}
REQUIRED_CONFIG_KEYS = ("dataset", "model", "method", "split")


@dataclass(frozen=True)
class RunRecord:
    """One finished run: who it is (dataset, model, method, hyper-parameters, split, settings) and its metrics.

    settings: (name, value) pairs of `SETTINGS`, hashable so that records group by them; `option`
        is the option count actually used (the dataset's paper default when the config says null).
    config / results: the raw JSON of config.json and results.json.
    """

    path: Path
    dataset: str
    model: str
    method: str
    split: str
    values: tuple[tuple[str, Any], ...]
    settings: tuple[tuple[str, Any], ...]
    finished_at: Optional[str]
    config: dict = field(compare=False, repr=False)
    results: dict = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def option(self) -> Optional[str]:
        return self.setting("option")

    def setting(self, name: str) -> Any:
        return dict(self.settings).get(name)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """Every hyper-parameter of this run's method under its name, e.g. {"weight": 0.8, "scope": "prefill"};
        an auto threshold appears as the number it was resolved to."""
        return dict(self.values)

    @property
    def labelled(self) -> dict[str, Any]:
        """The hyper-parameters that name configurations (those with a label abbreviation): what a grid
        varies, what the val selection chooses and the tables show."""
        names = {h.name for h in get_method(self.method).hyperparameters if h.short}
        return {name: value for name, value in self.values if name in names}

    @property
    def configuration(self) -> tuple:
        """What makes two runs "the same configuration": everything but bookkeeping."""
        return (self.dataset, self.model, self.split, self.settings, self.method, self.values)

    def metric(self, name: str) -> Optional[float]:
        """A metric of results.json as a fraction (or count), None when absent or null; a dotted name reads
        a nested one (`per_subset.adversarial.accuracy`)."""
        value = self.results
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def load_runs(root: str | Path) -> list[RunRecord]:
    """Every finished run under `root`, in path order: `<root>/<model>/<dataset>/<run>/` (the layout
    main_aro.py writes) and `<root>/<run>/` (the flat layout of earlier versions).

    Raises ToolkitError when the root is missing or holds no finished run, and when a run's JSON is
    broken (naming the file).
    """
    root = Path(root)
    if not root.is_dir():
        raise ToolkitError(f"output root {root} does not exist; run main_aro.py first "
                           f"(e.g. python main_aro.py --dataset Controlled_Images_A --output-dir {root})")
    runs, unfinished = [], []
    for folder in run_folders(root):
        if not (folder / RESULTS_FILE).exists():
            unfinished.append(folder.name)
            logger.info("skipping unfinished run (no %s yet): %s", RESULTS_FILE, folder.name)
            continue
        run = read_run(folder)
        if run is not None:
            runs.append(run)
    if not runs:
        detail = f" ({len(unfinished)} unfinished)" if unfinished else ""
        raise ToolkitError(f"no finished runs under {root}{detail}; run main_aro.py first, or rerun "
                           f"an interrupted command to finish it")
    return runs


def run_folders(root: Path) -> list[Path]:
    """The folders under `root` that hold a config.json, in either layout (tables/ and plots/ hold none)."""
    return sorted({path.parent for pattern in (f"*/{CONFIG_FILE}", f"*/*/*/{CONFIG_FILE}")
                   for path in root.glob(pattern)})


def read_run(folder: Path) -> Optional[RunRecord]:
    """The record of one finished run folder; None (with a notice) for a method this version does not know."""
    config = _read_json_object(folder / CONFIG_FILE)
    results = _read_json_object(folder / RESULTS_FILE)
    missing = [key for key in REQUIRED_CONFIG_KEYS if config.get(key) is None]
    if missing:
        raise ToolkitError(f"{folder / CONFIG_FILE}: missing {', '.join(missing)}; this folder was not "
                           f"written by main_aro.py; move it out of the output root")
    if config["method"] not in method_names():
        logger.warning("skipping %s: method %r is not one of this version's (%s)", folder.name, config["method"],
                       ", ".join(method_names()))
        return None
    # A setting added after the folder was written has the value the run had: the default of its time.
    settings = {name: config.get(name, getattr(RunConfig, name, None)) for name in SETTINGS}
    settings["option"] = effective_option(config["dataset"], config.get("option"))
    return RunRecord(
        path=folder, dataset=config["dataset"], model=str(config["model"]), method=config["method"],
        split=config["split"], values=tuple(recorded_hyperparameters(config).items()),
        settings=tuple(settings.items()), finished_at=config.get("finished_at"),
        config=config, results=results)


def recorded_hyperparameters(config: dict) -> dict[str, Any]:
    """A run's hyper-parameters from its config.json: the `hyperparameters` object (folders written
    before it existed kept them at the top level), with an auto threshold replaced by its value."""
    method = get_method(config["method"])
    stored = config.get("hyperparameters")
    if stored is None:  # older run folders: flat keys, and the alpha family's settings by their old names
        stored = {name: config.get(name) for name in method.names}
        if "round_confidence" in method.names and "no_round_confidence" in config:
            stored["round_confidence"] = not config["no_round_confidence"]
    values = {name: stored.get(name) for name in method.names}
    if values.get("threshold") == AUTO and "threshold_auto" in config:
        values["threshold"] = config["threshold_auto"]["value"]
    return values


def effective_option(dataset: str, option: Optional[str]) -> Optional[str]:
    """The option count a run used: as recorded, or the dataset's paper default when recorded as null."""
    if option is not None:
        return option
    try:
        spec = get_spec(dataset)
    except ToolkitError:
        return None
    return None if spec.family == VSR else spec.paper_option


def _read_json_object(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ToolkitError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); delete the run folder "
                           f"{path.parent} or rerun its command with --overwrite") from None
    except OSError as err:
        raise ToolkitError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(payload, dict):
        raise ToolkitError(f"{path}: expected a JSON object, found {type(payload).__name__}; delete the "
                           f"run folder {path.parent} or rerun its command with --overwrite")
    return payload


def latest_per_configuration(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """One run per configuration: the most recently finished when several folders hold the same one.

    This happens when runs differ only in settings that do not change results (batch size, device)
    or in a model path with the same folder name; the others stay visible in the long table.
    """
    chosen: dict[tuple, RunRecord] = {}
    for run in runs:
        previous = chosen.get(run.configuration)
        if previous is None:
            chosen[run.configuration] = run
            continue
        newer, older = sorted((previous, run), key=lambda r: (r.finished_at or "", r.name), reverse=True)
        logger.warning("%s and %s hold the same configuration; using the more recent %s",
                       newer.name, older.name, newer.name)
        chosen[run.configuration] = newer
    return list(chosen.values())


def describe_settings(settings: Iterable[tuple[str, Any]]) -> str:
    """`match=strict, seed=1, ...` for messages and captions (unset settings left out)."""
    return ", ".join(f"{name}={value}" for name, value in settings
                     if value is not None)


def non_default_settings(settings: Iterable[tuple[str, Any]], model: str, names: Iterable[str] = ()) -> str:
    """`describe_settings` of the settings (all but option, or `names`) that differ from main_aro.py's
    defaults for `model`; "" when none do."""
    names = tuple(names) or tuple(name for name in SETTINGS if name != "option")
    return describe_settings((name, value) for name, value in settings
                             if name in names and value != default_setting(name, model))


def default_setting(name: str, model: str) -> Any:
    """The value main_aro.py records for a setting left at its default. Runs record the prompt format
    that "auto" resolved to, which depends on the model."""
    if name == "prompt_format":
        return auto_prompt_format(model)
    return getattr(RunConfig, name, None)


def dataset_label(dataset: str) -> str:
    """The dataset's short name in tables, e.g. "COCO one-obj"."""
    return DATASET_LABELS.get(dataset, dataset)


def dataset_rank(dataset: str) -> tuple:
    """Sort key putting datasets in the paper's order; unknown names last, alphabetically."""
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)
