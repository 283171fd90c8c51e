"""The contract every benchmark loader fulfils: a `Sample` per question and a sized, indexable dataset.

Models, interventions and metrics only ever see these two types, so a new benchmark is a new loader
and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from PIL import Image

from common.errors import ToolkitError

MULTIPLE_CHOICE = "multiple_choice"
YES_NO = "yes_no"
SHORT_ANSWER = "short_answer"  # free-form answer scored against human answers (GQA, TextVQA, VQAv2)


@dataclass(frozen=True)
class Sample:
    """One question about one image.

    id: unique and stable within its dataset (the same for every split and option count), used to
        resume runs and to join result files.
    index: the row of the sample in the full annotation file (0-based).
    question: model-agnostic user text, e.g. "Where is the mug in relation to the table? Answer with
        left, right, on or under." Chat templates and image placeholders belong to the model layer.
    options: the answer words the question offers, lower case, e.g. ("left", "right", "on", "under");
        ("yes", "no") for VSR and POPE; () for short-answer questions.
    answer: the gold answer, one of `options` (short answer: the reference answer, for VQAv2 and TextVQA
        the most frequent human answer).
    relation: the relation label of the sample (Controlled file-name slot such as "left" or "in-front",
        COCO/VG label word, or the VSR relation such as "on top of"); for the general benchmarks the key of
        the per-relation breakdown (POPE subset, GQA structural type, VQAv2 answer type, TextVQA "text").
    group: (obj1, obj2) for Controlled-style data, the key of the pair/set metrics; None elsewhere.
    caption / label: the VSR caption and its 0/1 truth label; None elsewhere.
    paper_prompt: the verbatim prompt of the original `prompts/*.jsonl` row (image placeholder and
        chat wording included) when the user asked for paper-exact prompts; None otherwise.
    answers: the human answers of a short-answer question (the ten of TextVQA and VQAv2), scored with the
        VQA accuracy rule; None elsewhere (then `answer` alone is the reference). Short-answer samples
        have no `options` (empty tuple).
    subset: the part of a benchmark the sample belongs to when metrics are reported per part and
        averaged (POPE: "adversarial", "popular", "random"); None elsewhere.
    """

    id: str
    index: int
    image_path: Path
    question: str
    options: tuple[str, ...]
    answer: str
    relation: str
    group: Optional[tuple[str, str]] = None
    caption: Optional[str] = None
    label: Optional[int] = None
    paper_prompt: Optional[str] = None
    resize_to: Optional[tuple[int, int]] = field(default=None, compare=False)
    answers: Optional[tuple[str, ...]] = None
    subset: Optional[str] = None

    @property
    def image(self) -> Image.Image:
        """The image as RGB, read from disk on every access (samples stay cheap to hold)."""
        try:
            with Image.open(self.image_path) as img:
                rgb = img.convert("RGB")
        except FileNotFoundError:
            raise ToolkitError(
                f"image not found: {self.image_path} (sample {self.id}); download the images with "
                f"--download or place them at that path") from None
        except OSError as err:
            raise ToolkitError(f"cannot read image {self.image_path} (sample {self.id}): {err}; "
                               f"the file is corrupt, delete it and download it again") from None
        if self.resize_to is not None:
            rgb = rgb.resize(self.resize_to)
        return rgb


class SpatialDataset(Sequence[Sample]):
    """A named, sized, indexable list of samples.

    `task` is MULTIPLE_CHOICE (WhatsUp-style: pick one relation word), YES_NO (VSR, POPE) or SHORT_ANSWER
    (GQA, TextVQA, VQAv2: a word or phrase scored against human answers).
    `has_groups` says whether pair/set accuracy applies (Controlled A/B and their synthetic twins).
    """

    def __init__(self, name: str, samples: Sequence[Sample], task: str, has_groups: bool = False):
        self.name = name
        self.task = task
        self.has_groups = has_groups
        self._samples = list(samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return SpatialDataset(self.name, self._samples[i], self.task, self.has_groups)
        return self._samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __repr__(self) -> str:
        return f"SpatialDataset({self.name!r}, n={len(self)}, task={self.task!r})"
