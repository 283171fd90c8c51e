"""Map a free-text generation onto the options of a sample and judge it.

Two modes (`MATCH_MODES`):

* ``"strict"`` (default): the generation names exactly one option. Every option word, and every phrase of
  `SYNONYMS` that stands for an option, is searched as a whole word, case-insensitively (so "left" does not
  match inside "leftover", and "on" does not match inside "front"). A match lying inside a longer match is
  dropped ("on" inside "on top of", "front" inside "in front of", "on" inside "on the left"). The earliest
  remaining match decides. If the generation names nothing, or the earliest match stands for more than one
  option, the prediction is None ("unparsed") and counts as wrong.
* ``"paper"``: the rule of the original AdaptVis code (README, Differences from the original code).
  Multiple choice: correct iff the gold word is a case-insensitive substring of the generation, except that
  gold "on" is wrong whenever "front" occurs in the lower-cased generation. Yes/no (VSR): label 1 is correct
  iff ``'Yes' in generation`` and label 0 iff ``'No' in generation`` (case-sensitive substrings, so "yes" is
  wrong and "Not sure" counts as No). The prediction reported in paper mode is the option the rule credits:
  the gold answer when correct; otherwise the strict parse, or None when the strict parse is the gold answer
  itself (the paper rule refused to credit it, e.g. a lower-case "yes"), so that a wrong judgement never shows
  the gold answer as its prediction.

Short-answer samples (no options: GQA, TextVQA, VQAv2) are scored the VQA way in both modes (the original
code had no short-answer rule): the prediction is the normalised generation, the score its VQA accuracy
against the human answers (exact match against a single reference), see `scoring.vqa`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from scoring.vqa import normalize_answer, short_answer_score

MATCH_MODES = ("strict", "paper")
YES_NO_OPTIONS = ("yes", "no")

# Phrases that stand for an option word without being one. A phrase counts only for options it lists that
# the sample actually offers; an option word always stands for itself, so a synonym never overrides a real
# option (with options left/right/top/bottom, "top" is the option "top"; with left/right/on/under it means
# "on"). A phrase that fits two offered options is ambiguous and yields no prediction.
# Deliberately absent: a bare "on" as a synonym of "above"/"top" (too common as a preposition: "based on"),
# "back" for "behind" (noun use), and "true"/"correct" for "yes" ("not correct" would read as yes).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "in front of": ("front",),
    "in front": ("front",),
    "in back of": ("behind",),
    "at the back of": ("behind",),
    "on top of": ("on", "top", "above"),
    "on top": ("on", "top", "above"),
    "on the top": ("on", "top", "above"),
    "top": ("on", "above"),
    "above": ("on", "top"),
    "over": ("on", "top", "above"),
    "under": ("below", "bottom"),
    "underneath": ("under", "below", "bottom"),
    "beneath": ("under", "below", "bottom"),
    "below": ("under", "bottom"),
    "bottom": ("under", "below"),
    "on the bottom": ("under", "bottom", "below"),
    # "on the left" must win over the option "on" that starts it (Controlled A offers both).
    "on the left": ("left",),
    "on the right": ("right",),
}

_WORD_CHAR = r"[^\W_]"  # a letter or digit: "left-hand" still names "left", "leftover" does not


@dataclass(frozen=True)
class Judgement:
    """The verdict on one generation: the option it maps to (None = unparsed) and whether it is correct.

    Short answers also carry `score`, the VQA accuracy in [0, 1] (0.3 per matching human up to 1.0), and
    `correct` means full credit (at least three humans gave the answer, or it equals the single reference).
    """

    prediction: Optional[str]
    correct: bool
    score: Optional[float] = None

    @property
    def credit(self) -> float:
        """What the sample adds to the accuracy: the score when there is one, else 1 or 0."""
        return self.score if self.score is not None else float(self.correct)


def judge(generation: str, sample: Sample, mode: str = "strict") -> Judgement:
    """Judge `generation` against `sample.answer` under `mode` ("strict" or "paper", see module docstring)."""
    if mode not in MATCH_MODES:
        raise ToolkitError(f"unknown match mode {mode!r}; valid modes: {', '.join(MATCH_MODES)}")
    if is_short_answer(sample):
        return _judge_short_answer(generation, sample)
    if mode == "strict":
        prediction = parse_option(generation, sample.options)
        return Judgement(prediction, prediction == sample.answer)
    return _judge_paper(generation, sample)


def _judge_short_answer(generation: str, sample: Sample) -> Judgement:
    prediction = normalize_answer(generation) or None  # nothing left after normalising counts as unparsed
    score, full_credit = short_answer_score(prediction, sample)
    return Judgement(prediction, full_credit, score)


def parse_option(generation: str, options: tuple[str, ...]) -> Optional[str]:
    """The option the generation names first (strict rule), or None if it names none or is ambiguous."""
    matches = [(start, end, frozenset(named))
               for pattern, named in _phrase_patterns(tuple(options))
               for start, end in _spans(pattern, generation)]
    matches = _drop_nested(matches)
    if not matches:
        return None
    first_start = min(start for start, _, _ in matches)
    named = frozenset().union(*(named for start, _, named in matches if start == first_start))
    return next(iter(named)) if len(named) == 1 else None


def _judge_paper(generation: str, sample: Sample) -> Judgement:
    correct = _paper_yes_no_correct(generation, sample) if is_yes_no(sample) \
        else _paper_choice_correct(generation, sample.answer)
    if correct:
        return Judgement(sample.answer, True)
    parsed = parse_option(generation, sample.options)
    return Judgement(None if parsed == sample.answer else parsed, False)


def _paper_choice_correct(generation: str, gold: str) -> bool:
    # The original's only exception: "front" contains "on" as a substring.
    if gold.lower() == "on" and "front" in generation.strip().lower():
        return False
    return gold.lower() in generation.lower()


def _paper_yes_no_correct(generation: str, sample: Sample) -> bool:
    label = sample.label if sample.label is not None else int(sample.answer == "yes")
    # Case-sensitive on purpose, as in the original: "yes" is not credited and "Not" counts as "No".
    return "Yes" in generation if label == 1 else "No" in generation


def is_yes_no(sample: Sample) -> bool:
    """Whether the sample is a yes/no (VSR-style) question rather than a multiple-choice one."""
    return tuple(sample.options) == YES_NO_OPTIONS


def is_short_answer(sample: Sample) -> bool:
    """Whether the sample asks for a free-form word or phrase (it offers no options)."""
    return not sample.options


@lru_cache(maxsize=64)
def _phrase_patterns(options: tuple[str, ...]) -> tuple[tuple[re.Pattern, tuple[str, ...]], ...]:
    """(compiled whole-word pattern, options it names) for every option word and applicable synonym."""
    named_by: dict[str, tuple[str, ...]] = {option.lower(): (option,) for option in options}
    for phrase, targets in SYNONYMS.items():
        if phrase not in named_by:
            offered = tuple(option for option in options if option.lower() in targets)
            if offered:
                named_by[phrase] = offered
    return tuple((_whole_word_pattern(phrase), named) for phrase, named in named_by.items())


def _whole_word_pattern(phrase: str) -> re.Pattern:
    # Words of a phrase may be separated by any whitespace or a hyphen ("in-front of").
    body = r"[\s\-]+".join(re.escape(word) for word in phrase.split())
    return re.compile(rf"(?<!{_WORD_CHAR}){body}(?!{_WORD_CHAR})", re.IGNORECASE)


def _spans(pattern: re.Pattern, text: str) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(text)]


def _drop_nested(matches: list[tuple[int, int, frozenset]]) -> list[tuple[int, int, frozenset]]:
    """Remove matches lying inside a strictly longer match ("on" inside "on top of")."""
    def nested(inner: tuple[int, int, frozenset]) -> bool:
        return any(start <= inner[0] and inner[1] <= end and (start, end) != inner[:2]
                   for start, end, _ in matches)
    return [match for match in matches if not nested(match)]
