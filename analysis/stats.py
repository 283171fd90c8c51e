"""The numbers behind the figures, as small pure functions (tested on hand-made cases).

* `auroc`: how well a score ranks correct above wrong answers (Mann-Whitney, ties count one half);
* `overlap`: cosine similarity of an image-attention vector with a box-coverage vector over the same image
  tokens (paper Fig. 6: "attention-box overlap"; both are normalised first, which the cosine ignores anyway);
* `error_type`: what kind of mistake an answer is (horizontal, vertical or depth flip, orthogonal, unparsed);
* `confusion` and `fixed_and_broken` over records (samples.jsonl lines or collected records).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

import numpy as np

HORIZONTAL = frozenset({"left", "right"})
UP = frozenset({"on", "above", "top"})
DOWN = frozenset({"under", "below", "bottom"})
DEPTH = frozenset({"front", "behind"})
ERROR_TYPES = ("horizontal flip", "vertical flip", "depth flip", "orthogonal", "unparsed", "other")
UNPARSED = "unparsed"


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for `labels` (True = positive); NaN when a class is missing.
    Equals P(score of a random positive > score of a random negative) + P(tie) / 2."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    keep = ~np.isnan(scores)
    scores, labels = scores[keep], labels[keep]
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def overlap(attention: np.ndarray, coverage: np.ndarray) -> float:
    """Cosine similarity of (..., n) attention with an (n,) box coverage; NaN when either is all zero."""
    attention = np.asarray(attention, dtype=float)
    coverage = np.asarray(coverage, dtype=float)
    norms = np.linalg.norm(attention, axis=-1) * np.linalg.norm(coverage)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, attention @ coverage / np.where(norms > 0, norms, 1.0), np.nan)


def axis(word: Optional[str]) -> Optional[str]:
    """'horizontal', 'vertical' or 'depth' for a relation word, None for anything else."""
    if word in HORIZONTAL:
        return "horizontal"
    if word in UP or word in DOWN:
        return "vertical"
    return "depth" if word in DEPTH else None


def error_type(gold: str, prediction: Optional[str]) -> Optional[str]:
    """The kind of mistake (one of ERROR_TYPES), None for a correct answer.

    Flips stay on the gold's axis (left<->right; on/above/top<->under/below/bottom; front<->behind);
    orthogonal answers leave it between horizontal and vertical/depth, either way."""
    if prediction == gold:
        return None
    if prediction is None or prediction == UNPARSED:
        return UNPARSED
    gold_axis, predicted_axis = axis(gold), axis(prediction)
    if gold_axis == predicted_axis == "horizontal":
        return "horizontal flip"
    if (gold in UP and prediction in DOWN) or (gold in DOWN and prediction in UP):
        return "vertical flip"
    if gold_axis == predicted_axis == "depth":
        return "depth flip"
    if {gold_axis, predicted_axis} in ({"horizontal", "vertical"}, {"horizontal", "depth"}):
        return "orthogonal"
    return "other"


def error_counts(records: Iterable[dict]) -> dict[str, int]:
    """{error type: count} over records with `gold` and `prediction` (every type present, 0 when unseen)."""
    counts = Counter(error_type(r["gold"], r.get("prediction")) for r in records)
    return {kind: counts.get(kind, 0) for kind in ERROR_TYPES}


def confusion(records: Iterable[dict]) -> tuple[list[str], list[str], np.ndarray]:
    """(gold labels, predicted labels incl. 'unparsed', counts[gold, prediction]) over records."""
    records = list(records)
    golds = sorted({r["gold"] for r in records})
    predictions = sorted({r["prediction"] for r in records if r.get("prediction") is not None} | set(golds))
    if any(r.get("prediction") is None for r in records):
        predictions.append(UNPARSED)
    counts = np.zeros((len(golds), len(predictions)), dtype=int)
    for r in records:
        counts[golds.index(r["gold"]), predictions.index(r.get("prediction") or UNPARSED)] += 1
    return golds, predictions, counts


def fixed_and_broken(before: Iterable[dict], after: Iterable[dict]) -> tuple[list[tuple[dict, dict]], list]:
    """Pairs (record before, record after) of the samples both runs answered, by id: `fixed` were wrong before
    and right after, `broken` the reverse."""
    earlier = {r["id"]: r for r in before}
    pairs = [(earlier[r["id"]], r) for r in after if r["id"] in earlier]
    fixed = [(a, b) for a, b in pairs if not a["correct"] and b["correct"]]
    broken = [(a, b) for a, b in pairs if a["correct"] and not b["correct"]]
    return fixed, broken


# ---- per-sample reductions of a captured row (intervention.capture.AttentionRow) -----------------------------

def layer_masses(row) -> tuple[np.ndarray, np.ndarray]:
    """(layers,) attention mass on image keys and on text keys, each summed over its keys, mean over heads."""
    return row.image.sum(-1).mean(-1), row.text.sum(-1).mean(-1)


def image_map(row) -> np.ndarray:
    """(layers, n_image) image attention, mean over heads (what VEA and the peers' heatmaps use)."""
    return row.image.mean(1)


def dispersion(row) -> np.ndarray:
    """(layers,) variance over the image tokens of the head-mean image attention rescaled to mean 1
    (n * p with p normalised to sum 1): 0 for uniform attention, growing as attention concentrates."""
    attention = image_map(row)
    normalised = attention / np.maximum(attention.sum(-1, keepdims=True), 1e-30) * attention.shape[-1]
    return normalised.var(-1)


def default_layers(n_layers: int) -> list[int]:
    """A quarter, half and three quarters of the way through, and the last layer."""
    return sorted({n_layers // 4, n_layers // 2, (3 * n_layers) // 4, n_layers - 1})


def mean_and_spread(values: Sequence[np.ndarray]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Mean and standard deviation over samples (axis 0); None when there are none."""
    if not len(values):
        return None
    stacked = np.stack(values)
    return stacked.mean(0), stacked.std(0)
