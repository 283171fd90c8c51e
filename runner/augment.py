"""What a run adds to its samples: flipped copies (`--flip-test`) and boxes drawn on the images (`--visual-prompt`).

Flip test (dataset_zoo.flip, scoring.flip_consistency): every sample whose text can be mirrored is
answered twice, as is and as its horizontal mirror (id `<id>~flip`, left <-> right swapped), in the
same run folder. The run's metrics are those of the original samples, so they stay comparable with a run
without flips; results.json adds `flip_consistency` (does the answer flip with the image?) and
config.json's dataset_info counts the flipped and refused samples.

Visual prompt (dataset_zoo.visual_prompt): the sample's object boxes, from the synthetic scenes' sidecar,
a boxes JSON, COCO instance annotations or the user's detector (--box-detector MODULE:FUNCTION), drawn on
the image before the processor sees it. The box settings are result settings (part of the run folder's
identity); config.json records the source (a detector's module:function and file).
"""
from __future__ import annotations

import logging
from typing import Optional

from dataset_zoo.boxes import box_source_for, load_detector
from dataset_zoo.flip import flip_samples, is_flipped
from dataset_zoo.visual_prompt import BoxPrompt
from scoring import compute_metrics
from scoring.flip_consistency import flip_consistency
from scoring.matching import Judgement

logger = logging.getLogger(__name__)


def with_flips(dataset):
    """`dataset` followed by the mirror of every sample that can be flipped (`--flip-test`)."""
    flips, refused = flip_samples(dataset)
    if not flips:
        logger.warning("--flip-test: no sample of %s can be flipped (%d refused)", dataset.name, len(refused))
    info = {**dataset.info, "flip_test": {"flipped": len(flips), "refused": len(refused)}}
    return type(dataset)(dataset.name, list(dataset) + flips, dataset.task, dataset.has_groups, dataset.prompt_info,
                         info)


def visual_prompt(config) -> Optional[BoxPrompt]:
    """The box drawer `--visual-prompt box` asks for (None for `none`); a missing box source, or a detector
    that does not import, is an error before any model loads."""
    if config.visual_prompt == "none":
        return None
    detector = None if config.box_detector is None else load_detector(config.box_detector)
    source = box_source_for(config.dataset, root=config.data_root, boxes_json=config.boxes_json,
                            coco_annotations=config.coco_annotations, detector=detector)
    return BoxPrompt(source, colour=config.box_colour, width=config.box_width)


def metrics_from_records(dataset, by_id: dict[str, dict]) -> dict:
    """The data layer's metrics of the original samples, from the verdicts stored in samples.jsonl; with
    flipped copies present, their flip consistency too."""
    originals = [s for s in dataset if not is_flipped(s)]
    judgements = [Judgement(by_id[s.id]["prediction"], bool(by_id[s.id]["correct"]), by_id[s.id].get("score"))
                  for s in originals]
    metrics = compute_metrics(judgements, originals, has_groups=dataset.has_groups, task=dataset.task)
    if len(originals) < len(dataset):
        metrics["flip_consistency"] = flip_consistency(by_id[s.id] for s in dataset)
    return metrics
