"""`--threshold auto`: the paper's AdaptVis threshold for yes/no tasks, computed from the val split.

The paper (appendix E.3) sets VSR's threshold to "the mean of the average confidences of the two
labels": the mean, over the gold labels yes and no, of the mean alpha = 1 first-token confidence of
the val samples with that label. Averaging per label first keeps an unbalanced split from pulling
the threshold toward its majority label.

The confidences come from a finished val run folder of the same settings when one covers the whole
val split (every method's records hold the alpha = 1 confidence, which does not depend on the
method), else from one confidence-only pass over the val split with the already loaded model. The
result goes into each AdaptVis run folder's config.json as `threshold_auto` (its `value` is the number
used; `hyperparameters.threshold` stays "auto", the folder's identity); a resumed run reuses the
recorded value, so all its samples are decided with one threshold.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from methods import Configuration
from runner.config import AUTO, RunConfig, run_name
from runner.records import RunFolder, read_records

logger = logging.getLogger(__name__)

LABELS = ("yes", "no")
SPLIT = "val"


@dataclass(frozen=True)
class AutoThreshold:
    """A threshold computed by the paper's rule, and what it was computed from."""

    value: float
    split: str
    n_per_label: dict[str, int]
    mean_confidence_per_label: dict[str, float]
    source: str

    def to_dict(self) -> dict:
        return {"rule": "mean over the gold labels of the mean alpha=1 first-token confidence",
                "value": self.value, "split": self.split, "n_per_label": self.n_per_label,
                "mean_confidence_per_label": self.mean_confidence_per_label, "source": self.source}


def threshold_from_confidences(samples: Sequence[Sample], confidence: dict[str, float], *, split: str,
                               source: str) -> AutoThreshold:
    """The paper's rule on the alpha = 1 confidences (by sample id) of `samples`."""
    per_label = {label: [confidence[s.id] for s in samples if s.answer == label] for label in LABELS}
    empty = [label for label, values in per_label.items() if not values]
    if empty:
        raise ToolkitError(f"--threshold auto needs {split} samples of both labels, but the {split} split has no "
                           f"{' or '.join(repr(label) for label in empty)} sample; evaluate more samples "
                           f"(--limit) or give a number")
    means = {label: math.fsum(values) / len(values) for label, values in per_label.items()}
    return AutoThreshold(value=math.fsum(means.values()) / len(means), split=split,
                         n_per_label={label: len(values) for label, values in per_label.items()},
                         mean_confidence_per_label=means, source=source)


def recorded_confidences(output_root: Path, config: RunConfig, option: Optional[str],
                         samples: Sequence[Sample]) -> Optional[tuple[str, dict[str, float]]]:
    """(folder name, confidences by id) of a finished val run of the same settings covering `samples`."""
    wanted = {s.id for s in samples}
    for folder in same_settings_folders(output_root, config, option, SPLIT):
        if not RunFolder(folder).is_finished():
            continue
        confidence = {r["id"]: r["confidence"] for r in read_records(folder / "samples.jsonl")}
        if wanted <= confidence.keys():
            return folder.name, confidence
    return None


def same_settings_folders(output_root: Path, config: RunConfig, option: Optional[str], split: str) -> list[Path]:
    """Run folders of every method under `output_root` that share all settings of `config` on `split`.

    Folder names differ only in the method label (`runner.config.run_name`), so the name of the
    baseline's folder, with its label cut out, is the pattern.
    """
    probe = run_name(config, Configuration("base"), option, split)
    head, _, tail = probe.partition("__base__")
    if not output_root.is_dir():
        return []
    return sorted(path for path in output_root.iterdir() if path.is_dir() and path.name.startswith(head + "__")
                  and path.name.endswith("__" + tail) and len(path.name) > len(head) + len(tail) + 4)


def settle_threshold(output_root: Path, config: RunConfig, option: Optional[str],
                     load_val_samples: Callable[[], Sequence[Sample]],
                     confidence_pass: Callable[[Sequence[Sample]], dict[str, float]]) -> AutoThreshold:
    """The auto threshold for `config`: from a finished val run's records, else from a confidence pass."""
    samples = load_val_samples()
    found = recorded_confidences(output_root, config, option, samples)
    if found is not None:
        name, confidence = found
        source = f"records of {name}"
    else:
        logger.info("--threshold auto: one confidence pass over the %d %s samples (no finished %s run of "
                    "these settings to read them from)", len(samples), SPLIT, SPLIT)
        confidence = confidence_pass(samples)
        source = f"a confidence pass over the {SPLIT} split"
    threshold = threshold_from_confidences(samples, confidence, split=SPLIT, source=source)
    logger.info("--threshold auto = %.4f (mean confidence %s on %s, from %s)", threshold.value,
                ", ".join(f"{label} {threshold.mean_confidence_per_label[label]:.4f} (n={threshold.n_per_label[label]})"
                          for label in LABELS), SPLIT, source)
    return threshold


def is_auto(configuration: Configuration) -> bool:
    return configuration.get("threshold") == AUTO
