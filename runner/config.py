"""What one invocation of `main_aro.py` asks for, and the single configurations it expands into.

`RunConfig` holds every command-line argument under its flag name; the methods' hyper-parameters
(whose flags come from the method registry, `methods`) are in `hyperparameters`, each possibly a
comma-separated grid (`--weight 0.5,0.8`). `expand_methods` turns them into `methods.Configuration`s,
one per configuration, each of which gets its own run folder with exactly what a separate run would
write. This module imports neither torch nor transformers, so the command line answers at once.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from common.errors import ToolkitError
from dataset_zoo.boxes import check_detector_spec
from dataset_zoo.catalog import OPTION_NAMES, VSR, get_spec
from dataset_zoo.splits import SPLITS
from dataset_zoo.visual_prompt import parse_colour
from methods import Configuration, check_requested, get_method
from methods.registry import format_value
from model_zoo.registry import DTYPE_NAMES, PROMPT_FORMATS, check_device_name, resolve_model_reference

logger = logging.getLogger(__name__)

# accelerate's placements of a model spread over several devices.
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
# --threshold auto: the paper's VSR rule, computed from the val split (runner.threshold).
AUTO = "auto"


@dataclass(frozen=True)
class RunConfig:
    """Every argument of one `main_aro.py` invocation, named as its flag (dashes become underscores).

    hyperparameters: {name: tuple of values} of the method hyper-parameters given (a scalar is taken
    as a one-value tuple); one invocation evaluates their grid in one pass. A hyper-parameter not
    given takes its method's default (the paper's per-dataset value for the alpha family).
    `box_detector` is a user's detector as MODULE:FUNCTION (imported when the run opens, `runner.augment`).
    `threshold` may hold "auto" (yes/no tasks only). `prompt_format` "auto" is replaced by the
    resolved format before any run folder is named (`runner.run`), so both spellings of one format
    share their folders.
    """

    dataset: str = "Synthetic_Controlled_A"
    model_name: str = "toy"
    model_path: Optional[str] = None
    revision: Optional[str] = None
    method: tuple[str, ...] = ("base",)
    hyperparameters: dict[str, tuple] = field(default_factory=dict)
    option: Optional[str] = None
    split: Optional[str] = None
    limit: Optional[int] = None
    seed: int = 1
    data_root: str = "data"
    prompt_dir: Optional[str] = None
    prompt_variant: str = "default"
    vsr_split: str = "test"
    vsr_paper_resize: bool = False
    flip_test: bool = False
    visual_prompt: str = "none"
    box_colour: str = "red"
    box_width: int = 3
    boxes_json: Optional[str] = None
    coco_annotations: Optional[str] = None
    box_detector: Optional[str] = None
    download: bool = False
    dtype: str = "auto"
    device: str = "auto"
    device_map: Optional[str] = None
    batch_size: int = 1
    num_workers: int = 0
    threads: Optional[int] = None
    max_new_tokens: int = 10
    match: str = "strict"
    prompt_format: str = "auto"
    output_dir: str = "output"
    overwrite: bool = False

    def __post_init__(self):
        given = {name: tuple(v) if isinstance(v, (tuple, list)) else (v,)
                 for name, v in dict(self.hyperparameters).items()}
        object.__setattr__(self, "hyperparameters", given)
        object.__setattr__(self, "method", tuple(self.method))

    @property
    def model_label(self) -> str:
        """The model's name in run folders and tables: the registry name, or the folder of --model-path."""
        if self.model_path:
            return Path(self.model_path.rstrip("/")).name or self.model_path
        return self.model_name


