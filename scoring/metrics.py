"""Aggregate judged samples into the metrics of a run.

`compute_metrics` returns a plain, JSON-serialisable dict; every rate is a fraction in [0, 1] (the original
code wrote some as percentages), and a rate over an empty denominator is None, never 0.

Always present: ``accuracy``, ``n``, ``n_correct``, ``n_unparsed``, ``per_relation``
({relation: {"accuracy", "n"}}) and ``confusion`` ({gold: {prediction or "unparsed": count}}).
Grouped (Controlled) data add the pair/set metrics of `evaluation.pair_set`; yes/no (VSR) data add the binary
metrics of `evaluation.yes_no`.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Optional, Sequence

from dataset_zoo.base import MULTIPLE_CHOICE, YES_NO, Sample
from scoring.matching import Judgement, is_yes_no
from scoring.pair_set import pair_set_metrics
from scoring.yes_no import yes_no_metrics

UNPARSED = "unparsed"


def compute_metrics(judgements: Sequence[Judgement], samples: Sequence[Sample], *,
                    has_groups: Optional[bool] = None, task: Optional[str] = None) -> dict:
    """Metrics of `judgements` (one per sample, same order) on `samples`.

    has_groups: add pair/set accuracy; None = infer (every sample has a group).
    task: "multiple_choice" or "yes_no" (adds TP/TN/FP/FN, precision/recall/F1, f1_paper);
        None = infer ("yes_no" when every sample's options are ("yes", "no")).
    With no samples, ``accuracy`` (and every other rate) is None.
    """
    if len(judgements) != len(samples):
        raise ValueError(f"{len(judgements)} judgements for {len(samples)} samples; pass one per sample")
    if has_groups is None:
        has_groups = bool(samples) and all(sample.group is not None for sample in samples)
    if task is None:
        task = YES_NO if samples and all(is_yes_no(sample) for sample in samples) else MULTIPLE_CHOICE
    if task not in (MULTIPLE_CHOICE, YES_NO):
        raise ValueError(f"unknown task {task!r}; expected {MULTIPLE_CHOICE!r} or {YES_NO!r}")

    correct = [bool(judgement.correct) for judgement in judgements]
    metrics = {
        "accuracy": _mean(correct),
        "n": len(samples),
        "n_correct": sum(correct),
        "n_unparsed": sum(judgement.prediction is None for judgement in judgements),
        "per_relation": per_relation_accuracy(correct, samples),
        "confusion": confusion_matrix(judgements, samples),
    }
    if has_groups:
        metrics.update(pair_set_metrics(correct, samples))
    if task == YES_NO:
        metrics.update(yes_no_metrics(correct, samples))
    return metrics


def per_relation_accuracy(correct: Sequence[bool], samples: Sequence[Sample]) -> dict[str, dict]:
    """{relation: {"accuracy": fraction, "n": count}}, relations in order of first appearance."""
    by_relation: dict[str, list[bool]] = defaultdict(list)
    for is_correct, sample in zip(correct, samples):
        by_relation[sample.relation].append(is_correct)
    return {relation: {"accuracy": _mean(values), "n": len(values)} for relation, values in by_relation.items()}


def confusion_matrix(judgements: Sequence[Judgement], samples: Sequence[Sample]) -> dict[str, dict[str, int]]:
    """{gold answer: {predicted option or "unparsed": count}}; only observed cells are present."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for judgement, sample in zip(judgements, samples):
        counts[sample.answer][judgement.prediction if judgement.prediction is not None else UNPARSED] += 1
    return {gold: dict(row) for gold, row in counts.items()}


def _mean(values: Sequence[bool]) -> Optional[float]:
    return sum(values) / len(values) if values else None
