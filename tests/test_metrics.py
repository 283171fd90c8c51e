"""Metrics on hand-computed cases: the Controlled A/B fixtures (full and partial), the VSR
"Yes to everything" example, zero-denominator guards, per-relation and confusion counts."""
import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from dataset_zoo.base import Sample
from scoring import compute_metrics, judge

CONTROLLED_A_FILES = [
    "mug_under_table.jpeg", "water-bottle_left_of_stool.jpeg", "mug_on_table.jpeg", "water-bottle_on_stool.jpeg",
    "mug_right_of_table.jpeg", "water-bottle_under_stool.jpeg", "mug_left_of_table.jpeg",
    "water-bottle_right_of_stool.jpeg",
]
CONTROLLED_B_FILES = [
    "teapot_right_of_spoon.jpeg", "toy-car_behind_cup.jpeg", "teapot_in-front_of_spoon.jpeg",
    "toy-car_left_of_cup.jpeg", "teapot_behind_spoon.jpeg", "toy-car_right_of_cup.jpeg",
    "teapot_left_of_spoon.jpeg", "toy-car_in-front_of_cup.jpeg",
]
VSR_ROWS = [  # (relation, label) of six synthetic zero-shot rows
    ("under", 1), ("left of", 0), ("on top of", 1), ("contains", 1), ("facing away from", 0), ("behind", 0),
]


def controlled_sample(index: int, file_name: str, variant: str) -> Sample:
    """A sample keyed as the official grouping does: (obj1, obj2) from the name, slot = second field."""
    parts = file_name.split("_")
    slot = parts[1]
    options = ("left", "right", "on", "under") if variant == "A" else ("left", "right", "front", "behind")
    return Sample(id=file_name, index=index, image_path=Path("data/controlled_images") / file_name,
                  question="Where?", options=options, answer="front" if slot == "in-front" else slot,
                  relation=slot, group=(parts[0], parts[-1][:-5]))


def controlled(variant: str) -> list[Sample]:
    files = CONTROLLED_A_FILES if variant == "A" else CONTROLLED_B_FILES
    return [controlled_sample(i, name, variant) for i, name in enumerate(files)]


def vsr_samples() -> list[Sample]:
    return [Sample(id=f"vsr-{i}", index=i, image_path=Path("unused.jpg"), question="Yes or no?",
                   options=("yes", "no"), answer="yes" if label else "no", relation=relation,
                   caption="The x is related to the y.", label=label)
            for i, (relation, label) in enumerate(VSR_ROWS)]


def judge_all(generations, samples, mode="strict"):
    return [judge(generation, sample, mode) for generation, sample in zip(generations, samples)]


def gold_generations(samples, wrong=None):
    """The gold word as generation (capitalised, as LLaVA answers), except the rows {index: text} in `wrong`."""
    wrong = wrong or {}
    return [wrong.get(i, sample.answer.capitalize()) for i, sample in enumerate(samples)]


def test_controlled_a_fixture_with_one_wrong_under():
    samples = controlled("A")
    metrics = compute_metrics(judge_all(gold_generations(samples, {5: "On"}), samples), samples)
    assert metrics["accuracy"] == 0.875 and metrics["n"] == 8 and metrics["n_correct"] == 7
    assert metrics["pair_accuracy"] == 0.75 and metrics["n_pairs"] == 4
    assert metrics["set_accuracy"] == 0.5 and metrics["n_sets"] == 2
    # On the full dataset the paper formula agrees with the complete-group one.
    assert metrics["pair_accuracy_paper"] == 0.75 and metrics["set_accuracy_paper"] == 0.5
    assert metrics["n_unparsed"] == 0
    assert metrics["per_relation"] == {"under": {"accuracy": 0.5, "n": 2}, "left": {"accuracy": 1.0, "n": 2},
                                       "on": {"accuracy": 1.0, "n": 2}, "right": {"accuracy": 1.0, "n": 2}}
    assert metrics["confusion"] == {"under": {"under": 1, "on": 1}, "left": {"left": 2}, "on": {"on": 2},
                                    "right": {"right": 2}}
    assert "tp" not in metrics and "f1" not in metrics


def test_controlled_b_fixture_with_one_wrong_behind():
    samples = controlled("B")
    generations = gold_generations(samples, {4: "It is in front of the spoon."})  # teapot_behind_spoon
    metrics = compute_metrics(judge_all(generations, samples), samples)
    assert (metrics["accuracy"], metrics["pair_accuracy"], metrics["set_accuracy"]) == (0.875, 0.75, 0.5)
    assert (metrics["pair_accuracy_paper"], metrics["set_accuracy_paper"]) == (0.75, 0.5)
    assert (metrics["n_pairs"], metrics["n_sets"]) == (4, 2)
    assert metrics["per_relation"]["in-front"] == {"accuracy": 1.0, "n": 2}
    assert metrics["per_relation"]["behind"] == {"accuracy": 0.5, "n": 2}
    assert metrics["confusion"]["behind"] == {"behind": 1, "front": 1}
    assert metrics["confusion"]["front"] == {"front": 2}


