"""`run(config)`: load the data and the model, evaluate every configuration, write the run folders.

Called by `main_aro.py` and by tests. Finished configurations are skipped (unless `overwrite`),
interrupted ones resume from their `samples.jsonl`, and metrics are always computed from the
records on disk, so a resumed or sharded run reports exactly what an uninterrupted one would.

Order: every flag is checked (including the device) before anything loads; the model's config and
processor are read and the prompt format is settled (a mistake there is reported before anything
slow), then the data, the run folders (locked, `runner.lock`; an existing folder must hold a run of the
same inputs, `runner.identity`), and only when some sample still needs an answer the weights. A run
that fails or is interrupted before its first sample leaves no folder behind. Each finished folder's
results.json gets the invocation's `timing` (`runner.timing`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from methods import Configuration
from runner.config import RunConfig, expand_methods, run_path, run_record, validate
from runner.augment import metrics_from_records, visual_prompt, with_flips
from runner.evaluate import PendingRun, confidence_pass, evaluate_samples, iterate_batches
from runner.identity import CACHE_FILE, FingerprintCache, check_identity, run_identity
from runner.lock import LOCK_FILE, locked
from runner.provenance import git_commit, library_versions, now_iso
from runner.records import RunFolder, ensure_writable, write_summary_row
from runner.shards import Shard, current_shard, merge_parts, process_device, shard_folder, thread_count
from runner.summary import domain_notice
from runner.threshold import is_auto, settle_threshold
from runner.timing import Timing, timed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """One configuration's finished run: where it is, what it scored, and notices for the summary."""

    spec: Configuration
    path: Path
    metrics: dict
    skipped: bool = False
    notices: tuple[str, ...] = ()


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
    shard = current_shard()
    check_device(config, shard)
    threads = torch.get_num_threads()
    torch.set_num_threads(thread_count(config.threads, shard))
    try:
        return _run(config, shard)
    finally:
        torch.set_num_threads(threads)  # callers (tests, notebooks) keep their own setting


def _run(config: RunConfig, shard: Shard) -> list[RunOutcome]:
    output_root = Path(config.output_dir)
    ensure_writable(output_root)
    timing = Timing(processes=shard.world, threads=torch.get_num_threads())
    with timed(timing, "open_seconds"):
        checkpoint = open_model(config)
    # Folders are named after the format actually used, so "auto" and its explicit value share them.
    config = replace(config, prompt_format=checkpoint.prompt_format)
    dataset = load_dataset_once(config, shard)
    prompt = visual_prompt(config)  # a missing box source is reported before any weight loads
    # A fine-tuned adapter is judged by its own folder, not by what its base model was trained on.
    notice = domain_notice(config.model_label, Path(checkpoint.adapter or checkpoint.model_id), config.dataset)
    if notice and shard.is_main:
        logger.warning(notice)
    folders = {spec: RunFolder(output_root / run_path(config, spec, dataset.info.get("option"), dataset.info["split"]))
               for spec in expand_methods(config)}
    new = [folder for folder in folders.values() if not folder.config_path.exists()]
    try:
        with locked([folder.path for folder in folders.values()], enabled=shard.is_main):
            if shard.is_main:
                identity = run_identity(config, dataset, checkpoint, FingerprintCache(output_root / CACHE_FILE),
                                        None if prompt is None else prompt.settings()["source"])
                prepare_folders(config, dataset, folders, identity, prompt)
            shard.barrier()
            outcomes = evaluate_and_finish(config, dataset, folders, checkpoint, shard, timing, prompt)
    except BaseException:
        if shard.is_main:
            remove_unstarted(new, output_root)
        raise
    return [replace(outcome, notices=(notice,) if notice else ()) for outcome in outcomes]


def check_device(config: RunConfig, shard: Shard) -> None:
    """The device exists (before anything is written or loaded); float16 on a CPU is warned about."""
    if config.device_map is not None or shard.world > 1:
        return  # accelerate places the model (per process when sharded)
    from model_zoo.loading import _resolve_device  # the loader's own check, so both agree

    if _resolve_device(config.device) == "cpu" and config.dtype == "float16":
        logger.warning("--dtype float16 on a CPU is slow and less exact than float32 (the paper's precision); "
                       "its numbers will differ from a GPU run's: prefer --dtype float32 or bfloat16")


