"""`FinetuneConfig`: every setting of a fine-tuning run, checked once, recorded in the output folder."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo.catalog import DATASET_NAMES
from dataset_zoo.splits import SPLITS
from model_zoo.registry import PROMPT_FORMATS

PADDING_SIDES = ("left", "right")  # where the batch pads (training/encode.py labels either correctly)

TUNINGS = ("full", "lora")
PRECISIONS = ("fp32", "bf16", "bf16-mixed")
SCHEDULERS = ("linear", "cosine", "constant")
# The peer's LoRA targets (README, Fine-tuning): attention and MLP projections of the language model.
PEER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Settings that may differ when a run is resumed: they change neither the data order nor the updates (a run
# folder may also be moved).
RESUMABLE_CHANGES = ("output_dir", "num_workers", "eval_batch_size", "progress")


@dataclass(frozen=True)
class FinetuneConfig:
    """Defaults follow the peer survey's recipe (README, Fine-tuning) where it has one."""

    output_dir: str
    model: str = "toy"
    revision: Optional[str] = None
    dataset: str = "Synthetic_Controlled_A"
    data_root: str = "data"
    split: Optional[str] = None            # WhatsUp sets: the paper split trained on (default val)
    option: Optional[str] = None
    eval_fraction: float = 0.1             # held out of the training set when there is no dev file
    synthetic_seed: int = 1
    synthetic_pairs: int = 100
    limit: Optional[int] = None
    eval_limit: Optional[int] = None
    flip: bool = False
    prompt_format: str = "chat"
    tuning: str = "full"
    lora_r: int = 64
    lora_alpha: float = 256.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = PEER_LORA_TARGETS
    merge_lora: bool = False
    freeze_vision: bool = True
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    epochs: float = 3.0
    max_steps: Optional[int] = None
    batch_size: int = 4
    grad_accum: int = 16
    lr: float = 2e-5
    lr_scheduler: str = "linear"
    warmup_steps: int = 5
    weight_decay: float = 1e-6
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    eval_every: int = 20
    save_every: int = 20
    eval_batch_size: int = 8
    padding_side: str = "left"
    seed: int = 0
    num_workers: int = 0
    progress: bool = True

    def to_dict(self) -> dict:
        record = asdict(self)
        record["lora_targets"] = list(self.lora_targets)
        return record


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ToolkitError(message)


def _choice(value, choices, what: str) -> None:
    _require(value in choices, f"unknown {what} {value!r}; use one of {', '.join(map(str, choices))}")


def validate(config: FinetuneConfig) -> FinetuneConfig:
    """ToolkitError naming the first bad setting and its valid values."""
    _choice(config.dataset, DATASET_NAMES, "dataset")
    _choice(config.tuning, TUNINGS, "tuning")
    _choice(config.precision, PRECISIONS, "precision")
    _choice(config.lr_scheduler, SCHEDULERS, "learning-rate scheduler")
    _choice(config.prompt_format, PROMPT_FORMATS, "prompt format")
    _choice(config.padding_side, PADDING_SIDES, "padding side")
    if config.split is not None:
        _choice(config.split, SPLITS, "split")
    _require(0 <= config.eval_fraction < 1, f"--eval-fraction must be in [0, 1), got {config.eval_fraction}")
    _require(config.synthetic_seed != 0, "--synthetic-seed 0 renders the scenes main_aro.py evaluates on "
                                         "(the synthetic sets' default seed); train on another seed, e.g. 1")
    for name in ("batch_size", "grad_accum", "eval_every", "save_every", "eval_batch_size", "lora_r",
                 "synthetic_pairs"):
        _require(getattr(config, name) >= 1, f"--{name.replace('_', '-')} must be at least 1, got "
                                              f"{getattr(config, name)}")
    for name in ("limit", "eval_limit", "max_steps"):
        value = getattr(config, name)
        _require(value is None or value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}")
    _require(config.max_steps is not None or config.epochs > 0, f"--epochs must be positive, got {config.epochs}")
    _require(config.lr > 0, f"--lr must be positive, got {config.lr}")
    for name in ("warmup_steps", "weight_decay", "max_grad_norm", "num_workers"):
        _require(getattr(config, name) >= 0, f"--{name.replace('_', '-')} must be >= 0, got {getattr(config, name)}")
    _require(0 <= config.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {config.lora_dropout}")
    _require(0 < config.adam_beta2 < 1, f"--adam-beta2 must be in (0, 1), got {config.adam_beta2}")
    _require(bool(config.lora_targets), "--lora-targets needs at least one module name, e.g. q_proj,v_proj")
    _require(not config.merge_lora or config.tuning == "lora", "--merge-lora applies to --tuning lora only")
    return config


def resume_differences(saved: dict, config: FinetuneConfig) -> list[str]:
    """Settings of a saved run that differ from `config` in a way that would change the training."""
    current = config.to_dict()
    names = [f.name for f in fields(FinetuneConfig) if f.name not in RESUMABLE_CHANGES]
    return [f"{name}: {saved.get(name)!r} then, {current[name]!r} now" for name in names
            if saved.get(name) != current[name]]
