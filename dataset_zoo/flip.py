"""Horizontal-flip hard negatives (ALBEF-style): mirror the image and swap left <-> right in the text.

    from dataset_zoo.flip import flip_sample, flip_samples
    flipped = flip_sample(sample)            # a FlippedSample, or None when the text cannot be flipped safely
    flipped.image                            # the mirrored image (read from disk like any Sample)
    flips, refused = flip_samples(dataset)   # every flippable sample once; `refused` lists the others

What changes under a horizontal mirror, and why:
* Only left and right swap. On/under, above/below, top/bottom, front/behind, contains, facing, ... are
  unchanged by a mirror, so those samples keep their answer and are still valid (and useful) augmented
  copies. Both frames of reference swap: a viewer's left becomes their right, and an object's own left
  side becomes its right side in the mirrored picture (a mirror reverses handedness).
* WhatsUp-style questions: the gold answer and the relation label swap; the option words swap as well,
  which for the toolkit's option sets (both left and right offered, or neither) leaves the option set and
  therefore the question text unchanged. A question offering only one of left/right would need its text
  rewritten; such samples are refused rather than guessed at.
* VSR captions: "left"/"right" are rewritten only inside the relation phrases "left of", "right of" and
  "left side of"/"right side of" (which covers "to the left of", "at the right side of", "on the left side
  of"). A caption with any other "left"/"right" ("right next to", "the left dog", "on the right.") is
  ambiguous (intensifier, adjective or an unanchored direction) and the sample is refused. The truth label
  stays: the mirrored picture with the mirrored caption is true exactly when the original was.

Flipped samples get the id `<id>~flip` (FLIP_SUFFIX), so they can sit next to the originals in one run
folder; `FlippedSample.source_id` is the original id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Optional

from PIL import Image, ImageOps

from dataset_zoo.base import Sample

FLIP_SUFFIX = "~flip"
_SWAP = {"left": "right", "right": "left"}
_SIDE_WORD = re.compile(r"\b(left|right)\b", re.IGNORECASE)
# "left"/"right" directly followed by "of" or "side of": a relation phrase that a mirror swaps.
_RELATION_USE = re.compile(r"\b(left|right)(?=\s+(?:side\s+)?of\b)", re.IGNORECASE)


@dataclass(frozen=True)
class FlippedSample(Sample):
    """A sample whose image is the horizontal mirror of the original's (same file on disk)."""

    source_id: str = ""

    @property
    def image(self) -> Image.Image:
        return ImageOps.mirror(super().image)


def is_flipped(sample: Sample) -> bool:
    return isinstance(sample, FlippedSample)


def original_id(sample: Sample) -> str:
    """The id of the unflipped sample (the sample's own id when it is not a flip)."""
    return sample.source_id if isinstance(sample, FlippedSample) else sample.id


def flip_word(word: Optional[str]) -> Optional[str]:
    """left <-> right; any other answer word (or None, an unparsed answer) is unchanged by a mirror."""
    return _SWAP.get(word, word) if word is not None else None


def _swap_case_kept(match: re.Match) -> str:
    word = match.group(0)
    swapped = _SWAP[word.lower()]
    return swapped.capitalize() if word[0].isupper() else swapped


def swap_sides(text: str) -> str:
    """Every whole word "left"/"right" in `text` swapped, capitalisation kept."""
    return _SIDE_WORD.sub(_swap_case_kept, text)


def flip_caption(caption: str) -> Optional[str]:
    """The caption describing the mirrored image, or None when a "left"/"right" in it is not part of a
    relation phrase ("left of", "right side of", ...) and so cannot be flipped unambiguously."""
    if len(_SIDE_WORD.findall(caption)) != len(_RELATION_USE.findall(caption)):
        return None
    return swap_sides(caption)


def _flip_yes_no(sample: Sample) -> Optional[Sample]:
    caption = flip_caption(sample.caption)
    if caption is None or sample.caption not in sample.question:
        return None
    paper_prompt = None if sample.paper_prompt is None else sample.paper_prompt.replace(sample.caption, caption)
    return replace(sample, question=sample.question.replace(sample.caption, caption), caption=caption,
                   paper_prompt=paper_prompt, relation=swap_sides(sample.relation))


def _flip_choice(sample: Sample) -> Optional[Sample]:
    options = tuple(flip_word(option) for option in sample.options)
    if set(options) != set(sample.options):
        return None
    return replace(sample, answer=flip_word(sample.answer), relation=swap_sides(sample.relation))


def flip_sample(sample: Sample) -> Optional[FlippedSample]:
    """The mirrored counterpart of `sample` (see the module docstring), or None if it is refused."""
    if isinstance(sample, FlippedSample):
        raise ValueError(f"sample {sample.id} is already a flip")
    flipped = _flip_yes_no(sample) if sample.caption is not None else _flip_choice(sample)
    if flipped is None:
        return None
    fields = {name: getattr(flipped, name) for name in flipped.__dataclass_fields__}
    return FlippedSample(**{**fields, "id": sample.id + FLIP_SUFFIX, "source_id": sample.id})


def flip_samples(samples: Iterable[Sample]) -> tuple[list[FlippedSample], list[Sample]]:
    """(the flips of every flippable sample, in order; the samples refused)."""
    flips, refused = [], []
    for sample in samples:
        flipped = flip_sample(sample)
        if flipped is None:
            refused.append(sample)
        else:
            flips.append(flipped)
    return flips, refused
