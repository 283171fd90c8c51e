"""Splitting one run over processes (`accelerate launch main_aro.py ...`) and merging it back.

Process r of w evaluates samples r, r+w, r+2w, ... and appends to its own part file
`samples.rank{r}.jsonl`; a single process writes `samples.jsonl` directly. Process 0 merges every
part into `samples.jsonl` (dataset order, one line per sample) before the others read it and after
all of them finished, so a run resumed with a different number of processes still loses nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import ToolkitError
from runner.records import SAMPLES_FILE, RunFolder, read_records, write_jsonl_atomic

PART_GLOB = "samples.rank*.jsonl"


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of one launch."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def samples_name(self) -> str:
        return SAMPLES_FILE if self.world == 1 else f"samples.rank{self.rank}.jsonl"

    def owns(self, position: int) -> bool:
        return position % self.world == self.rank

    def barrier(self) -> None:
        if self.world > 1:
            _distributed_state().wait_for_everyone()


def _distributed_state():
    """accelerate's process state; on machines without CUDA it must be told to use CPU processes (gloo)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def current_shard() -> Shard:
    """The shard of this process: its rank and the world size when started by `accelerate launch` or
    `torchrun`, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    state = _distributed_state()
    if state.num_processes != world:
        raise ToolkitError(f"WORLD_SIZE is {world} but accelerate set up {state.num_processes} process(es); "
                           f"launch with `accelerate launch` (or torchrun) so the processes can coordinate")
    return Shard(state.process_index, state.num_processes)


def process_device(shard: Shard, requested: str) -> str:
    """The device of this process: accelerate's per-process device when sharded, else the flag's value."""
    return requested if shard.world == 1 else str(_distributed_state().device)


def merge_parts(folder: Path, order: dict[str, int]) -> list[dict]:
    """Fold every part file into samples.jsonl (sorted by dataset position) and return its records.

    A sample is recorded once even if it appears in several files; torn last lines (a killed
    process) are dropped. `order` maps sample id to dataset position; unknown ids go last.
    """
    main = folder / SAMPLES_FILE
    parts = sorted(folder.glob(PART_GLOB))
    main_records = read_records(main, repair=True)
    records: dict[str, dict] = {}
    for record in main_records + [r for path in parts for r in read_records(path, repair=True)]:
        records.setdefault(record["id"], record)
    merged = sorted(records.values(), key=lambda r: order.get(r["id"], len(order)))
    if parts or merged != main_records:
        write_jsonl_atomic(main, merged)
        for path in parts:
            path.unlink()
    return merged


def shard_folder(path: Path, shard: Shard) -> RunFolder:
    """The run folder as this process writes it (its own part file when sharded)."""
    return RunFolder(path, shard.samples_name)


def thread_count(requested: int | None, shard: Shard) -> int:
    """Torch CPU threads for this process: `--threads`, else OMP_NUM_THREADS when set (the usual way to
    share a machine between jobs), else the cores this process may use divided among the launch's
    processes on this machine (LOCAL_WORLD_SIZE), so sharded processes do not oversubscribe the cores."""
    if requested:
        return requested
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", shard.world) or 1)
    return max(1, cores // max(1, local))
