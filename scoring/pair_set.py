"""Pair and set accuracy for Controlled-style data (WhatsUp Controlled A/B and their synthetic twins).

Each sample belongs to a group (obj1, obj2) and fills one relation slot of it. A pair is the two opposite
slots of one group: left+right, and on+under (A) or in-front+behind (B). A set is all four slots of a group.
A pair (set) is correct when all its members are judged correct.

Two versions are reported (README, Differences from the original code):

* ``pair_accuracy`` / ``set_accuracy``: correct pairs (sets) over the COMPLETE pairs (sets) among the evaluated
  samples, i.e. pairs (sets) whose members were all evaluated. None when no complete pair (set) exists, because
  a rate over nothing is undefined, not zero.
* ``pair_accuracy_paper`` / ``set_accuracy_paper``: the original formula, pair_correct / (n/2) and
  set_correct / (n/4) with n the number of evaluated samples. Slots of a group missing from the evaluated subset
  count as wrong, so on a 20 %/80 % split these are deflated. None when n = 0.

Both share the numerators (a pair or set can only be correct if all its members were evaluated).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

from dataset_zoo.base import Sample

LEFT_RIGHT = ("left", "right")
ON_UNDER = ("on", "under")
FRONT_BEHIND = ("in-front", "behind")
# Controlled-B's front slot is "in-front" in file names; accept the bare option word "front" as the same slot.
_SLOT_ALIASES = {"front": "in-front"}
SET_SIZE = 4
_PAIR_OF_SLOT = {slot: pair for pair in (LEFT_RIGHT, ON_UNDER, FRONT_BEHIND) for slot in pair}


def pair_set_metrics(correct: Sequence[bool], samples: Sequence[Sample]) -> dict:
    """pair/set accuracies (complete-group and paper versions) and the counts of complete pairs and sets."""
    groups = _slots_by_group(correct, samples)
    pair_correct = n_pairs = set_correct = n_sets = 0
    for slots in groups.values():
        pairs = _pairs_of_group(slots)
        complete = [pair for pair in pairs if all(slot in slots for slot in pair)]
        n_pairs += len(complete)
        pair_correct += sum(all(slots[slot] for slot in pair) for pair in complete)
        if len(slots) == SET_SIZE:
            n_sets += 1
            set_correct += all(slots.values())
    n = len(samples)
    return {
        "pair_accuracy": _ratio(pair_correct, n_pairs),
        "set_accuracy": _ratio(set_correct, n_sets),
        "n_pairs": n_pairs,
        "n_sets": n_sets,
        "pair_accuracy_paper": _ratio(pair_correct, n / 2),
        "set_accuracy_paper": _ratio(set_correct, n / 4),
    }


def _slots_by_group(correct: Sequence[bool], samples: Sequence[Sample]) -> dict[tuple, dict[str, bool]]:
    groups: dict[tuple, dict[str, bool]] = defaultdict(dict)
    for is_correct, sample in zip(correct, samples):
        if sample.group is None:
            raise ValueError(f"sample {sample.id} has no group (obj1, obj2); pair/set accuracy needs one "
                             f"on every sample (pass has_groups=False for ungrouped data)")
        slot = _slot_of(sample)
        if slot in groups[sample.group]:
            raise ValueError(f"group {sample.group} has two samples in slot {slot!r} (second: {sample.id}); "
                             f"each sample must be judged once")
        groups[sample.group][slot] = bool(is_correct)
    return groups


def _slot_of(sample: Sample) -> str:
    slot = _SLOT_ALIASES.get(sample.relation, sample.relation)
    if slot not in _PAIR_OF_SLOT:
        raise ValueError(f"sample {sample.id} has relation {sample.relation!r}, which is no pair/set slot; "
                         f"expected one of {sorted(_PAIR_OF_SLOT)}")
    return slot


def _pairs_of_group(slots: dict[str, bool]) -> list[tuple[str, str]]:
    """The pairs a group can have: left+right, plus on+under or in-front+behind once either slot is seen."""
    others = {_PAIR_OF_SLOT[slot] for slot in slots if _PAIR_OF_SLOT[slot] != LEFT_RIGHT}
    if len(others) > 1:
        raise ValueError(f"a group mixes on/under with in-front/behind slots ({sorted(slots)}); "
                         f"a group is either Controlled A or Controlled B")
    return [LEFT_RIGHT, *others]


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator else None
