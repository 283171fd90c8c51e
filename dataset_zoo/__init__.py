"""Benchmarks as `SpatialDataset`s: `get_dataset(name, ...)` is the one entry point.

    from dataset_zoo import get_dataset, DATASET_NAMES
    ds = get_dataset("Controlled_Images_A", root="data", split="test")
    ds[0].question, ds[0].options, ds[0].answer, ds[0].image

Names: Controlled_Images_A, Controlled_Images_B, COCO_QA_one_obj, COCO_QA_two_obj, VG_QA_one_obj,
VG_QA_two_obj, VSR (zero-shot test, the paper's setting), VSR_random, VSR_zeroshot (`vsr_split`),
Synthetic_Controlled_A, Synthetic_Controlled_B (generated into the data root on first use), and the general
benchmarks POPE (option: adversarial / popular / random / all), GQA, TextVQA, VQAv2 (option: 5k / full).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from common.errors import ToolkitError
from dataset_zoo import download as _download
from dataset_zoo.base import MULTIPLE_CHOICE, YES_NO, Sample, SpatialDataset
from dataset_zoo.catalog import (CONTROLLED, DATASET_NAMES, GENERAL, VSR, DatasetSpec, get_spec, resolve_option,
                                 vsr_annotation)
from dataset_zoo.general import fetch_general, load_general
from dataset_zoo.paper_prompts import CONFIGS as PAPER_PROMPT_CONFIGS
from dataset_zoo.paper_prompts import download_paper_prompts
from dataset_zoo.prompts import GENERAL_KEYS, GENERAL_TEMPLATE_FILE, load_templates, paper_prompts_for
from dataset_zoo.questions import build_samples, template_name
from dataset_zoo.splits import resolve_split, select
from dataset_zoo.vsr import load_vsr_samples
from dataset_zoo.whatsup import load_controlled_items, load_qa_items

__all__ = ["get_dataset", "DATASET_NAMES", "LoadedDataset", "Sample", "SpatialDataset"]
logger = logging.getLogger(__name__)


class LoadedDataset(SpatialDataset):
    """A SpatialDataset that also says how it was made, for results files.

    prompt_info: where the question text came from ({"source": "template", "name", "version", "sha256",
        "template", "variant", "option", "file"} or {"source": "paper_file", "file", "sha256", ...}).
    info: dataset name, split, seed, option, rows in the full file, annotation path, VSR split/resize.
    Slicing keeps both (so `ds[:limit]` still logs its provenance).
    """

    def __init__(self, name: str, samples: Sequence[Sample], task: str, has_groups: bool,
                 prompt_info: dict, info: dict):
        super().__init__(name, samples, task, has_groups)
        self.prompt_info = prompt_info
        self.info = info

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LoadedDataset(self.name, self._samples[i], self.task, self.has_groups, self.prompt_info,
                                 self.info)
        return self._samples[i]


def _annotation_path(spec: DatasetSpec, root: Path, vsr_split: str, synthetic: Optional[dict]) -> Path:
    if spec.synthetic:
        # Imported lazily: the generator (and its drawing code) is only needed for the synthetic datasets.
        from dataset_zoo.synthetic import ensure_synthetic_controlled
        return Path(ensure_synthetic_controlled(root, spec.variant, **(synthetic or {})))
    relative = vsr_annotation(spec, vsr_split) if spec.family == VSR else spec.annotation
    path = root / relative
    if spec.name == "VSR" and vsr_split == "test" and not path.is_file() and (root / "test.jsonl").is_file():
        logger.info("using %s (the original AdaptVis location of the VSR zero-shot test file)",
                    root / "test.jsonl")
        return root / "test.jsonl"
    return path


def _multiple_choice_samples(spec: DatasetSpec, root: Path, path: Path, option: str, prompt_variant: str,
                             prompt_dir: Optional[Path], templates) -> tuple[list[Sample], dict]:
    loader = load_controlled_items if spec.family == CONTROLLED else load_qa_items
    items = loader(spec, root, path)
    if prompt_dir is None:
        prompt_info = templates.info(template_name(spec, prompt_variant), prompt_variant, option)
        return build_samples(items, spec, templates, option, prompt_variant), prompt_info
    rows, prompt_info = paper_prompts_for(prompt_dir, spec.name, option, len(items), path)
    return build_samples(items, spec, templates, option, prompt_variant, rows), prompt_info


def _fetch_text_files(spec: DatasetSpec, root: Path, vsr_split: str, option: Optional[str],
                      prompt_dir: Optional[Path | str], mirror: Optional[str]) -> None:
    """Annotation file, plus the paper's prompt file when paper-exact prompts are asked for."""
    _download.fetch_annotations(spec, root, vsr_split, mirror=mirror)
    if prompt_dir is not None and spec.name in PAPER_PROMPT_CONFIGS and option == spec.paper_option:
        download_paper_prompts(prompt_dir, spec.name, option, mirror=mirror)