def test_partial_subset_three_of_four_group_members_all_correct():
    samples = [s for s in controlled("A") if s.id != "mug_left_of_table.jpeg"]  # mug group: 3 of 4 slots
    metrics = compute_metrics(judge_all(gold_generations(samples), samples), samples)
    # Complete pairs: mug on+under, water-bottle left+right and on+under. Complete sets: water-bottle only.
    assert (metrics["n_pairs"], metrics["n_sets"]) == (3, 1)
    assert metrics["pair_accuracy"] == 1.0 and metrics["set_accuracy"] == 1.0
    # Paper: 3 correct pairs / (7/2), 1 correct set / (7/4); the incomplete mug group counts as wrong.
    assert metrics["pair_accuracy_paper"] == pytest.approx(6 / 7)
    assert metrics["set_accuracy_paper"] == pytest.approx(4 / 7)


def test_partial_subset_with_a_wrong_answer():
    samples = [s for s in controlled("A") if s.id != "mug_left_of_table.jpeg"]
    wrong_under = samples.index(next(s for s in samples if s.id == "water-bottle_under_stool.jpeg"))
    metrics = compute_metrics(judge_all(gold_generations(samples, {wrong_under: "Left"}), samples), samples)
    assert metrics["accuracy"] == pytest.approx(6 / 7)
    assert metrics["pair_accuracy"] == pytest.approx(2 / 3) and metrics["set_accuracy"] == 0.0
    assert metrics["pair_accuracy_paper"] == pytest.approx(4 / 7) and metrics["set_accuracy_paper"] == 0.0


def test_front_option_word_is_accepted_as_the_in_front_slot():
    samples = [replace(s, relation="front") if s.relation == "in-front" else s for s in controlled("B")]
    metrics = compute_metrics(judge_all(gold_generations(samples), samples), samples)
    assert (metrics["n_pairs"], metrics["n_sets"], metrics["set_accuracy"]) == (4, 2, 1.0)


def test_no_complete_pair_gives_none_not_zero():
    samples = controlled("A")[:2]  # mug under, water-bottle left: no pair is complete
    metrics = compute_metrics(judge_all(gold_generations(samples), samples), samples)
    assert metrics["pair_accuracy"] is None and metrics["set_accuracy"] is None
    assert (metrics["n_pairs"], metrics["n_sets"]) == (0, 0)
    assert metrics["pair_accuracy_paper"] == 0.0 and metrics["set_accuracy_paper"] == 0.0


def original_pair_set(all_samples, subset_indices, correct_by_index, variant):
    """The original formula of the original code: an eval_dict over the FULL dataset with
    every slot 0, filled in for the evaluated subset, then pair_correct/(n/2) and set_correct/(n/4)."""
    slots = ("left", "right", "on", "under") if variant == "A" else ("left", "right", "in-front", "behind")
    eval_dict = {sample.group: dict.fromkeys(slots, 0) for sample in all_samples}
    for i in subset_indices:
        eval_dict[all_samples[i].group][all_samples[i].relation] = int(correct_by_index[i])
    pair_correct = set_correct = 0
    for slot_values in eval_dict.values():
        pair_correct += slot_values["left"] and slot_values["right"]
        pair_correct += slot_values[slots[2]] and slot_values[slots[3]]
        set_correct += all(slot_values.values())
    n = len(subset_indices)
    return pair_correct / (n / 2), set_correct / (n / 4)


@pytest.mark.parametrize("variant", ["A", "B"])
def test_paper_formula_matches_the_original_on_every_subset(variant):
    all_samples = controlled(variant)
    rng = random.Random(0)
    for size in range(1, 9):
        for subset in itertools.combinations(range(8), size):
            correct_by_index = [rng.random() < 0.8 for _ in all_samples]
            samples = [all_samples[i] for i in subset]
            generations = [s.answer if correct_by_index[i] else "I do not know" for i, s in zip(subset, samples)]
            metrics = compute_metrics(judge_all(generations, samples), samples)
            expected = original_pair_set(all_samples, subset, correct_by_index, variant)
            assert (metrics["pair_accuracy_paper"], metrics["set_accuracy_paper"]) == pytest.approx(expected)


def test_vsr_yes_to_everything():
    samples = vsr_samples()
    for mode in ("strict", "paper"):
        metrics = compute_metrics(judge_all(["Yes"] * 6, samples, mode), samples)
        assert (metrics["tp"], metrics["tn"], metrics["fp"], metrics["fn"]) == (3, 0, 3, 0)
        assert metrics["accuracy"] == 0.5
        assert metrics["precision"] == 0.5 and metrics["recall"] == 1.0
        assert metrics["f1"] == pytest.approx(2 / 3)
        assert (metrics["tpr"], metrics["tnr"]) == (1.0, 0.0)
        assert metrics["f1_paper"] == 0.0
        assert "pair_accuracy" not in metrics