def prepare_folders(config: RunConfig, dataset, folders: dict[Configuration, RunFolder], identity: dict,
                    prompt=None) -> None:
    """Check every existing folder's inputs first (so a mismatch changes nothing), then prepare them."""
    if not config.overwrite:
        for folder in folders.values():
            check_identity(folder.path, (folder.read_config() or {}).get("identity"), identity)
    order = {sample.id: position for position, sample in enumerate(dataset)}
    environment = {"versions": library_versions(), "git": git_commit(), "identity": identity,
                   "visual_prompt_info": None if prompt is None else prompt.settings()}
    for spec, folder in folders.items():
        prepare_folder(config, dataset, spec, folder, order, environment)


def evaluate_and_finish(config: RunConfig, dataset, folders: dict[Configuration, RunFolder], checkpoint,
                        shard: Shard, timing: Timing, prompt=None) -> list[RunOutcome]:
    """Answer what is missing, then (process 0) compute and record every configuration's metrics."""
    output_root = Path(config.output_dir)
    order = {sample.id: position for position, sample in enumerate(dataset)}
    finished_before = {spec for spec, folder in folders.items() if folder.is_finished()}
    done = {spec: {r["id"] for r in folder.completed_records()} for spec, folder in folders.items()
            if spec not in finished_before}
    model = LazyModel(checkpoint, config, shard, timing)
    evaluate_pending(config, dataset, folders, done, model, shard, timing, prompt)
    if not shard.is_main:
        return []
    return [RunOutcome(spec, folder.path, folder.read_results(), skipped=True) if spec in finished_before else
            finish(dataset, spec, folder, order, output_root, timing, resumed=len(done[spec]))
            for spec, folder in folders.items()]


def remove_unstarted(new: list[RunFolder], output_root: Path) -> None:
    """Remove the folders this invocation created that hold no record yet (a run that failed or was
    interrupted before its first sample), and the then empty <model>/<dataset> folders above them.

    Called after this invocation released its locks: a folder that still has a lock file belongs to
    another run (the one that made this invocation fail, say) and is left alone."""
    for folder in new:
        if folder.is_finished() or folder.has_records() or (folder.path / LOCK_FILE).exists():
            continue
        for path in (folder.config_path, *folder.path.glob("samples*.jsonl")):
            path.unlink(missing_ok=True)
        path = folder.path
        while path != output_root and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            path = path.parent


def evaluate_pending(config: RunConfig, dataset, folders: dict[Configuration, RunFolder],
                     done: dict[Configuration, set[str]], model: LazyModel, shard: Shard, timing: Timing,
                     prompt=None) -> None:
    """Answer this process's share of the samples some unfinished configuration still needs (`prompt`:
    the visual prompt drawn on each image, if any)."""
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
            batches = iterate_batches(todo, config.batch_size, config.num_workers, prompt)
            evaluate_samples(vlm, todo, runs, config, batches)
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
                                         lambda samples: confidence_pass(model.get(), samples, config),
                                         identity=folders[unsettled[0]].read_config().get("identity"))
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
    """The evaluated samples: the dataset (its first --limit samples), and with --flip-test their mirrors."""
    dataset = get_dataset(config.dataset, root=config.data_root, split=config.split, option=config.option,
                          download=download, seed=config.seed, prompt_dir=config.prompt_dir,
                          prompt_variant=config.prompt_variant, vsr_split=config.vsr_split,
                          vsr_paper_resize=config.vsr_paper_resize)
    dataset = dataset[: config.limit] if config.limit else dataset
    return with_flips(dataset) if config.flip_test else dataset


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
    record.update(run=str(folder.path.relative_to(Path(config.output_dir))), option=dataset.info.get("option"),
                  split=dataset.info["split"], dataset_info=dataset.info, prompt_info=dataset.prompt_info,
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
    write_summary_row(output_root, settings, metrics)
    return RunOutcome(spec, folder.path, metrics)
