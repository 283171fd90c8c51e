"""`run(config)`: load the data and the model, evaluate every configuration, write the run folders.

Called by `main_aro.py` and by tests. Finished configurations are skipped (unless `overwrite`),
interrupted ones resume from their `samples.jsonl`, and metrics are always computed from the
records on disk, so a resumed or sharded run reports exactly what an uninterrupted one would.

Order: the model's config and processor are read first and the prompt format is settled (a mistake
there is reported before anything slow), then the data, the run folders, and only when some sample
still needs an answer the weights. Each finished folder's results.json gets the invocation's
`timing` (`Timing.record`).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from methods import Configuration
from runner.config import RunConfig, expand_methods, run_name, run_record, validate
from runner.evaluate import PendingRun, confidence_pass, evaluate_samples, iterate_batches
from runner.provenance import git_commit, library_versions, now_iso
from runner.records import RunFolder, append_summary_row, ensure_writable
from runner.shards import Shard, current_shard, merge_parts, process_device, shard_folder
from runner.threshold import is_auto, settle_threshold
from scoring import compute_metrics
from scoring.matching import Judgement

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """One configuration's finished run: where it is and what it scored."""

    spec: Configuration
    path: Path
    metrics: dict
    skipped: bool = False


@dataclass
class Timing:
    """Wall-clock seconds of one invocation, measured on process 0 (see `record`)."""

    open_seconds: float = 0.0
    load_seconds: Optional[float] = None
    threshold_seconds: Optional[float] = None
    evaluation_seconds: Optional[float] = None
    configurations: int = 0
    processes: int = 1

    def record(self, evaluated: int, resumed: int) -> dict:
        """results.json's `timing` of a configuration that had `resumed` samples recorded before this
        invocation and got `evaluated` more in it.

        Every number is this invocation's: an interrupted earlier invocation is not measured (it never
        reached the end), so its samples are counted as `samples_resumed`, not in the rate. A grid's
        configurations share one pass, so they share its seconds: `samples_per_second` is samples
        through the pass per second, for one configuration or for all `configurations_in_pass`.
        """
        loaded = None if self.load_seconds is None else self.open_seconds + self.load_seconds
        rate = evaluated / self.evaluation_seconds if evaluated and self.evaluation_seconds else None
        return {"model_load_seconds": _rounded(loaded), "threshold_seconds": _rounded(self.threshold_seconds),
                "evaluation_seconds": _rounded(self.evaluation_seconds), "samples_evaluated": evaluated,
                "samples_resumed": resumed, "samples_per_second": _rounded(rate),
                "configurations_in_pass": self.configurations, "processes": self.processes}


def _rounded(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds, 3)


@contextmanager
def timed(timing: Timing, name: str):
    """Store the seconds the block took in `timing.<name>`."""
    start = time.perf_counter()
    yield
    setattr(timing, name, time.perf_counter() - start)


class LazyModel:
    """The model, loaded on first use: a resumed or finished run may never need the weights."""

    def __init__(self, checkpoint, config: RunConfig, shard: Shard, timing: Timing):
        self.checkpoint, self.config, self.shard, self.timing = checkpoint, config, shard, timing
        self._vlm = None

    def get(self):
        if self._vlm is None:
            with timed(self.timing, "load_seconds"):
                self._vlm = self.checkpoint.load(dtype=self.config.dtype,
                                                 device=process_device(self.shard, self.config.device),
                                                 device_map=self.config.device_map)
        return self._vlm


def run(config: RunConfig) -> list[RunOutcome]:
    """Evaluate every configuration of `config`; returns their outcomes (on process 0 of a launch)."""
    validate(config)
    output_root = Path(config.output_dir)
    ensure_writable(output_root)
    shard = current_shard()
    timing = Timing(processes=shard.world)
    with timed(timing, "open_seconds"):
        checkpoint = open_model(config)
    # Folders are named after the format actually used, so "auto" and its explicit value share them.
    config = replace(config, prompt_format=checkpoint.prompt_format)
    dataset = load_dataset_once(config, shard)
    specs = expand_methods(config)
    folders = {spec: RunFolder(output_root / run_name(config, spec, dataset.info.get("option"),
                                                      dataset.info["split"])) for spec in specs}
    order = {sample.id: position for position, sample in enumerate(dataset)}
    if shard.is_main:
        environment = {"versions": library_versions(), "git": git_commit()}
        for spec, folder in folders.items():
            prepare_folder(config, dataset, spec, folder, order, environment)
    shard.barrier()
    finished_before = {spec for spec, folder in folders.items() if folder.is_finished()}
    done = {spec: {r["id"] for r in folders[spec].completed_records()} for spec in specs
            if spec not in finished_before}
    model = LazyModel(checkpoint, config, shard, timing)
    evaluate_pending(config, dataset, folders, done, model, shard, timing)
    if not shard.is_main:
        return []
    return [RunOutcome(spec, folders[spec].path, folders[spec].read_results(), skipped=True)
            if spec in finished_before else
            finish(dataset, spec, folders[spec], order, output_root, timing, resumed=len(done[spec]))
            for spec in specs]


