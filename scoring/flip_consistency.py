"""Flip consistency: does the model's answer flip with the image?

A flipped sample (`dataset_zoo.flip`, id `<id>~flip`) shows the mirror image and, for VSR, the mirrored
caption. A model that reads the picture answers it with the mirror of its original answer: left <-> right
swapped, every other answer (on, under, front, yes, no, ...) the same. `flip_consistency(records)` pairs the
records of originals and flips by id, so any evaluation that answered both (the runner, with any method or
intervention, or `python -m training.flip_test`) can score them:

    records = [...]                           # samples.jsonl lines of the originals and their flips
    flip_consistency(records)                 # {"consistency": 0.93, "n_pairs": 400, ...}

Metrics (fractions in [0, 1]):
* consistency: pairs whose flipped prediction is the mirror of the original prediction, over the pairs
  where both predictions parsed (`n_parsed`); unparsed answers say nothing about flipping;
* both_correct: pairs with both answers correct, over all pairs (`n_pairs`);
* accuracy_original / accuracy_flipped: over all pairs, so the two are comparable;
* per_relation: consistency per relation label of the original sample (e.g. "left" vs "on").
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

from dataset_zoo.flip import FLIP_SUFFIX, flip_word


def pair_records(records: Iterable[Mapping]) -> list[tuple[Mapping, Mapping]]:
    """(original, flipped) record pairs, in the order of the originals; unpaired records are skipped."""
    by_id = {record["id"]: record for record in records}
    return [(record, by_id[record["id"] + FLIP_SUFFIX]) for record in by_id.values()
            if not record["id"].endswith(FLIP_SUFFIX) and record["id"] + FLIP_SUFFIX in by_id]


def is_consistent(original_prediction, flipped_prediction) -> bool:
    return flipped_prediction == flip_word(original_prediction)


def _share(numerator: int, denominator: int):
    return numerator / denominator if denominator else None


def flip_consistency(records: Iterable[Mapping]) -> dict:
    """Consistency metrics of the original/flip pairs among `records` (see the module docstring)."""
    pairs = pair_records(records)
    parsed = [(o, f) for o, f in pairs if o["prediction"] is not None and f["prediction"] is not None]
    consistent = [is_consistent(o["prediction"], f["prediction"]) for o, f in parsed]
    by_relation: dict[str, list[bool]] = defaultdict(list)
    for (original, _), verdict in zip(parsed, consistent):
        by_relation[original.get("relation") or ""].append(verdict)
    return {
        "n_pairs": len(pairs), "n_parsed": len(parsed), "n_consistent": sum(consistent),
        "consistency": _share(sum(consistent), len(parsed)),
        "both_correct": _share(sum(o["correct"] and f["correct"] for o, f in pairs), len(pairs)),
        "accuracy_original": _share(sum(o["correct"] for o, _ in pairs), len(pairs)),
        "accuracy_flipped": _share(sum(f["correct"] for _, f in pairs), len(pairs)),
        "per_relation": {relation: {"n": len(v), "consistency": sum(v) / len(v)}
                         for relation, v in sorted(by_relation.items())},
    }
