"""Turning parsed WhatsUp rows (`Item`) into `Sample`s: options, question text and gold answer.

Option counts (`option`):
- the paper's ("four" for Controlled/COCO, "six" for VG): the fixed option list of the subset;
- "two": the two relations of the data row, in the subset's canonical option order (never "correct
  first", which would reward a position bias). COCO/VG: the relations of the correct and the wrong
  caption. Controlled (four captions per row): the correct relation and its inverse (left/right,
  on/under, front/behind), i.e. the WhatsUp "pair" the row belongs to.

Prompt variants (`prompt_variant`): "default", or "reversed" (paper Fig. 28): the objects swap places
in the question ("Where is the {obj2} in relation to the {obj1}?") and the gold answer is the inverse
relation; `relation` and `group` stay those of the image so per-relation and pair/set metrics still
group by the scene.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from dataset_zoo.catalog import DatasetSpec
from dataset_zoo.prompts import OptionSet, PaperPromptRow, PromptTemplates
from dataset_zoo.relations import INVERSE

logger = logging.getLogger(__name__)
PROMPT_VARIANTS = ("default", "reversed")


@dataclass(frozen=True)
class Item:
    """A parsed annotation row, before any prompt decision.

    objects: the object names as they appear in questions (one or two); answer: the option word of the
    correct relation; relation: the original label; two_options: (correct, distractor) option words;
    where: "file row i", for error messages.
    """

    index: int
    id: str
    image_path: Path
    objects: tuple[str, ...]
    answer: str
    relation: str
    two_options: tuple[str, str]
    where: str
    group: Optional[tuple[str, str]] = None


def template_name(spec: DatasetSpec, prompt_variant: str) -> str:
    if prompt_variant not in PROMPT_VARIANTS:
        raise ToolkitError(f"unknown prompt variant {prompt_variant!r}; valid: {', '.join(PROMPT_VARIANTS)}")
    if spec.objects == 1:
        if prompt_variant == "reversed":
            raise ToolkitError(f"prompt_variant='reversed' swaps two objects, but {spec.name} questions have one "
                               f"object; use it with Controlled_*, COCO_QA_two_obj or VG_QA_two_obj")
        return "one_obj"
    return "two_obj_reversed" if prompt_variant == "reversed" else "two_obj"


def ordered_two_options(templates: PromptTemplates, full: OptionSet, pair: tuple[str, str]) -> OptionSet:
    """The two-option set of `pair`, in the subset's canonical option order (never "correct first")."""
    order = {word: i for i, word in enumerate(full.words)}
    first, second = sorted(pair, key=lambda w: order.get(w, len(order)))
    return templates.two_options(first, second)


def _options(item: Item, full: OptionSet, option: str, templates: PromptTemplates) -> OptionSet:
    return ordered_two_options(templates, full, item.two_options) if option == "two" else full


def _gold(item: Item, prompt_variant: str) -> str:
    return INVERSE[item.answer] if prompt_variant == "reversed" else item.answer


def _require_option(answer: str, options: OptionSet, where: str) -> None:
    if answer not in options.words:
        raise ToolkitError(f"{where}: gold answer {answer!r} is not one of the options "
                           f"({', '.join(options.words)}); fix the row or choose another option count")


def build_samples(items: Sequence[Item], spec: DatasetSpec, templates: PromptTemplates, option: str,
                  prompt_variant: str = "default",
                  paper_rows: Optional[Sequence[PaperPromptRow]] = None) -> list[Sample]:
    """One Sample per item; with `paper_rows` (aligned by position) question and answer come verbatim."""
    template = template_name(spec, prompt_variant)
    if paper_rows is not None and prompt_variant != "default":
        raise ToolkitError("the original prompt files hold the default object order only; drop "
                           "prompt_variant='reversed' or drop prompt_dir / --prompt-dir")
    full = templates.option_set(spec.option_set, spec.paper_option)
    samples = []
    disagreements = 0
    for i, item in enumerate(items):
        options = _options(item, full, option, templates)
        if paper_rows is None:
            answer = _gold(item, prompt_variant)
            _require_option(answer, options, item.where)
            fields = {f"obj{k + 1}": name for k, name in enumerate(item.objects)}
            question = templates.question(template, options=options.text, **fields)
            paper_prompt = None
        else:
            row = paper_rows[i]
            answer, question, paper_prompt = row.answer, row.question, row.prompt
            _require_option(answer, options, f"prompt file line {row.line}")
            disagreements += answer != item.answer
        samples.append(Sample(id=item.id, index=item.index, image_path=item.image_path, question=question,
                              options=options.words, answer=answer, relation=item.relation,
                              group=item.group, paper_prompt=paper_prompt))
    if disagreements:
        logger.warning("%d of %d prompt-file answers differ from the answers derived from the annotation "
                       "file of %s; are the prompt file and the annotation file the same version?",
                       disagreements, len(items), spec.name)
    return samples
