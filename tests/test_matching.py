"""Answer matching: the strict option parser and the paper's substring rule, on hand-picked generations."""
from pathlib import Path

import pytest

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from scoring import MATCH_MODES, Judgement, judge, parse_option

OPTIONS_A = ("left", "right", "on", "under")
OPTIONS_B = ("left", "right", "front", "behind")
OPTIONS_COCO_ONE = ("left", "right", "top", "bottom")
OPTIONS_COCO_TWO = ("left", "right", "above", "below")


def qa_sample(answer: str, options=OPTIONS_A) -> Sample:
    return Sample(id=f"qa-{answer}", index=0, image_path=Path("unused.jpeg"), question="Where?",
                  options=options, answer=answer, relation=answer)


def vsr_sample(label: int) -> Sample:
    return Sample(id=f"vsr-{label}", index=0, image_path=Path("unused.jpg"), question="Yes or no?",
                  options=("yes", "no"), answer="yes" if label else "no", relation="on top of",
                  caption="The cup is on top of the book.", label=label)


@pytest.mark.parametrize("generation, options, expected", [
    ("Left", OPTIONS_A, "left"),
    ("under", OPTIONS_A, "under"),
    ("in front of", OPTIONS_B, "front"),
    ("The mug is in front of the cup.", OPTIONS_B, "front"),
    ("Front.", OPTIONS_B, "front"),
    ("front", OPTIONS_B, "front"),
    ("In-front", OPTIONS_B, "front"),
    ("On top of the table", OPTIONS_A, "on"),
    ("on top", OPTIONS_A, "on"),
    ("Top", OPTIONS_A, "on"),
    ("Above", OPTIONS_A, "on"),
    ("below the chair", OPTIONS_A, "under"),
    ("on top of the table", OPTIONS_COCO_ONE, "top"),
    ("Above", OPTIONS_COCO_ONE, "top"),
    ("on top of the table", OPTIONS_COCO_TWO, "above"),
    ("Under", OPTIONS_COCO_TWO, "below"),
    ("It is on the left side of the chair.", OPTIONS_A, "left"),
    ("LEFT", OPTIONS_B, "left"),
    ("It is on the right-hand side.", OPTIONS_A, "right"),
])
def test_strict_maps_phrasings_to_one_option(generation, options, expected):
    assert parse_option(generation, options) == expected


@pytest.mark.parametrize("generation, options", [
    ("in front of the table", OPTIONS_A),  # "on" inside "front" is not a word
    ("Leftover pizza", OPTIONS_A),  # "left" inside "leftover" is not a word
    ("", OPTIONS_A),
    ("   ", OPTIONS_B),
    ("I cannot tell.", OPTIONS_A),
    ("On top of the table", OPTIONS_B),  # no option of B means "on"
    ("Not sure", ("yes", "no")),  # "no" inside "Not" is not a word
])
def test_strict_leaves_non_answers_unparsed(generation, options):
    assert parse_option(generation, options) is None


def test_strict_takes_the_first_of_two_named_options():
    assert parse_option("Under the table, not on it.", OPTIONS_A) == "under"
    assert parse_option("left or right", OPTIONS_A) == "left"
    assert parse_option("Behind it, not in front of it.", OPTIONS_B) == "behind"


def test_strict_phrase_standing_for_two_offered_options_is_ambiguous():
    # "on top of" can mean "on" or "top"; with both offered the first match names two options at once.
    assert parse_option("on top of the box", ("on", "top")) is None
    # An option word names only itself, even where it is also a synonym of another option.
    assert parse_option("top", ("on", "top")) == "top"


@pytest.mark.parametrize("generation, expected", [
    ("Yes.", "yes"), ("yes", "yes"), ("YES", "yes"), ("No, it is not", "no"), ("no.", "no"),
    ("Yes, the cup is on top of the book.", "yes"),
])
def test_strict_yes_no(generation, expected):
    assert parse_option(generation, ("yes", "no")) == expected


def test_judge_strict_correctness_and_unparsed_is_wrong():
    assert judge("Under.", qa_sample("under")) == Judgement("under", True)
    assert judge("On", qa_sample("under")) == Judgement("on", False)
    assert judge("", qa_sample("under")) == Judgement(None, False)
    assert judge("in front of", qa_sample("on")) == Judgement(None, False)
    assert judge("in front of", qa_sample("front", OPTIONS_B)) == Judgement("front", True)


def test_paper_mode_is_a_case_insensitive_substring_test():
    assert judge("LEFT", qa_sample("left"), "paper") == Judgement("left", True)
    # The original credits the gold word anywhere, even inside another word or next to another option.
    assert judge("Leftover", qa_sample("left"), "paper") == Judgement("left", True)
    assert judge("Right, or maybe left", qa_sample("left"), "paper") == Judgement("left", True)
    assert judge("Right", qa_sample("left"), "paper") == Judgement("right", False)
    assert judge("nowhere", qa_sample("left"), "paper") == Judgement(None, False)


def test_paper_mode_on_versus_front_exception():
    assert judge("in front of", qa_sample("on"), "paper").correct is False
    assert judge("On top of the table", qa_sample("on"), "paper") == Judgement("on", True)
    # "front" anywhere vetoes gold "on", even when "on" is named; the strict parse (on = gold) is then withheld.
    assert judge("On the table, in front", qa_sample("on"), "paper") == Judgement(None, False)
    # Other gold words have no such exception: "under" in a generation mentioning front is credited.
    assert judge("under, not front", qa_sample("under"), "paper").correct is True


def test_paper_mode_yes_no_is_case_sensitive():
    assert judge("Yes.", vsr_sample(1), "paper") == Judgement("yes", True)
    assert judge("yes", vsr_sample(1), "paper") == Judgement(None, False)  # the rule refused to credit it
    assert judge("YES", vsr_sample(1), "paper").correct is False
    assert judge("No, it is not", vsr_sample(0), "paper") == Judgement("no", True)
    assert judge("Not sure", vsr_sample(0), "paper") == Judgement("no", True)  # 'No' in 'Not', as the original
    assert judge("Not sure", vsr_sample(1), "paper") == Judgement(None, False)
    assert judge("Yes", vsr_sample(0), "paper") == Judgement("yes", False)
    assert judge("", vsr_sample(1), "paper") == Judgement(None, False)


def test_strict_and_paper_disagree_where_documented():
    assert judge("Not sure", vsr_sample(0)).correct is False
    assert judge("yes", vsr_sample(1)).correct is True


def test_unknown_mode_names_the_valid_modes():
    assert MATCH_MODES == ("strict", "paper")
    with pytest.raises(ToolkitError, match="strict, paper"):
        judge("left", qa_sample("left"), mode="fuzzy")