def evaluate_pending(config: RunConfig, dataset, folders: dict[Configuration, RunFolder],
                     done: dict[Configuration, set[str]], model: LazyModel, shard: Shard, timing: Timing) -> None:
    """Answer this process's share of the samples some unfinished configuration still needs."""
    if not done:
        return
    auto = [spec for spec in done if is_auto(spec)]
    thresholds = {}
    if auto:
        with timed(timing, "threshold_seconds"):
            thresholds = settle_auto_thresholds(config, dataset, folders, auto, model, shard)
    runs = [pending_run(config, spec, folders[spec], ids, shard, thresholds.get(spec)) for spec, ids in done.items()]
    todo = [sample for position, sample in enumerate(dataset) if shard.owns(position)
            and any(run.needs(sample) for run in runs)]
    timing.configurations = len(runs)
    with timed(timing, "evaluation_seconds"):
        if todo:
            vlm = model.get()
            if shard.is_main:
                for run in runs:
                    record_model(folders[run.spec], vlm)
            evaluate_samples(vlm, todo, runs, config, iterate_batches(todo, config.batch_size, config.num_workers))
        shard.barrier()  # the pass ends when every process is done


def settle_auto_thresholds(config: RunConfig, dataset, folders: dict[Configuration, RunFolder],
                           auto: list[Configuration], model: LazyModel, shard: Shard) -> dict[Configuration, float]:
    """The number each `--threshold auto` configuration uses, computed once on process 0 and recorded in
    its config.json (a resumed folder keeps the value it was started with); every process reads it back."""
    if shard.is_main:
        unsettled = [spec for spec in auto if "threshold_auto" not in folders[spec].read_config()]
        if unsettled:
            option = dataset.info.get("option")
            threshold = settle_threshold(Path(config.output_dir), config, option,
                                         lambda: val_samples(config, dataset),
                                         lambda samples: confidence_pass(model.get(), samples, config))
            for spec in unsettled:
                record = folders[spec].read_config()
                record.update(threshold_auto=threshold.to_dict())
                folders[spec].write_config(record)
    shard.barrier()
    return {spec: folders[spec].read_config()["threshold_auto"]["value"] for spec in auto}


def val_samples(config: RunConfig, dataset):
    """The val split of the evaluated dataset and settings (limit included): `dataset` itself on val."""
    if dataset.info["split"] == "val":
        return dataset
    return load_dataset(replace(config, split="val"), download=config.download)


def load_dataset_once(config: RunConfig, shard: Shard):
    """The dataset; process 0 fetches or generates missing data alone, the others read it once complete."""
    if not shard.is_main:
        shard.barrier()
    dataset = load_dataset(config, download=config.download and shard.is_main)
    if shard.is_main:
        shard.barrier()
    return dataset


def load_dataset(config: RunConfig, download: bool):
    dataset = get_dataset(config.dataset, root=config.data_root, split=config.split, option=config.option,
                          download=download, seed=config.seed, prompt_dir=config.prompt_dir,
                          prompt_variant=config.prompt_variant, vsr_split=config.vsr_split,
                          vsr_paper_resize=config.vsr_paper_resize)
    return dataset[: config.limit] if config.limit else dataset


def open_model(config: RunConfig):
    """The model's config and processor, with the prompt format settled; the weights are not loaded yet."""
    from model_zoo.loading import open_checkpoint  # imported here: it imports transformers, the slow part

    return open_checkpoint(config.model_path or config.model_name, revision=config.revision,
                           prompt_format=config.prompt_format)


