"""Training and evaluation samples for fine-tuning, through `dataset_zoo.get_dataset` (the evaluator's data).

Where each dataset's training data comes from:
* VSR_random / VSR_zeroshot (and VSR, the zero-shot files): the split's `train.jsonl`; evaluation on its
  `dev.jsonl`. The test file stays unseen.
* Synthetic_Controlled_A/B: a set rendered with `--synthetic-seed` (default 1) into
  `<data-root>/finetune_synthetic_seed<seed>/`, so it never overwrites or equals the seed-0 scenes that
  `main_aro.py` evaluates on; `--eval-fraction` of its (object, anchor) groups is held out for evaluation.
* WhatsUp sets (Controlled A/B, COCO/VG QA): the paper split `--split` (default val, the 20 % the paper uses
  for hyper-parameter selection), with `--eval-fraction` of it held out; report results on `--split test`.
Hold-outs are by group (the four relations of one Controlled object pair stay together, so the evaluation
never sees a scene pair whose partner was trained on) and drawn with `--seed`.

`--flip` adds the horizontal flip of every training sample whose text can be flipped (`dataset_zoo.flip`):
the data doubles, up to the VSR captions that are refused. Evaluation data is never flipped.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from dataset_zoo import get_dataset
from dataset_zoo.base import Sample
from dataset_zoo.catalog import VSR, get_spec
from dataset_zoo.flip import flip_samples
from training.config import FinetuneConfig

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    train: list[Sample]
    eval: list[Sample]
    info: dict = field(default_factory=dict)


def synthetic_training_root(config: FinetuneConfig) -> Path:
    return Path(config.data_root) / f"finetune_synthetic_seed{config.synthetic_seed}"


def hold_out(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(kept, held out): a `fraction` of the groups (a sample without a group is its own group)."""
    keys = list(dict.fromkeys(sample.group or sample.id for sample in samples))
    random.Random(f"finetune-holdout-{seed}").shuffle(keys)
    held = set(keys[:round(fraction * len(keys))])
    return ([s for s in samples if (s.group or s.id) not in held],
            [s for s in samples if (s.group or s.id) in held])


def _source_samples(config: FinetuneConfig) -> tuple[list[Sample], list[Sample], dict]:
    spec = get_spec(config.dataset)
    if spec.family == VSR:
        train = get_dataset(config.dataset, root=config.data_root, split="all", vsr_split="train")
        dev = get_dataset(config.dataset, root=config.data_root, split="all", vsr_split="dev")
        return list(train), list(dev), {"train": train.info, "eval": dev.info}
    if spec.synthetic:
        source = get_dataset(config.dataset, root=synthetic_training_root(config), split="all",
                             option=config.option,
                             synthetic={"seed": config.synthetic_seed, "n_pairs": config.synthetic_pairs})
    else:
        source = get_dataset(config.dataset, root=config.data_root, split=config.split or "val",
                             option=config.option)
    train, held = hold_out(list(source), config.eval_fraction, config.seed)
    return train, held, {"train": source.info, "eval": {"held_out_of_train": config.eval_fraction}}


def load_training_data(config: FinetuneConfig) -> TrainingData:
    """The samples to train and evaluate on (see the module docstring), with what to record about them."""
    train, evaluation, info = _source_samples(config)
    train = train[:config.limit] if config.limit else train
    evaluation = evaluation[:config.eval_limit] if config.eval_limit else evaluation
    info.update(n_train=len(train), n_eval=len(evaluation))
    if config.flip:
        flips, refused = flip_samples(train)
        logger.info("flip augmentation: %d flipped copies added, %d samples refused (ambiguous left/right)",
                    len(flips), len(refused))
        info.update(n_flipped=len(flips), n_flip_refused=len(refused),
                    flip_refused_ids=[s.id for s in refused][:100])
        train = train + flips
    return TrainingData(train, evaluation, info)
