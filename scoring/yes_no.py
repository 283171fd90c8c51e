"""Binary metrics for yes/no (VSR-style) questions, standard and as the original AdaptVis code computes them.

"yes" is the positive class. Every sample adds one count from its gold answer and its verdict: gold yes and
correct → TP, gold yes and wrong → FN, gold no and correct → TN, gold no and wrong → FP. An unparsed answer is
a wrong answer, so it is an FN for gold yes and an FP for gold no (this is also what the original does).

* ``precision`` = TP/(TP+FP), ``recall`` = ``tpr`` = TP/(TP+FN), ``tnr`` = TN/(TN+FP),
  ``f1`` = 2TP/(2TP+FP+FN) (standard F1; it is 0 rather than undefined when TP = 0 but FP+FN > 0).
* ``yes_ratio``: the fraction of answers that say "yes" (prediction "yes"), POPE's "Yes" column
  (Li et al. 2023, the POPE paper; LLaVA's eval_pope.py). An unparsed answer says neither. (lmms-eval's
  `pope_yes_ratio` counts the gold answers instead, which is always 0.5 on POPE.)
* ``f1_paper``: what the original code calls F1 (README, Differences from the original code). Its
  "precision" is TP/(TP+FN) (the TPR) and its "recall" TN/(TN+FP) (the TNR), so its "F1" is the harmonic mean
  of TPR and TNR. It is 0.0 when TPR = TNR = 0 (the limit of the harmonic mean; the original divides by zero).

Any rate whose denominator is zero is None (undefined), e.g. `tpr` and `f1_paper` on a subset without
gold-yes samples, `precision` when nothing was predicted yes.
"""
from __future__ import annotations

from typing import Optional, Sequence

from dataset_zoo.base import Sample

YES = "yes"


def yes_no_metrics(correct: Sequence[bool], samples: Sequence[Sample],
                   predictions: Sequence[Optional[str]]) -> dict:
    """TP/TN/FP/FN counts, precision/recall/F1 with "yes" positive, TPR/TNR, the paper's `f1_paper` and the
    yes ratio of the predictions."""
    tp = tn = fp = fn = 0
    for is_correct, sample in zip(correct, samples):
        positive = _gold_is_yes(sample)
        tp += positive and is_correct
        fn += positive and not is_correct
        tn += not positive and is_correct
        fp += not positive and not is_correct
    tpr, tnr = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": tpr,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "tpr": tpr,
        "tnr": tnr,
        "f1_paper": _harmonic_mean(tpr, tnr),
        "yes_ratio": _ratio(sum(prediction == YES for prediction in predictions), len(predictions)),
    }


def _gold_is_yes(sample: Sample) -> bool:
    return sample.label == 1 if sample.label is not None else sample.answer == YES


def _harmonic_mean(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None:
        return None
    return 2 * a * b / (a + b) if a + b else 0.0


def _ratio(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None
