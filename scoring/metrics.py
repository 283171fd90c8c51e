"""Aggregate judged samples into the metrics of a run.

`compute_metrics` returns a plain, JSON-serialisable dict; every rate is a fraction in [0, 1] (the original
code wrote some as percentages), and a rate over an empty denominator is None, never 0.

Always present: ``accuracy``, ``n``, ``n_correct``, ``n_unparsed`` and ``per_relation``
({relation: {"accuracy", "n"}}); multiple-choice and yes/no data also ``confusion``
({gold: {prediction or "unparsed": count}}). Grouped (Controlled) data add the pair/set metrics of
`scoring.pair_set`; yes/no (VSR, POPE) data add the binary metrics of `scoring.yes_no`. Short-answer
data (GQA, TextVQA, VQAv2) score each sample with its VQA accuracy (`Judgement.score`, see
`scoring.vqa`): ``accuracy`` is their mean and ``n_correct`` counts full credits.

Data whose samples belong to several subsets (POPE with option "all") add ``per_subset`` ({subset: the
scalar metrics of that subset alone}) and ``subset_average`` (the unweighted mean of each rate over the
subsets: POPE's "average" row of the paper's Tables 4/10).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Optional, Sequence

from dataset_zoo.base import MULTIPLE_CHOICE, SHORT_ANSWER, YES_NO, Sample
from scoring.matching import Judgement, is_short_answer, is_yes_no
from scoring.pair_set import pair_set_metrics
from scoring.yes_no import yes_no_metrics

UNPARSED = "unparsed"
TASKS = (MULTIPLE_CHOICE, YES_NO, SHORT_ANSWER)
AVERAGED_RATES = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def compute_metrics(judgements: Sequence[Judgement], samples: Sequence[Sample], *,
                    has_groups: Optional[bool] = None, task: Optional[str] = None) -> dict:
    """Metrics of `judgements` (one per sample, same order) on `samples`.

    has_groups: add pair/set accuracy; None = infer (every sample has a group).
    task: "multiple_choice", "yes_no" (adds TP/TN/FP/FN, precision/recall/F1, f1_paper, yes_ratio) or
        "short_answer" (accuracy = mean VQA score); None = infer from the samples' options.
    With no samples, ``accuracy`` (and every other rate) is None.
    """
    if len(judgements) != len(samples):
        raise ValueError(f"{len(judgements)} judgements for {len(samples)} samples; pass one per sample")
    if has_groups is None:
        has_groups = bool(samples) and all(sample.group is not None for sample in samples)
    task = task or infer_task(samples)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    metrics = _metrics_of(judgements, samples, has_groups, task)
    subsets = list(dict.fromkeys(sample.subset for sample in samples if sample.subset is not None))
    if len(subsets) > 1:
        metrics.update(subset_metrics(judgements, samples, task, sorted(subsets)))
    return metrics


def infer_task(samples: Sequence[Sample]) -> str:
    """"short_answer" when no sample offers options, "yes_no" when all offer yes/no, else multiple choice."""
    if samples and all(is_short_answer(sample) for sample in samples):
        return SHORT_ANSWER
    if samples and all(is_yes_no(sample) for sample in samples):
        return YES_NO
    return MULTIPLE_CHOICE


def _metrics_of(judgements: Sequence[Judgement], samples: Sequence[Sample], has_groups: bool,
                task: str) -> dict:
    correct = [bool(judgement.correct) for judgement in judgements]
    credits = [judgement.credit for judgement in judgements]
    metrics = {
        "accuracy": _mean(credits),
        "n": len(samples),
        "n_correct": sum(correct),
        "n_unparsed": sum(judgement.prediction is None for judgement in judgements),
        "per_relation": per_relation_accuracy(credits, samples),
    }
    if task != SHORT_ANSWER:  # free-form answers have no fixed label set to tabulate
        metrics["confusion"] = confusion_matrix(judgements, samples)
    if has_groups:
        metrics.update(pair_set_metrics(correct, samples))
    if task == YES_NO:
        metrics.update(yes_no_metrics(correct, samples, [judgement.prediction for judgement in judgements]))
    return metrics


def subset_metrics(judgements: Sequence[Judgement], samples: Sequence[Sample], task: str,
                   subsets: Sequence[str]) -> dict:
    """`per_subset` (scalar metrics of each subset alone) and `subset_average` (mean rate over subsets)."""
    per_subset = {}
    for subset in subsets:
        rows = [i for i, sample in enumerate(samples) if sample.subset == subset]
        metrics = _metrics_of([judgements[i] for i in rows], [samples[i] for i in rows], False, task)
        per_subset[subset] = {key: value for key, value in metrics.items() if not isinstance(value, dict)}
    average = {}
    for rate in AVERAGED_RATES:
        if all(rate in metrics for metrics in per_subset.values()):
            values = [metrics[rate] for metrics in per_subset.values()]
            average[rate] = None if None in values else sum(values) / len(values)
    return {"per_subset": per_subset, "subset_average": average}


def per_relation_accuracy(credits: Sequence[float], samples: Sequence[Sample]) -> dict[str, dict]:
    """{relation: {"accuracy": mean credit, "n": count}}, relations in order of first appearance."""
    by_relation: dict[str, list[float]] = defaultdict(list)
    for credit, sample in zip(credits, samples):
        by_relation[sample.relation].append(credit)
    return {relation: {"accuracy": _mean(values), "n": len(values)} for relation, values in by_relation.items()}


def confusion_matrix(judgements: Sequence[Judgement], samples: Sequence[Sample]) -> dict[str, dict[str, int]]:
    """{gold answer: {predicted option or "unparsed": count}}; only observed cells are present."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for judgement, sample in zip(judgements, samples):
        counts[sample.answer][judgement.prediction if judgement.prediction is not None else UNPARSED] += 1
    return {gold: dict(row) for gold, row in counts.items()}


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None