def test_vsr_lower_case_yes_counts_wrong_only_in_paper_mode():
    samples = vsr_samples()
    paper = compute_metrics(judge_all(["yes"] * 6, samples, "paper"), samples)
    assert (paper["tp"], paper["tn"], paper["fp"], paper["fn"]) == (0, 0, 3, 3)
    assert paper["accuracy"] == 0.0 and paper["f1"] == 0.0
    assert paper["f1_paper"] == 0.0  # TPR = TNR = 0: the harmonic mean's limit, not a division by zero
    assert paper["n_unparsed"] == 3  # gold-yes rows: the rule credited nothing
    strict = compute_metrics(judge_all(["yes"] * 6, samples), samples)
    assert (strict["tp"], strict["fp"]) == (3, 3)


def test_vsr_unparsed_is_fn_for_yes_and_fp_for_no():
    samples = vsr_samples()
    generations = ["Not sure", "Not sure", "Yes.", "No.", "No, it is not.", "Yes"]
    metrics = compute_metrics(judge_all(generations, samples), samples)
    # labels 1,0,1,1,0,0 → FN(unparsed), FP(unparsed), TP, FN, TN, FP
    assert (metrics["tp"], metrics["tn"], metrics["fp"], metrics["fn"]) == (1, 1, 2, 2)
    assert metrics["n_unparsed"] == 2
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(2 / 6)
    assert metrics["f1_paper"] == pytest.approx(1 / 3)  # TPR = TNR = 1/3
    assert metrics["confusion"] == {"yes": {"unparsed": 1, "yes": 1, "no": 1}, "no": {"unparsed": 1, "no": 1,
                                                                                      "yes": 1}}
    assert metrics["per_relation"]["under"] == {"accuracy": 0.0, "n": 1}
    assert metrics["per_relation"]["on top of"] == {"accuracy": 1.0, "n": 1}


def test_vsr_zero_denominators_are_none():
    positives = [s for s in vsr_samples() if s.label == 1]
    only_yes = compute_metrics(judge_all(["Yes"] * 3, positives), positives)
    assert only_yes["tnr"] is None and only_yes["f1_paper"] is None
    assert only_yes["precision"] == 1.0 and only_yes["f1"] == 1.0
    negatives = [s for s in vsr_samples() if s.label == 0]
    only_no = compute_metrics(judge_all(["No"] * 3, negatives), negatives)
    assert only_no["precision"] is None and only_no["recall"] is None and only_no["tpr"] is None
    assert only_no["f1"] is None and only_no["f1_paper"] is None
    assert only_no["tnr"] == 1.0 and only_no["accuracy"] == 1.0


def test_empty_input_gives_none_rates():
    metrics = compute_metrics([], [])
    assert metrics["accuracy"] is None and metrics["n"] == 0 and metrics["per_relation"] == {}
    assert "pair_accuracy" not in metrics and "tp" not in metrics


def test_explicit_flags_override_inference():
    samples = controlled("A")
    judgements = judge_all(gold_generations(samples), samples)
    assert "pair_accuracy" not in compute_metrics(judgements, samples, has_groups=False)
    ungrouped = [Sample(id="coco-0", index=0, image_path=Path("x.jpg"), question="Where?",
                        options=("left", "right", "top", "bottom"), answer="top", relation="top")]
    inferred = compute_metrics([judge("Top", ungrouped[0])], ungrouped)
    assert "pair_accuracy" not in inferred and "tp" not in inferred
    with pytest.raises(ValueError, match="no group"):
        compute_metrics([judge("Top", ungrouped[0])], ungrouped, has_groups=True)


def test_bad_inputs_raise():
    samples = controlled("A")
    with pytest.raises(ValueError, match="one per sample"):
        compute_metrics(judge_all(["Left"], samples), samples)
    with pytest.raises(ValueError, match="two samples in slot"):
        compute_metrics(judge_all(["Under", "Under"], samples[:1] * 2), samples[:1] * 2)
    mixed = [samples[0], replace(controlled("B")[2], group=samples[0].group)]  # A's under + B's in-front
    with pytest.raises(ValueError, match="mixes"):
        compute_metrics(judge_all(["Under", "Front"], mixed), mixed)
    not_a_slot = [replace(samples[0], relation="top")]
    with pytest.raises(ValueError, match="no pair/set slot"):
        compute_metrics(judge_all(["Under"], not_a_slot), not_a_slot)
    with pytest.raises(ValueError, match="unknown task"):
        compute_metrics([], [], task="ranking")


def test_metrics_are_json_serialisable():
    for samples in (controlled("A"), vsr_samples()):
        metrics = compute_metrics(judge_all(["Left"] * len(samples), samples), samples)
        assert json.loads(json.dumps(metrics)) == metrics
