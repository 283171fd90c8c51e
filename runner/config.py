"""What one invocation of `main_aro.py` asks for, and the single configurations it expands into.

`RunConfig` holds every command-line argument under its flag name. Hyper-parameter flags may carry
comma-separated lists (`--weight 0.5,0.8`); `expand_methods` turns them into `MethodSpec`s, one per
configuration, each of which gets its own run folder with exactly what a separate run would write.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo.catalog import OPTION_NAMES

logger = logging.getLogger(__name__)

METHODS = ("base", "scaling_vis", "adapt_vis")
OPTIONS = OPTION_NAMES  # answer counts, and the subsets of the general benchmarks (POPE, VQAv2, ...)
SPLITS = ("val", "test", "all")
SCOPES = ("prefill", "all")
PROMPT_FORMATS = ("chat", "paper")
DTYPES = ("auto", "bfloat16", "float16", "float32")

# The paper's per-dataset settings (original run.sh at 4b96c54, comments L9-24), used when a method's
# hyper-parameters are not given on the command line. VSR's AdaptVis line is labelled Controlled_B in
# the original; it is most likely VSR (see README, differences from the original code).
PAPER_SETTINGS = {
    "Controlled_Images_A": {"weight": 0.8, "weight1": 0.5, "weight2": 1.5, "threshold": 0.4},
    "Controlled_Images_B": {"weight": 0.8, "weight1": 0.5, "weight2": 1.5, "threshold": 0.35},
    "COCO_QA_one_obj": {"weight": 1.2, "weight1": 0.5, "weight2": 1.2, "threshold": 0.3},
    "COCO_QA_two_obj": {"weight": 1.2, "weight1": 0.5, "weight2": 1.2, "threshold": 0.3},
    "VG_QA_one_obj": {"weight": 2.0, "weight1": 0.5, "weight2": 2.0, "threshold": 0.2},
    "VG_QA_two_obj": {"weight": 2.0, "weight1": 0.5, "weight2": 2.0, "threshold": 0.2},
    "VSR": {"weight": 0.5, "weight1": 0.5, "weight2": 1.2, "threshold": 0.64},
}
PAPER_SETTINGS["VSR_zeroshot"] = PAPER_SETTINGS["VSR"]
PAPER_SETTINGS["VSR_random"] = PAPER_SETTINGS["VSR"]
PAPER_SETTINGS["Synthetic_Controlled_A"] = PAPER_SETTINGS["Controlled_Images_A"]
PAPER_SETTINGS["Synthetic_Controlled_B"] = PAPER_SETTINGS["Controlled_Images_B"]
FALLBACK_SETTINGS = PAPER_SETTINGS["Controlled_Images_A"]


@dataclass(frozen=True)
class RunConfig:
    """Every argument of one `main_aro.py` invocation, named as its flag (dashes become underscores).

    Hyper-parameter fields hold tuples so that one invocation can evaluate a grid in one pass; an
    empty tuple means "not given" (the paper's per-dataset value is used).
    """

    dataset: str = "Synthetic_Controlled_A"
    model_name: str = "toy"
    model_path: Optional[str] = None
    revision: Optional[str] = None
    method: tuple[str, ...] = ("base",)
    weight: tuple[float, ...] = ()
    weight1: tuple[float, ...] = ()
    weight2: tuple[float, ...] = ()
    threshold: tuple[float, ...] = ()
    no_round_confidence: bool = False
    scope: str = "prefill"
    option: Optional[str] = None
    split: Optional[str] = None
    limit: Optional[int] = None
    seed: int = 1
    data_root: str = "data"
    prompt_dir: Optional[str] = None
    prompt_variant: str = "default"
    vsr_split: str = "test"
    vsr_paper_resize: bool = False
    download: bool = False
    dtype: str = "auto"
    device: str = "auto"
    device_map: Optional[str] = None
    batch_size: int = 1
    num_workers: int = 0
    max_new_tokens: int = 10
    match: str = "strict"
    prompt_format: str = "chat"
    output_dir: str = "output"
    overwrite: bool = False

    @property
    def model_label(self) -> str:
        """The model's name in run folders and tables: the registry name, or the folder of --model-path."""
        if self.model_path:
            return Path(self.model_path.rstrip("/")).name or self.model_path
        return self.model_name


@dataclass(frozen=True)
class MethodSpec:
    """One configuration of one method: what alpha each sample gets.

    base: alpha = 1. scaling_vis: alpha = weight. adapt_vis: alpha = weight1 if the rounded
    confidence < threshold else weight2.
    """

    method: str
    weight: Optional[float] = None
    weight1: Optional[float] = None
    weight2: Optional[float] = None
    threshold: Optional[float] = None

    def label(self) -> str:
        """A short readable tag for folder names and tables, e.g. `adapt_vis_w1-0.5_w2-1.5_t-0.4`."""
        if self.method == "scaling_vis":
            return f"scaling_vis_a-{_fmt(self.weight)}"
        if self.method == "adapt_vis":
            return (f"adapt_vis_w1-{_fmt(self.weight1)}_w2-{_fmt(self.weight2)}"
                    f"_t-{_fmt(self.threshold)}")
        return "base"

    def hyperparameters(self) -> dict:
        """The method's hyper-parameters under their flag names (None where they do not apply)."""
        return {"weight": self.weight, "weight1": self.weight1, "weight2": self.weight2,
                "threshold": self.threshold}


def _fmt(value: Optional[float]) -> str:
    return "none" if value is None else f"{value:g}"


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
    _check_choice("method", config.method, METHODS)
    _check_choice("scope", (config.scope,), SCOPES)
    if config.split is not None:
        _check_choice("split", (config.split,), SPLITS)
    _check_choice("prompt-format", (config.prompt_format,), PROMPT_FORMATS)
    _check_choice("dtype", (config.dtype,), DTYPES)
    if config.option is not None:
        _check_choice("option", (config.option,), OPTIONS)
    for flag in ("weight", "weight1", "weight2"):
        for value in getattr(config, flag):
            if value < 0:
                raise ToolkitError(f"--{flag} {value:g} is negative; alpha scales attention logits "
                                   f"and must be >= 0 (the paper uses 0.5-2.0)")
    for value in config.threshold:
        if not 0.0 <= value <= 1.0:
            raise ToolkitError(f"--threshold {value:g} is outside [0, 1]; it is compared with a "
                               f"probability (the paper uses 0.2-0.64)")
    for name, low in (("batch-size", 1), ("max-new-tokens", 1), ("num_workers", 0)):
        value = getattr(config, name.replace("-", "_"))
        if value < low:
            raise ToolkitError(f"--{name} must be >= {low}, got {value}")
    if config.limit is not None and config.limit < 1:
        raise ToolkitError(f"--limit must be >= 1, got {config.limit}")


def _check_choice(flag: str, values, choices) -> None:
    for value in values:
        if value not in choices:
            raise ToolkitError(f"unknown --{flag} {value!r}; choose one of: {', '.join(choices)}")


def expand_methods(config: RunConfig) -> list[MethodSpec]:
    """All configurations of the requested methods; missing hyper-parameters take the paper's values."""
    defaults = PAPER_SETTINGS.get(config.dataset, FALLBACK_SETTINGS)

    def values(flag: str) -> tuple[float, ...]:
        given = getattr(config, flag)
        if given:
            return given
        logger.info("--%s not given: using the paper's value %g for %s", flag, defaults[flag],
                    config.dataset)
        return (defaults[flag],)

    specs: list[MethodSpec] = []
    for method in dict.fromkeys(config.method):
        if method == "base":
            specs.append(MethodSpec("base"))
        elif method == "scaling_vis":
            specs.extend(MethodSpec("scaling_vis", weight=w) for w in values("weight"))
        else:
            # weight1 > weight2 is allowed; intervention.AdaptVis warns about it.
            specs.extend(MethodSpec("adapt_vis", weight1=w1, weight2=w2, threshold=t) for w1, w2, t in
                         itertools.product(values("weight1"), values("weight2"), values("threshold")))
    return list(dict.fromkeys(specs))


# Settings that change results besides the dataset, model, split and the method's hyper-parameters.
# Runs are comparable (one baseline, candidates of one val selection) only when all of these agree.
RESULT_SETTINGS = ("option", "match", "seed", "scope", "prompt_format", "max_new_tokens", "limit", "dtype",
                   "revision", "prompt_dir", "no_round_confidence", "prompt_variant", "vsr_split",
                   "vsr_paper_resize")
# Those not spelled out in a run folder's name; a hash of them keeps folders of different settings apart.
_HASHED_SETTINGS = ("model_path",) + tuple(s for s in RESULT_SETTINGS if s not in ("option", "match", "seed"))


def run_record(config: RunConfig, spec: MethodSpec) -> dict:
    """The arguments of the separate run this configuration stands for, under their flag names."""
    record = asdict(config)
    record.update(method=spec.method, **spec.hyperparameters())
    record["model"] = config.model_label
    return record


def run_name(config: RunConfig, spec: MethodSpec, option: Optional[str], split: str) -> str:
    """Folder name of one configuration: its readable hyper-parameters plus a hash of the rest.

    `option` and `split` are the dataset's resolved values (defaults and TEST_MODE applied), so the
    same evaluation always lands in the same folder however it was spelled.
    """
    hashed = {key: getattr(config, key) for key in _HASHED_SETTINGS}
    digest = hashlib.sha1(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:8]
    name = (f"{config.dataset}__{config.model_label}__{spec.label()}__{option or 'yes-no'}__{split}"
            f"__{config.match}__seed{config.seed}__{digest}")
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", name)
