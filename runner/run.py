"""`run(config)`: load the data and the model, evaluate every configuration, write the run folders.

Called by `main_aro.py` and by tests. Finished configurations are skipped (unless `overwrite`),
interrupted ones resume from their `samples.jsonl`, and metrics are always computed from the
records on disk, so a resumed or sharded run reports exactly what an uninterrupted one would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from evaluation import compute_metrics
from evaluation.matching import Judgement
from intervention import AdaptVis
from runner.config import MethodSpec, RunConfig, expand_methods, run_name, run_record, validate
from runner.evaluate import PendingRun, evaluate_samples, iterate_batches
from runner.provenance import git_commit, library_versions, now_iso
from runner.records import RunFolder, append_summary_row, ensure_writable
from runner.shards import Shard, current_shard, merge_parts, process_device, shard_folder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """One configuration's finished run: where it is and what it scored."""

    spec: MethodSpec
    path: Path
    metrics: dict
    skipped: bool = False


def run(config: RunConfig) -> list[RunOutcome]:
    """Evaluate every configuration of `config`; returns their outcomes (on process 0 of a launch)."""
    validate(config)
    output_root = Path(config.output_dir)
    ensure_writable(output_root)
    shard = current_shard()
    # Process 0 fetches or generates missing data alone; the others read it once it is complete.
    if not shard.is_main:
        shard.barrier()
    dataset = load_dataset(config, download=config.download and shard.is_main)
    if shard.is_main:
        shard.barrier()
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
    pending_runs = [pending_run(config, spec, folders[spec], shard) for spec in specs
                    if spec not in finished_before]
    todo = [sample for position, sample in enumerate(dataset) if shard.owns(position)
            and any(run.needs(sample) for run in pending_runs)]
    if todo:
        vlm = load_model(config, shard)
        if shard.is_main:
            for run in pending_runs:
                record_model(folders[run.spec], vlm)
        evaluate_samples(vlm, todo, pending_runs, config,
                         iterate_batches(todo, config.batch_size, config.num_workers))
    shard.barrier()
    if not shard.is_main:
        return []
    return [RunOutcome(spec, folders[spec].path, folders[spec].read_results(), skipped=True)
            if spec in finished_before else finish(dataset, spec, folders[spec], order, output_root)
            for spec in specs]


def load_dataset(config: RunConfig, download: bool):
    dataset = get_dataset(config.dataset, root=config.data_root, split=config.split, option=config.option,
                          download=download, seed=config.seed, prompt_dir=config.prompt_dir,
                          prompt_variant=config.prompt_variant, vsr_split=config.vsr_split,
                          vsr_paper_resize=config.vsr_paper_resize)
    return dataset[: config.limit] if config.limit else dataset


def load_model(config: RunConfig, shard: Shard):
    from model_zoo import get_model  # imported here: loading transformers models is the slow part
    return get_model(config.model_path or config.model_name, dtype=config.dtype,
                     device=process_device(shard, config.device), device_map=config.device_map,
                     revision=config.revision,
                     prompt_format=config.prompt_format)


def prepare_folder(config: RunConfig, dataset, spec: MethodSpec, folder: RunFolder, order: dict[str, int],
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
    folder.write_config(record)


def pending_run(config: RunConfig, spec: MethodSpec, folder: RunFolder, shard: Shard) -> PendingRun:
    """What is left of one configuration; `prepare_folder` already merged every earlier part file."""
    done = {record["id"] for record in folder.completed_records()}
    if done:
        logger.info("resuming %s: %d samples already recorded", folder.path.name, len(done))
    adapt_vis = None
    if spec.method == "adapt_vis":
        adapt_vis = AdaptVis(weight1=spec.weight1, weight2=spec.weight2, threshold=spec.threshold,
                             round_confidence=not config.no_round_confidence)
    return PendingRun(spec, shard_folder(folder.path, shard), done, adapt_vis=adapt_vis)


def record_model(folder: RunFolder, vlm) -> None:
    """Add the loaded model's identity (hub id, revision, dtype, device) to config.json."""
    config = folder.read_config()
    config["model_info"] = vlm.to_dict()
    folder.write_config(config)


def finish(dataset, spec: MethodSpec, folder: RunFolder, order: dict[str, int],
           output_root: Path) -> RunOutcome:
    """Merge the records, compute the metrics from them, write results.json and the csv row."""
    records = merge_parts(folder.path, order)
    by_id = {record["id"]: record for record in records}
    missing = [sample.id for sample in dataset if sample.id not in by_id]
    if missing:
        raise ToolkitError(f"{folder.path}: {len(missing)} samples have no record (first: {missing[0]}); "
                           f"rerun the same command to complete the run")
    metrics = metrics_from_records(dataset, by_id)
    folder.write_results(metrics)
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