def prepare_folder(config: RunConfig, dataset, spec: Configuration, folder: RunFolder, order: dict[str, int],
                   environment: dict) -> None:
    """Reset (--overwrite), merge leftovers of an interrupted sharded run, and write config.json."""
    if config.overwrite:
        folder.reset()
    elif folder.is_finished():
        logger.info("already finished, skipping: %s (use --overwrite to redo it)", folder.path)
        return
    merge_parts(folder.path, order)
    previous = folder.read_config() or {}
    record = run_record(config, spec)
    record.update(run=folder.path.name, option=dataset.info.get("option"), split=dataset.info["split"],
                  dataset_info=dataset.info, prompt_info=dataset.prompt_info,
                  model_info=previous.get("model_info"), **environment,
                  started_at=previous.get("started_at") or now_iso(), finished_at=None)
    if "threshold_auto" in previous:  # records already written were decided with this threshold
        record.update(threshold_auto=previous["threshold_auto"])
    folder.write_config(record)


def pending_run(config: RunConfig, spec: Configuration, folder: RunFolder, done: set[str], shard: Shard,
                threshold: Optional[float] = None) -> PendingRun:
    """What is left of one configuration; `threshold` replaces an "auto" threshold with its value in the
    configuration that answers (the folder keeps the one named "auto")."""
    if done:
        logger.info("resuming %s: %d samples already recorded", folder.path.name, len(done))
    answering = spec
    if threshold is not None:
        answering = Configuration(spec.method, tuple((name, threshold if name == "threshold" else value)
                                                     for name, value in spec.values))
    return PendingRun(spec, shard_folder(folder.path, shard), set(done), answering=answering)


def record_model(folder: RunFolder, vlm) -> None:
    """Add the loaded model's identity (hub id, revision, dtype, device, prompt format) to config.json."""
    config = folder.read_config()
    config["model_info"] = vlm.to_dict()
    folder.write_config(config)


def finish(dataset, spec: Configuration, folder: RunFolder, order: dict[str, int], output_root: Path,
           timing: Timing, resumed: int) -> RunOutcome:
    """Merge the records, compute the metrics from them, write results.json and the csv row."""
    records = merge_parts(folder.path, order)
    by_id = {record["id"]: record for record in records}
    missing = [sample.id for sample in dataset if sample.id not in by_id]
    if missing:
        raise ToolkitError(f"{folder.path}: {len(missing)} samples have no record (first: {missing[0]}); "
                           f"rerun the same command to complete the run")
    metrics = metrics_from_records(dataset, by_id)
    folder.write_results({**metrics, "timing": timing.record(len(by_id) - resumed, resumed)})
    settings = folder.read_config()
    settings["finished_at"] = now_iso()
    folder.write_config(settings)
    append_summary_row(output_root, settings, metrics)
    return RunOutcome(spec, folder.path, metrics)


def metrics_from_records(dataset, by_id: dict[str, dict]) -> dict:
    """All metrics of the data layer, computed from the verdicts stored in samples.jsonl."""
    samples = list(dataset)
    judgements = [Judgement(by_id[s.id]["prediction"], bool(by_id[s.id]["correct"]), by_id[s.id].get("score"))
                  for s in samples]
    return compute_metrics(judgements, samples, has_groups=dataset.has_groups, task=dataset.task)


def outcome_summary(outcomes: list[RunOutcome]) -> Optional[str]:
    """A small fixed-width table of the outcomes for the terminal (None if there is nothing)."""
    if not outcomes:
        return None
    columns = [("accuracy", "Acc"), ("pair_accuracy", "Pair Acc"), ("set_accuracy", "Set Acc"),
               ("f1", "F1")]
    shown = [(key, title) for key, title in columns if any(o.metrics.get(key) is not None for o in outcomes)]
    width = max(len("configuration"), *(len(o.spec.label()) for o in outcomes))
    lines = [f"{'configuration':<{width}}  " + "  ".join(f"{title:>8}" for _, title in shown)]
    for outcome in outcomes:
        cells = [outcome.metrics.get(key) for key, _ in shown]
        lines.append(f"{outcome.spec.label():<{width}}  "
                     + "  ".join(f"{'-' if v is None else f'{100 * v:.1f}':>8}" for v in cells))
    return "\n".join(lines)