def parse_list(text: str, kind=float) -> tuple:
    """Parse `0.5,0.8, 1.2` into a tuple; used for every hyper-parameter flag."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise ToolkitError(f"cannot parse {text!r} as a comma-separated list of {kind.__name__} "
                           f"values (example: 0.5,0.8)") from None


def validate(config: RunConfig) -> None:
    """Reject out-of-range or unknown settings with one message naming the flag and the valid range."""
    check_names(config)
    if not config.method:
        raise ToolkitError("no --method given; choose one or more of the registered methods")
    check_requested(config.method, config.hyperparameters)
    for name, values in config.hyperparameters.items():
        hyperparameter = _hyperparameter(name, config.method)
        for value in values:
            hyperparameter.check(value)
    if AUTO in config.hyperparameters.get("threshold", ()):
        _check_auto_threshold(config)
    if config.split is not None:
        _check_choice("split", (config.split,), SPLITS)
    _check_choice("prompt-format", (config.prompt_format,), PROMPT_FORMATS)
    _check_choice("dtype", (config.dtype,), DTYPE_NAMES)
    if config.option is not None:
        _check_choice("option", (config.option,), OPTION_NAMES)
    for name, low in (("batch-size", 1), ("max-new-tokens", 1), ("num_workers", 0)):
        value = getattr(config, name.replace("-", "_"))
        if value < low:
            raise ToolkitError(f"--{name} must be >= {low}, got {value}")
    for name in ("limit", "threads"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ToolkitError(f"--{name} must be >= 1, got {value}")
    _check_placement(config)
    if config.box_width < 1:
        raise ToolkitError(f"--box-width must be >= 1 (pixels), got {config.box_width}")
    parse_colour(config.box_colour)
    if config.box_detector is not None:
        _check_box_detector(config)


def check_names(config: RunConfig) -> None:
    """The dataset and the model exist as named, checked as the loaders will check them but without torch, so a
    typo is refused at once (a registered name, a local folder or a hub id: `registry.resolve_model_reference`)."""
    get_spec(config.dataset)
    resolve_model_reference(config.model_path or config.model_name, config.revision)


def _check_placement(config: RunConfig) -> None:
    """--device's form (whether it exists needs torch: `runner.run.check_device`), and one way to place the model."""
    check_device_name(config.device)
    if config.device_map is None:
        return
    _check_choice("device-map", (config.device_map,), DEVICE_MAPS)
    if config.device != "auto":
        raise ToolkitError(f"--device {config.device} and --device-map {config.device_map} both place the model; "
                           f"give one of them (--device-map spreads it over several devices, --device puts it on one)")


# What --visual-prompt box draws with: used by no other visual prompt.
BOX_FLAGS = ("box_colour", "box_width", "boxes_json", "coco_annotations")


def check_box_flags(settings) -> None:
    """Box flags given without --visual-prompt box would be ignored, yet they are hashed into the run folder's
    name; refuse them. `settings`: a RunConfig or parsed arguments with these names. Called for command lines
    (`runner.cli.parse_config`, `training.flip_test`), not in `validate`: the analysis reads --boxes-json and
    --coco-annotations for its overlap figures without any visual prompt."""
    if settings.visual_prompt == "box":
        return
    given = [name for name in BOX_FLAGS if getattr(settings, name) != getattr(RunConfig, name)]
    if given:
        flags = " and ".join("--" + name.replace("_", "-") for name in given)
        several = len(given) > 1
        raise ToolkitError(f"{flags} {'apply' if several else 'applies'} only with --visual-prompt box (it draws "
                           f"the boxes); add --visual-prompt box or drop {'them' if several else 'it'}")


def _check_box_detector(config: RunConfig) -> None:
    """The spec's form, and that it is the one box source of a visual prompt (the import comes later, in
    `runner.augment.visual_prompt`, still before any weight loads)."""
    check_detector_spec(config.box_detector)
    if config.visual_prompt != "box":
        raise ToolkitError("--box-detector finds the boxes that --visual-prompt box draws; add --visual-prompt box "
                           "or drop --box-detector")
    for flag in ("boxes_json", "coco_annotations"):
        if getattr(config, flag) is not None:
            raise ToolkitError(f"--box-detector and --{flag.replace('_', '-')} are two box sources; give one")


def _check_auto_threshold(config: RunConfig) -> None:
    """--threshold auto averages per gold label yes / no, so it needs a yes/no task (VSR)."""
    if get_spec(config.dataset).family != VSR:
        raise ToolkitError(f"--threshold auto is the paper's rule for yes/no tasks (VSR) and does not apply to "
                           f"{config.dataset}; give numbers, e.g. --threshold 0.2,0.25,0.3")


def _check_choice(flag: str, values, choices) -> None:
    for value in values:
        if value not in choices:
            raise ToolkitError(f"unknown --{flag} {value!r}; choose one of: {', '.join(choices)}")


