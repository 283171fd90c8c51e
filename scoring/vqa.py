"""Short-answer scoring as the VQA field does it: the official answer normalisation and VQA accuracy.

Re-implemented from the behaviour of the official VQA evaluation (Antol et al. 2015; the GT-Vision-Lab
`vqaEval.py`, which the EvalAI challenge server and lmms-eval's VQAv2/TextVQA tasks follow):

* `normalize_answer`: newlines and tabs become spaces; punctuation in `PUNCTUATION` is deleted when it
  touches a space or when the text holds a digit-comma-digit group ("1,000"), and becomes a space otherwise
  ("t-shirt" -> "t shirt"); a period is deleted unless a digit follows ("3.5" keeps it); then, word by word
  in lower case, number words become digits ("two" -> "2", "none" -> "0"), the articles a/an/the are
  dropped, and contractions written without their apostrophes get them back ("dont" -> "don't").
* `vqa_accuracy`: with n human answers, the mean over the n leave-one-out subsets of
  min(#matches in the other n-1 answers / 3, 1). With ten answers, 1/2/3/4+ matching humans give
  0.3/0.6/0.9/1.0.

Deliberate difference: the official script normalises the human answers (and the prediction) only when
the humans disagree; here both are always normalised. The results are identical whenever the human answers
are already in normal form (as the VQA annotations are), and the prediction is always normalised, as the
EvalAI server and lmms-eval do.
"""
from __future__ import annotations

import itertools
import re
from typing import Optional, Sequence

from dataset_zoo.base import Sample

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
FULL_CREDIT_MATCHES = 3  # "100 % accurate if at least 3 humans gave that exact answer" (Antol et al. 2015)

# The contractions the official table restores. Forms whose apostrophe-free spelling is an ordinary word
# (we'll -> "well", it's -> "its", she'll -> "shell", we're -> "were", ...) are not in it, and its
# I-forms ("Im", "Ive") are keyed with a capital I, so they never fire on lower-cased words: both omitted.
CONTRACTIONS = (
    "ain't", "aren't", "can't", "could've", "couldn't", "couldn't've", "didn't", "doesn't", "don't", "hadn't",
    "hadn't've", "hasn't", "haven't", "he'd", "he'd've", "he's", "how'd", "how'll", "how's", "isn't", "it'd",
    "it'd've", "it'll", "let's", "ma'am", "mightn't", "mightn't've", "might've", "mustn't", "must've",
    "needn't", "not've", "o'clock", "oughtn't", "'ow's'at", "shan't", "she'd've", "she's", "should've",
    "shouldn't", "shouldn't've", "somebody'd", "somebody'd've", "somebody'll", "somebody's", "someone'd",
    "someone'd've", "someone'll", "someone's", "something'd", "something'd've", "something'll", "that's",
    "there'd", "there'd've", "there're", "there's", "they'd", "they'd've", "they'll", "they're", "they've",
    "'twas", "wasn't", "we'd've", "we've", "weren't", "what'll", "what're", "what's", "what've", "when's",
    "where'd", "where's", "where've", "who'd", "who'd've", "who'll", "who's", "who've", "why'll", "why're",
    "why's", "won't", "would've", "wouldn't", "wouldn't've", "y'all", "y'all'll", "y'all'd've", "you'd",
    "you'd've", "you'll", "you're", "you've",
)

_COMMA_BETWEEN_DIGITS = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _misspellings(form: str) -> list[str]:
    """The spellings of `form` with one or more of its apostrophes left out ("couldn't've" -> "couldntve",
    "couldn'tve", "couldnt've"), each of which the table maps back to `form`."""
    pieces = form.split("'")
    return [pieces[0] + "".join(mark + piece for mark, piece in zip(marks, pieces[1:]))
            for marks in itertools.product(("'", ""), repeat=len(pieces) - 1) if not all(marks)]


CONTRACTION_FIXES = {spelling: form for form in CONTRACTIONS for spelling in _misspellings(form)}


def _strip_punctuation(text: str) -> str:
    delete_all = bool(_COMMA_BETWEEN_DIGITS.search(text))
    out = text
    for mark in PUNCTUATION:
        # The official rule looks at the original text for each mark, not at the partly cleaned one.
        touches_space = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if touches_space or delete_all else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _words_to_canonical(text: str) -> str:
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTION_FIXES.get(word, word) for word in words if word not in ARTICLES)


def normalize_answer(text: str) -> str:
    """The official VQA normal form of an answer, e.g. "Two dogs!" -> "2 dogs", "a dog" -> "dog"."""
    return _words_to_canonical(_strip_punctuation(text.replace("\n", " ").replace("\t", " ").strip()))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over the leave-one-out subsets of min(#matching other answers / 3, 1); inputs normalised."""
    matches = sum(answer == prediction for answer in answers)
    # Leaving out a matching answer leaves matches - 1 matches; leaving out another one leaves matches.
    credits = [min((matches - (answer == prediction)) / FULL_CREDIT_MATCHES, 1.0) for answer in answers]
    return sum(credits) / len(credits)


def short_answer_score(prediction: Optional[str], sample: Sample) -> tuple[float, bool]:
    """(score, full credit) of a normalised prediction: VQA accuracy against several human answers
    (full credit: at least three of them match), exact match against a single reference (GQA)."""
    if prediction is None:
        return 0.0, False
    references = [normalize_answer(answer) for answer in (sample.answers or (sample.answer,))]
    if len(references) == 1:
        exact = prediction == references[0]
        return float(exact), exact
    score = vqa_accuracy(prediction, references)
    return score, sum(reference == prediction for reference in references) >= FULL_CREDIT_MATCHES
