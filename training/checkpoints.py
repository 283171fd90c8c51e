"""Checkpoints that are both loadable models and exact resume points.

`<output>/checkpoint-<step>/` holds
* the model as `main_aro.py --model-path` loads it: the full model (`save_pretrained`) or the LoRA adapter
  (`adapter_config.json`, `adapter_model.safetensors`), plus the processor;
* the training state: `optimizer.pt`, `scheduler.pt`, one `rng_state_<rank>.pt` per process (python, numpy,
  torch CPU and CUDA generators) and `trainer_state.json` (step, best checkpoint, history).

A checkpoint is written into `.checkpoint-<step>.partial/` and renamed into place once complete (a rename is
atomic), so `kill -9` at any moment leaves either the previous checkpoints or the new one, never a torn one;
a resumed run loses at most the steps since the last checkpoint. Only the newest checkpoint and the best one
(lowest evaluation loss) are kept.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

STATE_FILE = "trainer_state.json"
TRAINING_FILES = ("optimizer.pt", "scheduler.pt", STATE_FILE)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainerState:
    """Where a run is. `best_step`/`best_eval_loss`: the checkpoint with the lowest evaluation loss so far."""

    step: int = 0
    best_step: Optional[int] = None
    best_eval_loss: Optional[float] = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def checkpoint_path(output: Path, step: int) -> Path:
    return Path(output) / f"checkpoint-{step}"


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (their state file is written last), oldest first."""
    found = []
    for path in Path(output).glob("checkpoint-*"):
        match = _CHECKPOINT.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_state_file(directory: Path, state: TrainerState, extra: dict) -> None:
    path = directory / STATE_FILE
    path.write_text(json.dumps({**state.to_dict(), **extra}, indent=1) + "\n")
    _fsync_file(path)


def read_state_file(directory: Path) -> TrainerState:
    data = json.loads((directory / STATE_FILE).read_text())
    return TrainerState(step=data["step"], best_step=data["best_step"], best_eval_loss=data["best_eval_loss"],
                        history=data["history"])


def partial_path(output: Path, step: int) -> Path:
    return Path(output) / f".checkpoint-{step}.partial"


def publish(partial: Path, final: Path) -> None:
    """Move a complete checkpoint into place (replacing a stale one of the same step)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def prune(output: Path, keep: set[int]) -> None:
    """Delete complete checkpoints whose step is not in `keep`, and leftovers of interrupted writes."""
    for step, path in list_checkpoints(output):
        if step not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for leftover in Path(output).glob(".checkpoint-*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)


def copy_model_files(checkpoint: Path, destination: Path) -> None:
    """The loadable model of a checkpoint (everything but the training state) into `destination`."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in TRAINING_FILES and not path.name.startswith("rng_state_"):
            shutil.copy2(path, destination / path.name)
