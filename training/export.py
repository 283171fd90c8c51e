"""The end of a run: `<output>/best/` (the checkpoint with the lowest evaluation loss, ready for
`main_aro.py --model-path`) and `<output>/training_summary.json` (also `best/finetune.json`): settings, data,
best step, learning curve, library versions and git commit."""
from __future__ import annotations

import importlib.metadata
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from runner.provenance import git_commit, library_versions, now_iso
from training.checkpoints import checkpoint_path, copy_model_files

if TYPE_CHECKING:
    from training.trainer import Trainer

logger = logging.getLogger(__name__)
SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainOutcome:
    output_dir: Path
    best_dir: Path
    best_step: int
    best_eval_loss: Optional[float]
    steps: int
    seconds: float
    resumed_from: Optional[int] = None


def finished_outcome(output: Path) -> Optional[TrainOutcome]:
    """The outcome of a run that already finished in `output` (None if it did not)."""
    path = Path(output) / SUMMARY_FILE
    if not path.is_file() or not (Path(output) / "best").is_dir():
        return None
    data = json.loads(path.read_text())["outcome"]
    return TrainOutcome(Path(output), Path(output) / "best", data["best_step"], data["best_eval_loss"],
                        data["steps"], data["seconds"], data["resumed_from"])


def _merged_copy(trainer: "Trainer", checkpoint: Path, destination: Path) -> None:
    from model_zoo.loading import get_model  # an adapter folder loads merged into its base model
    from training.model_setup import DTYPE_OF_PRECISION
    vlm = get_model(str(checkpoint), dtype=DTYPE_OF_PRECISION[trainer.config.precision], device="cpu")
    vlm.model.save_pretrained(destination)
    vlm.processor.save_pretrained(destination)


def export_best(trainer: "Trainer", outcome: TrainOutcome) -> None:
    """Copy (or, with --merge-lora, merge) the best checkpoint's model into `<output>/best/`."""
    checkpoint = checkpoint_path(trainer.output, outcome.best_step)
    if trainer.config.merge_lora:
        _merged_copy(trainer, checkpoint, outcome.best_dir)
    else:
        copy_model_files(checkpoint, outcome.best_dir)
    logger.info("best checkpoint: step %d (eval loss %s) -> %s", outcome.best_step, outcome.best_eval_loss,
                outcome.best_dir)


def _versions() -> dict:
    versions = library_versions()
    try:
        versions["peft"] = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        versions["peft"] = None
    return versions


def write_summary(trainer: "Trainer", outcome: TrainOutcome) -> None:
    summary = {"config": trainer.config.to_dict(), "num_processes": trainer.accelerator.num_processes,
               "data": trainer.data.info, "total_steps": trainer.total_steps,
               "outcome": {"best_step": outcome.best_step, "best_eval_loss": outcome.best_eval_loss,
                           "steps": outcome.steps, "seconds": round(outcome.seconds, 1),
                           "resumed_from": outcome.resumed_from},
               "history": trainer.state.history, "versions": _versions(), "git": git_commit(),
               "finished_at": now_iso()}
    text = json.dumps(summary, indent=1) + "\n"
    (outcome.best_dir / "finetune.json").write_text(text)
    (trainer.output / SUMMARY_FILE).write_text(text)
