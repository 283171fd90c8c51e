"""VQA answer normalisation and accuracy, GQA exact match and POPE metrics on hand-computed cases."""
from pathlib import Path

import pytest

from dataset_zoo.base import SHORT_ANSWER, YES_NO, Sample
from scoring import compute_metrics, judge
from scoring.vqa import CONTRACTION_FIXES, normalize_answer, vqa_accuracy


def short(answers=None, answer="dog", relation="other", subset=None) -> Sample:
    return Sample(id="q", index=0, image_path=Path("unused.jpg"), question="What?", options=(), answer=answer,
                  relation=relation, answers=None if answers is None else tuple(answers), subset=subset)


def pope(i: int, gold: str, subset: str) -> Sample:
    return Sample(id=f"{subset}-{i}", index=i, image_path=Path("unused.jpg"), question="Is there a dog?",
                  options=("yes", "no"), answer=gold, relation=subset, subset=subset)


# ------------------------------------------------------------------ normalisation

@pytest.mark.parametrize("raw, normal", [
    ("two", "2"), ("Two", "2"), ("none", "0"), ("ten", "10"),                 # number words
    ("a dog", "dog"), ("The dog", "dog"), ("an apple", "apple"),              # articles
    ("dog.", "dog"), ("3.5", "3.5"), ("Yes!", "yes"), ("t-shirt", "t shirt"),  # punctuation
    ("red, white", "red white"), ("1,000", "1000"), ("(left)", "left"),
    ("dont", "don't"), ("isnt", "isn't"), ("couldnt've", "couldn't've"),      # contractions
    ("well", "well"), ("its", "its"),                                          # words, not contractions
    ("  two\tdogs\n", "2 dogs"),
])
def test_normalisation_examples(raw, normal):
    assert normalize_answer(raw) == normal


def test_contraction_table_restores_every_apostrophe_free_spelling():
    assert CONTRACTION_FIXES["youre"] == "you're" and CONTRACTION_FIXES["yalldve"] == "y'all'd've"
    assert CONTRACTION_FIXES["wouldn'tve"] == CONTRACTION_FIXES["wouldnt've"] == "wouldn't've"
    assert all("'" in fixed for fixed in CONTRACTION_FIXES.values())


# ------------------------------------------------------------------ VQA accuracy

@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_averages_the_ten_leave_one_out_subsets(matches, expected):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_accuracy("2", answers) == pytest.approx(expected)


def test_official_examples_through_judge():
    assert judge("Two", short(["2", "2"] + ["3"] * 8)).score == pytest.approx(0.6)        # "two" vs "2"
    assert judge("A dog.", short(["dog"] * 3 + ["cat"] * 7)).score == pytest.approx(0.9)  # "a dog" vs "dog"
    one = judge("cat", short(["dog"] * 9 + ["cat"]))
    assert one.score == pytest.approx(0.3) and one.prediction == "cat" and not one.correct


def test_full_credit_means_three_humans_and_paper_mode_scores_the_same_way():
    three = judge("dog", short(["dog"] * 3 + ["cat"] * 7))
    two = judge("dog", short(["dog"] * 2 + ["cat"] * 8))
    assert three.correct and three.score == pytest.approx(0.9) and not two.correct
    assert judge("dog", short(["dog"] * 3 + ["cat"] * 7), mode="paper") == three


def test_gqa_exact_match_after_normalisation():
    assert judge("The dog.", short(answer="dog")).score == 1.0
    assert judge("Two", short(answer="2")).correct
    wrong = judge("dogs", short(answer="dog"))
    assert wrong.score == 0.0 and not wrong.correct and wrong.prediction == "dogs"


def test_an_empty_answer_is_unparsed_and_scores_zero():
    verdict = judge(" . ", short(["dog"] * 10))
    assert verdict.prediction is None and verdict.score == 0.0 and not verdict.correct


def test_short_answer_metrics_average_the_scores():
    samples = [short(["2"] * 2 + ["3"] * 8, relation="number"), short(["yes"] * 10, relation="yes/no"),
               short(["dog"] * 4 + ["cat"] * 6, relation="other")]
    judgements = [judge(text, s) for text, s in zip(["two", "Yes", "bird"], samples)]
    metrics = compute_metrics(judgements, samples)
    assert metrics["accuracy"] == pytest.approx((0.6 + 1.0 + 0.0) / 3)
    assert (metrics["n"], metrics["n_correct"], metrics["n_unparsed"]) == (3, 1, 0)
    assert metrics["per_relation"]["number"] == {"accuracy": pytest.approx(0.6), "n": 1}
    assert "confusion" not in metrics and compute_metrics(judgements, samples, task=SHORT_ANSWER) == metrics


# ------------------------------------------------------------------ POPE

# Per subset, gold answers and the model's generations: adversarial TP 2, FN 1, FP 1, TN 0 (one FN
# unparsed); popular TP 1, FN 1, FP 0, TN 2; random all right.
POPE_CASES = {
    "adversarial": (["yes", "yes", "yes", "no"], ["Yes", "yes.", "I cannot tell", "Yes"]),
    "popular": (["yes", "yes", "no", "no"], ["Yes", "No", "No", "no"]),
    "random": (["yes", "no"], ["Yes", "No"]),
}


def pope_run():
    samples, generations = [], []
    for subset, (golds, texts) in POPE_CASES.items():
        samples += [pope(i, gold, subset) for i, gold in enumerate(golds)]
        generations += texts
    return [judge(text, s) for text, s in zip(generations, samples)], samples


def test_pope_metrics_per_subset_and_their_average():
    judgements, samples = pope_run()
    metrics = compute_metrics(judgements, samples, task=YES_NO)
    adversarial, popular, random_ = (metrics["per_subset"][s] for s in ("adversarial", "popular", "random"))
    assert (adversarial["tp"], adversarial["fn"], adversarial["fp"], adversarial["tn"]) == (2, 1, 1, 0)
    assert adversarial["accuracy"] == 0.5 and adversarial["precision"] == pytest.approx(2 / 3)
    assert adversarial["recall"] == pytest.approx(2 / 3) and adversarial["f1"] == pytest.approx(2 / 3)
    assert adversarial["yes_ratio"] == 0.75 and adversarial["n_unparsed"] == 1
    assert popular["accuracy"] == 0.75 and popular["precision"] == 1.0 and popular["recall"] == 0.5
    assert popular["f1"] == pytest.approx(2 / 3) and popular["yes_ratio"] == 0.25
    assert random_["accuracy"] == random_["f1"] == 1.0 and random_["yes_ratio"] == 0.5
    average = metrics["subset_average"]
    assert average["accuracy"] == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert average["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1.0) / 3)
    assert average["yes_ratio"] == pytest.approx((0.75 + 0.25 + 0.5) / 3)
    assert metrics["accuracy"] == pytest.approx(7 / 10) and metrics["yes_ratio"] == pytest.approx(5 / 10)


def test_one_subset_has_no_breakdown():
    judgements, samples = pope_run()
    metrics = compute_metrics(judgements[:4], samples[:4])
    assert "per_subset" not in metrics and metrics["yes_ratio"] == 0.75 and metrics["f1"] == pytest.approx(2 / 3)