def _general_dataset(spec: DatasetSpec, root: Path, split: str, option: str, seed: int, download: bool,
                     template_file: Optional[Path | str], mirror: Optional[str], check_images: bool,
                     prompt_dir: Optional[Path | str], prompt_variant: str) -> LoadedDataset:
    if prompt_dir is not None or prompt_variant != "default":
        raise ToolkitError(f"{spec.name} asks its own questions; prompt_dir / --prompt-dir and prompt_variant / "
                           f"--prompt-variant apply to the WhatsUp datasets only")
    if download:
        fetch_general(spec, root, mirror)
    templates = load_templates(template_file or GENERAL_TEMPLATE_FILE, GENERAL_KEYS)
    samples, task, source_info = load_general(spec, root, option, split, seed, templates, check_images)
    info = {"dataset": spec.name, "split": split, "seed": seed, "option": option,
            "annotation": str(root / spec.annotation), "root": str(root), **source_info}
    return LoadedDataset(spec.name, samples, task, False, templates.info("short_answer", "default", option), info)


def get_dataset(name: str, root: Path | str = "data", split: Optional[str] = None, option: Optional[str] = None,
                download: bool = False, seed: int = 1, prompt_dir: Optional[Path | str] = None, *,
                prompt_variant: str = "default", vsr_split: str = "test", vsr_paper_resize: bool = False,
                check_images: bool = True, template_file: Optional[Path | str] = None,
                download_mirror: Optional[str] = None, synthetic: Optional[dict] = None) -> LoadedDataset:
    """Load a benchmark as a sized, indexable dataset of `Sample`s.

    root: the data root (layout in docs/data.md). split: "val" | "test" | "all"; None (default) means
        "test" when the environment has TEST_MODE=True, else "all". The val/test indices are the paper's
        (`random.seed(seed); sorted(random.sample(range(N), int(0.2*N)))`, test = complement).
    option: "two" | "four" | "six"; None = the paper's count (four for Controlled/COCO, six for VG);
        ignored for VSR. For the general benchmarks the subset: POPE "adversarial" | "popular" | "random" |
        "all" (default), VQAv2 "5k" (default, a fixed sample) | "full"; GQA and TextVQA have one each.
        prompt_dir: a folder with the original `{name}_with_answer_{option}_options.jsonl` files, used
        verbatim (paper-exact mode). prompt_variant: "default" | "reversed" (objects swapped,
        inverse answer). vsr_split: "train" | "dev" | "test" for the VSR names. vsr_paper_resize: stretch VSR
        images to 2300x4096 as the original did. check_images: fail early, naming the missing files, when
        images of the selected split are absent. template_file: another prompt template file (for the
        general benchmarks one like prompt/general_qa.json).
        download / download_mirror: fetch missing files (see dataset_zoo.download); with prompt_dir also
        the paper's prompt file (from AdaptVis/all_datasets, see dataset_zoo.paper_prompts).
        synthetic: keyword arguments for `ensure_synthetic_controlled` (seed, n_pairs, size) of the
        Synthetic_* sets; the set is regenerated when they differ from the files on disk.
    """
    spec = get_spec(name)
    root = Path(root)
    split = resolve_split(split)
    option = resolve_option(spec, option)
    if spec.family == GENERAL:
        return _general_dataset(spec, root, split, option, seed, download, template_file, download_mirror,
                                check_images, prompt_dir, prompt_variant)
    if download and not spec.synthetic:
        _fetch_text_files(spec, root, vsr_split, option, prompt_dir, download_mirror)
    path = _annotation_path(spec, root, vsr_split, synthetic)
    _download.require_annotation(spec, path, vsr_split)
    templates = load_templates(template_file)
    if spec.family == VSR:
        if prompt_variant != "default":
            raise ToolkitError("VSR questions are yes/no judgements of a caption; prompt_variant applies to "
                               "the WhatsUp datasets only")
        samples = load_vsr_samples(path, root, templates, vsr_paper_resize)
        prompt_info = templates.info("vsr_yes_no", "default", None)
    else:
        samples, prompt_info = _multiple_choice_samples(spec, root, path, option, prompt_variant,
                                                        None if prompt_dir is None else Path(prompt_dir),
                                                        templates)
    selected = select(samples, split, seed)
    if download and not spec.synthetic:
        _download.fetch_images(spec, root, selected, mirror=download_mirror)
    if check_images:
        _download.require_images(spec, root, selected)
    info = {"dataset": name, "split": split, "seed": seed, "option": option, "n_total": len(samples),
            "annotation": str(path), "root": str(root)}
    if spec.family == VSR:
        info.update(vsr_split=vsr_split, vsr_paper_resize=vsr_paper_resize)
    return LoadedDataset(name, selected, YES_NO if spec.family == VSR else MULTIPLE_CHOICE,
                         spec.family == CONTROLLED, prompt_info, info)
