"""The table of datasets: one `DatasetSpec` per public name, facts only (files, option sets, label rules).

Paths are relative to the data root (default `data/`), in the layout the original code expects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.errors import ToolkitError

CONTROLLED = "controlled"
WHATSUP_QA = "whatsup_qa"
VSR = "vsr"
GENERAL = "general"  # the general-QA benchmarks of the paper's appendix (Tables 3, 4, 10), dataset_zoo/general.py

VSR_KINDS = ("random", "zeroshot")
VSR_SPLITS = ("train", "dev", "test")
CHOICE_COUNTS = ("two", "four", "six")
POPE_SUBSETS = ("adversarial", "popular", "random")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how its rows become questions.

    annotation / images: paths relative to the data root (for VSR the annotation depends on the split,
        see `vsr_annotation`).
    option_set: key of `option_sets` in prompt/templates.json; paper_option: the option count the paper
        used, also the default; "two" is available for every multiple-choice dataset.
    variant: Controlled "A"/"B"; label_rule: key of `relations.LABEL_RULES` (COCO/VG); objects: 1 or 2.
    subsets: general benchmarks only, the values `option` selects (POPE's subsets, VQAv2's fixed sample or
        full set); paper_option is then the default subset. annotation / images are the hub repository's
        folder and the folder its embedded images are extracted to.
    """

    name: str
    family: str
    annotation: str
    images: str
    option_set: Optional[str] = None
    paper_option: Optional[str] = None
    variant: Optional[str] = None
    label_rule: Optional[str] = None
    objects: int = 2
    synthetic: bool = False
    vsr_kind: Optional[str] = None
    subsets: tuple[str, ...] = ()

    @property
    def supported_options(self) -> tuple[str, ...]:
        if self.family == GENERAL:
            return self.subsets
        return () if self.paper_option is None else ("two", self.paper_option)


def _controlled(name: str, annotation: str, images: str, variant: str, synthetic: bool = False) -> DatasetSpec:
    return DatasetSpec(name, CONTROLLED, annotation, images, f"controlled_{variant.lower()}", "four",
                       variant=variant, synthetic=synthetic)


def _qa(name: str, stem: str, images: str, option_set: str, paper_option: str, rule: str,
        objects: int) -> DatasetSpec:
    return DatasetSpec(name, WHATSUP_QA, f"{stem}.json", images, option_set, paper_option,
                       label_rule=rule, objects=objects)


def _general(name: str, repo: str, subsets: tuple[str, ...], default: str) -> DatasetSpec:
    return DatasetSpec(name, GENERAL, repo, f"{repo}/images", paper_option=default, subsets=subsets)


_SPECS = (
    _controlled("Controlled_Images_A", "controlled_images_dataset.json", "controlled_images", "A"),
    _controlled("Controlled_Images_B", "controlled_clevr_dataset.json", "controlled_clevr", "B"),
    _qa("COCO_QA_one_obj", "coco_qa_one_obj", "val2017", "coco_one_obj", "four", "last_word", 1),
    _qa("COCO_QA_two_obj", "coco_qa_two_obj", "val2017", "coco_two_obj", "four", "coco_two", 2),
    _qa("VG_QA_one_obj", "vg_qa_one_obj", "vg_images", "vg_one_obj", "six", "last_word", 1),
    _qa("VG_QA_two_obj", "vg_qa_two_obj", "vg_images", "vg_two_obj", "six", "vg_two", 2),
    DatasetSpec("VSR", VSR, "vsr/zeroshot/test.jsonl", ".", vsr_kind="zeroshot"),
    DatasetSpec("VSR_random", VSR, "vsr/random/test.jsonl", ".", vsr_kind="random"),
    DatasetSpec("VSR_zeroshot", VSR, "vsr/zeroshot/test.jsonl", ".", vsr_kind="zeroshot"),
    _controlled("Synthetic_Controlled_A", "synthetic_controlled_a.json", "synthetic_controlled_a", "A", True),
    _controlled("Synthetic_Controlled_B", "synthetic_controlled_b.json", "synthetic_controlled_b", "B", True),
    _general("POPE", "lmms-lab/POPE", POPE_SUBSETS + ("all",), "all"),
    _general("GQA", "lmms-lab/GQA", ("testdev-balanced",), "testdev-balanced"),
    _general("TextVQA", "lmms-lab/textvqa", ("validation",), "validation"),
    _general("VQAv2", "lmms-lab/VQAv2", ("5k", "full"), "5k"),
)

SPECS = {spec.name: spec for spec in _SPECS}
DATASET_NAMES = tuple(SPECS)
# Every value `option` (and --option) takes: answer counts of the multiple-choice sets, general subsets.
OPTION_NAMES = tuple(dict.fromkeys(CHOICE_COUNTS + tuple(s for spec in _SPECS for s in spec.subsets)))


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ToolkitError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}") from None


def vsr_annotation(spec: DatasetSpec, vsr_split: str) -> str:
    """Relative path of a VSR split file (the VSR repository's data/splits/ layout under vsr/)."""
    if vsr_split not in VSR_SPLITS:
        raise ToolkitError(f"unknown VSR split {vsr_split!r}; valid: {', '.join(VSR_SPLITS)}")
    return f"vsr/{spec.vsr_kind}/{vsr_split}.jsonl"


def resolve_option(spec: DatasetSpec, option: Optional[str]) -> Optional[str]:
    """The option to use: the answer count (the paper's when None) or, for a general benchmark, the subset
    (its default when None); VSR ignores the option (its answers are yes/no)."""
    if option is not None and option not in OPTION_NAMES:
        raise ToolkitError(f"unknown option {option!r}; valid options: {', '.join(OPTION_NAMES)}")
    if spec.family == VSR:
        return None
    if option is None:
        return spec.paper_option
    if option not in spec.supported_options:
        default = "default" if spec.family == GENERAL else "the paper used"
        raise ToolkitError(f"option {option!r} is not available for {spec.name}; valid: "
                           f"{', '.join(spec.supported_options)} ({default} {spec.paper_option})")
    return option