def _hyperparameter(name: str, methods: tuple[str, ...]):
    return next(get_method(m).hyperparameter(name) for m in methods if name in get_method(m).names)


def expand_methods(config: RunConfig) -> list[Configuration]:
    """All configurations of the requested methods: the product of each method's hyper-parameter values,
    given or default."""
    configurations: list[Configuration] = []
    for name in dict.fromkeys(config.method):
        method = get_method(name)
        defaults = method.default_values(config.dataset)
        axes = []
        for hyperparameter in method.hyperparameters:
            given = config.hyperparameters.get(hyperparameter.name)
            if not given and hyperparameter.default is None:
                logger.info("%s not given: using the paper's value %s for %s", hyperparameter.flag,
                            defaults[hyperparameter.name], config.dataset)
            axes.append([(hyperparameter.name, hyperparameter.check(v))
                         for v in (given or (defaults[hyperparameter.name],))])
        configurations.extend(Configuration(name, tuple(values)) for values in itertools.product(*axes))
    return list(dict.fromkeys(configurations))


# Settings that change results besides the dataset, model, split and the method's hyper-parameters.
# Runs are comparable (one baseline, candidates of one val selection) only when all of these agree.
RESULT_SETTINGS = ("option", "match", "seed", "prompt_format", "max_new_tokens", "limit", "dtype", "revision",
                   "prompt_dir", "prompt_variant", "vsr_split", "vsr_paper_resize", "flip_test", "visual_prompt",
                   "box_colour", "box_width", "boxes_json", "coco_annotations", "box_detector")
# Those not spelled out in a run folder's name; a hash of them keeps folders of different settings apart.
_HASHED_SETTINGS = ("model_path",) + tuple(s for s in RESULT_SETTINGS if s not in ("option", "match", "seed"))
# Settings added after run folders were already written: hashed only when set, so older folders keep their names.
_HASHED_WHEN_SET = ("box_detector",)


def run_record(config: RunConfig, configuration: Configuration) -> dict:
    """The arguments of the separate run this configuration stands for: the settings under their flag
    names, the method, and its hyper-parameters."""
    record = asdict(config)
    record.update(method=configuration.method, hyperparameters=configuration.hyperparameters,
                  model=config.model_label)
    return record


def run_path(config: RunConfig, configuration: Configuration, option: Optional[str], split: str) -> Path:
    """Where one configuration's run folder goes, relative to the output root:
    `<model>/<dataset>/<label>__<option>__<split>__<match>__seed<seed>__<hash>`.

    The label (`folder_label`) spells out every hyper-parameter that is not at its default, with numbers
    that sort numerically; the hash covers the other settings that change results. `option` and `split`
    are the dataset's resolved values (defaults and TEST_MODE applied), so the same evaluation always
    lands in the same folder however it was spelled.
    """
    hashed: dict[str, Any] = {key: getattr(config, key) for key in _HASHED_SETTINGS
                              if key not in _HASHED_WHEN_SET or getattr(config, key) is not None}
    digest = hashlib.sha1(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:8]
    name = (f"{folder_label(configuration)}__{option or 'yes-no'}__{split}__{config.match}__seed{config.seed}"
            f"__{digest}")
    return Path(_safe(config.model_label)) / _safe(config.dataset) / _safe(name)


def folder_label(configuration: Configuration) -> str:
    """`methods.Method.label` with sortable numbers: `adapt_vis_w1-0.50_w2-1.50_t-0.20`, so that a directory
    listing puts t-0.20 before t-0.25 and t-0.30 (`sortable_number`)."""
    return configuration.entry.label(configuration.hyperparameters, number=sortable_number)


def sortable_number(value: Any) -> str:
    """A float with at least two decimals (0.2 -> 0.20, 1.5 -> 1.50), more when it needs them (an auto
    threshold's every digit), so names of one grid sort like the numbers (below 10, which covers the
    paper's grids); anything else as `format_value` writes it."""
    if isinstance(value, float) and math.isfinite(value):
        fixed = f"{value:.2f}"
        return fixed if float(fixed) == value else format_value(value)
    return format_value(value)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", name)
