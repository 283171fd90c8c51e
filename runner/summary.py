"""What `main_aro.py` prints after a run: the table of its configurations and what the numbers alone hide.

Besides Acc (and Pair/Set Acc or F1 where the dataset has them) and the count of unparsed answers, the
summary says why a cell is empty ("Set Acc: no complete set in this split"), warns when most answers
were not parsed (the accuracy then measures the answer format, not the model; an example generation
shows what the model said), and repeats the run's notices, e.g. that a model is evaluated far outside
what it was trained on (`domain_notice`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from runner.records import SAMPLES_FILE, read_records

if TYPE_CHECKING:
    from runner.run import RunOutcome

# (metric key, column title, why a run has no value)
COLUMNS = (("accuracy", "Acc", "no samples"),
           ("pair_accuracy", "Pair Acc", "no complete pair in this split"),
           ("set_accuracy", "Set Acc", "no complete set in this split"),
           ("f1", "F1", "undefined: no 'yes' among the gold labels and the answers"),
           ("flip_consistency.consistency", "Flip", "no original/flipped pair with both answers parsed"))
UNPARSED_TITLE = "Unparsed"
# A run is "mostly unparsed" above this share of its answers.
MOSTLY = 0.5
SHOWN_CONFIGURATIONS = 3
# The toy checkpoints' training script records what it trained on (`model_zoo.toy.train`).
TRAINING_LOG = "training_log.json"


def outcome_summary(outcomes: Sequence["RunOutcome"]) -> Optional[str]:
    """The fixed-width table of the outcomes and the notes below it (None if there is nothing)."""
    if not outcomes:
        return None
    # A column is shown when the dataset has the metric (the key exists), even where it is empty.
    shown = [(key, title, why) for key, title, why in COLUMNS
             if any(key.split(".")[0] in o.metrics for o in outcomes)]
    width = max(len("configuration"), *(len(o.spec.label()) for o in outcomes))
    titles = [title for _, title, _ in shown] + [UNPARSED_TITLE]
    lines = [f"{'configuration':<{width}}  " + "  ".join(f"{title:>8}" for title in titles)]
    for outcome in outcomes:
        cells = [_percent(_lookup(outcome.metrics, key)) for key, _, _ in shown]
        cells.append(str(outcome.metrics.get("n_unparsed", "-")))
        lines.append(f"{outcome.spec.label():<{width}}  " + "  ".join(f"{cell:>8}" for cell in cells))
    lines += [f"{title}: {why}" for key, title, why in shown
              if any(key.split(".")[0] in o.metrics and _lookup(o.metrics, key) is None for o in outcomes)]
    lines += unparsed_warnings(outcomes)
    lines += list(dict.fromkeys(notice for outcome in outcomes for notice in outcome.notices))
    return "\n".join(lines)


def _lookup(metrics: dict, key: str):
    """metrics[key], a dotted key reading a nested one (flip_consistency.consistency); None when absent."""
    value = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def unparsed_warnings(outcomes: Sequence["RunOutcome"]) -> list[str]:
    """One line per configuration (up to three) whose answers are mostly unparsed, with an example."""
    mostly = [o for o in outcomes if o.metrics.get("n") and o.metrics.get("n_unparsed", 0) > MOSTLY * o.metrics["n"]]
    lines = []
    for outcome in mostly[:SHOWN_CONFIGURATIONS]:
        example = unparsed_example(outcome.path)
        shown = f", e.g. {example!r}" if example is not None else ""
        lines.append(f"warning: {outcome.spec.label()}: {outcome.metrics['n_unparsed']} of {outcome.metrics['n']} "
                     f"answers name no option (unparsed, counted wrong){shown}; the accuracy measures the answer "
                     f"format, not the method: check --prompt-format, --max-new-tokens, --match, or the model")
    if len(mostly) > SHOWN_CONFIGURATIONS:
        lines.append(f"warning: {len(mostly) - SHOWN_CONFIGURATIONS} more configurations have mostly unparsed "
                     f"answers")
    return lines


def unparsed_example(folder: Path) -> Optional[str]:
    """The generation of the first unparsed record of a run folder."""
    for record in read_records(folder / SAMPLES_FILE):
        if record.get("prediction") is None:
            return record.get("generation")
    return None


def trained_on(model_folder: Path) -> Optional[tuple[str, ...]]:
    """The datasets a checkpoint of `model_zoo.toy.train` was trained on (None for any other model)."""
    log = model_folder / TRAINING_LOG
    if not log.is_file():
        return None
    try:
        variants = json.loads(log.read_text(encoding="utf-8"))["config"]["variants"]
    except (ValueError, KeyError, TypeError):
        return None
    return tuple(f"Synthetic_Controlled_{variant}" for variant in variants)


def domain_notice(model_label: str, model_folder: Path, dataset: str) -> Optional[str]:
    """A one-line notice when the model is evaluated on data it was not trained for (the toy model on
    anything but its synthetic scenes gives chance-level numbers that say nothing about a method)."""
    datasets = trained_on(model_folder)
    if datasets is None or dataset in datasets:
        return None
    return (f"notice: {model_label} was trained only on {', '.join(datasets)} scenes; on {dataset} it is far "
            f"outside what it learned, so expect chance-level numbers that say nothing about the methods")
