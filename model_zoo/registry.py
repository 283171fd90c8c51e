"""Supported model families and short model names, kept as data.

A `FamilySpec` holds what the toolkit must know about one architecture (keyed by the checkpoint's
`config.model_type`); a `ModelEntry` maps a short name to a checkpoint. Adding a checkpoint of a
supported family is one line in `MODELS` (or a `register_model` call); adding a family is one
`FamilySpec` here plus its processor handling in `model_zoo.processors`.

How a model and a device are named is checked here too (`resolve_model_reference`, `check_device_name`):
this module imports neither torch nor transformers, so a command line refuses a mistyped name at once,
with the same rules `model_zoo.loading` applies before it loads anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import ToolkitError

REPO_ROOT = Path(__file__).resolve().parent.parent
# How prompts are written: "chat" = the checkpoint's chat template; "paper" = the original code's literal
# LLaVA-1.5 string; "auto" = paper for the paper's models, chat otherwise (`resolve_prompt_format`).
PROMPT_FORMATS = ("auto", "chat", "paper")
# Weight dtypes by name ("auto": float32 on CPU, the checkpoint's own on an accelerator; model_zoo.loading).
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
# Device kinds ("auto": cuda, then mps, then cpu; model_zoo.loading); cuda may take an index (cuda:1).
DEVICES = ("auto", "cuda", "mps", "cpu")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class FamilySpec:
    """Per-architecture facts.

    model_class: the transformers class loaded for this family.
    image_token_attr: the config attribute holding the id of the image placeholder token in `input_ids`
        (the processor expands one placeholder into one id per image feature).
    chat_style: how the model's own chat template lays out a turn ("llava": "USER: <image>\\n... ASSISTANT:";
        "qwen": "<|im_start|>user ... <|im_end|>"); informative, prompts always come from the template.
    paper_prompt: whether prompt_format="paper" (the original code's literal LLaVA-1.5 prompt) applies.
    rope: "llama" (1-D positions) or "mrope" (Qwen's 3-D multimodal positions, see `get_rope_index`).
    """

    name: str
    model_class: str
    image_token_attr: str
    chat_style: str
    paper_prompt: bool
    rope: str


FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec("llava", "LlavaForConditionalGeneration", "image_token_id", "llava", True, "llama"),
    FamilySpec("llava_next", "LlavaNextForConditionalGeneration", "image_token_id", "llava", False, "llama"),
    FamilySpec("qwen2_vl", "Qwen2VLForConditionalGeneration", "image_token_id", "qwen", False, "mrope"),
    FamilySpec("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "image_token_id", "qwen", False, "mrope"),
    FamilySpec("qwen3_vl", "Qwen3VLForConditionalGeneration", "image_token_id", "qwen", False, "mrope"),
)}


@dataclass(frozen=True)
class ModelEntry:
    """A short name for a checkpoint.

    model_id: a Hugging Face hub id, or a directory; a relative directory is resolved against the
        repository root (for checkpoints shipped inside the repo).
    revision: a pinned hub revision used when the caller gives none (None = the hub's default branch).
    prompt_format: what prompt_format="auto" means for this name: "paper" (the original code's literal
        LLaVA-1.5 string) for the paper's own models, so that their default runs reproduce the paper;
        "chat" (the checkpoint's chat template) for every other model.
    """

    name: str
    model_id: str
    family: str
    revision: str | None = None
    description: str = ""
    local: bool = False
    prompt_format: str = "chat"

    def location(self) -> str:
        return str(REPO_ROOT / self.model_id) if self.local else self.model_id


# The original code pinned llava-hf/llava-1.5-7b-hf to revision "a272c74". We load
# the hub's current files by default because that 2024 revision was only used with transformers 4.39 and is
# untested with transformers 5 here; pass revision="a272c74" (or any commit) to pin.
PAPER_LLAVA_REVISION = "a272c74"
MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, model_id: str, *, family: str, revision: str | None = None,
                   description: str = "", local: bool = False, prompt_format: str = "chat") -> ModelEntry:
    """Add (or replace) a short name; `local=True` marks a directory relative to the repository root."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if prompt_format == "paper" and not FAMILIES[family].paper_prompt:
        raise ValueError(f"prompt_format='paper' applies to the llava family only, not {family!r}")
    entry = ModelEntry(name, model_id, family, revision, description, local, prompt_format)
    MODELS[name] = entry
    return entry


# The paper evaluated LLaVA-1.5 with the original code's literal prompt, so these two names default to it.
for _row in (
    ("llava1.5", "llava-hf/llava-1.5-7b-hf", "llava", "LLaVA-1.5 7B, the paper's model"),
    ("llava1.5-13b", "llava-hf/llava-1.5-13b-hf", "llava", "LLaVA-1.5 13B"),
):
    register_model(_row[0], _row[1], family=_row[2], description=_row[3], prompt_format="paper")
for _row in (
    ("llava1.6", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next", "LLaVA-1.6 (NeXT) Vicuna 7B, anyres"),
    ("llava1.6-mistral", "llava-hf/llava-v1.6-mistral-7b-hf", "llava_next", "LLaVA-1.6 (NeXT) Mistral 7B"),
    ("qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", "Qwen2-VL 7B Instruct (paper appendix)"),
    ("qwen2.5-vl", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", "Qwen2.5-VL 7B Instruct"),
    ("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", "Qwen2.5-VL 3B Instruct"),
    ("qwen3-vl", "Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", "Qwen3-VL 2B Instruct"),
    ("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", "Qwen3-VL 8B Instruct"),
):
    register_model(_row[0], _row[1], family=_row[2], description=_row[3])
register_model("toy", "model_zoo/toy/checkpoint", family="llava", local=True,
               description="tiny LLaVA trained on synthetic Controlled-A scenes (shipped; model_zoo/toy)")


def family_spec(model_type: str, source: str) -> FamilySpec:
    """The spec of a checkpoint's `config.model_type`, or a ToolkitError naming the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ToolkitError(
            f"{source} is a {model_type!r} model, which the toolkit does not support; supported model types: "
            f"{', '.join(FAMILIES)}") from None


def auto_prompt_format(name_or_path: str) -> str:
    """What prompt_format="auto" means for a registered name ("paper" or "chat"); "chat" for paths and hub ids.

    A llava-family checkpoint without a chat template still falls back to "paper" when loaded
    (`model_zoo.vlm.resolve_prompt_format`); that needs the checkpoint, this does not.
    """
    entry = MODELS.get(name_or_path)
    return entry.prompt_format if entry is not None else "chat"


def unknown_model_message(name: str) -> str:
    return (f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}. A local checkpoint directory "
            f"or a Hugging Face hub id (org/name) of a supported architecture also works.")


def resolve_model_reference(name_or_path: str, revision: str | None = None) -> tuple[str, str | None]:
    """(where the checkpoint is, the revision to load) for a registered name, a local folder or a hub id
    (org/name); a ToolkitError for anything else. Nothing is read: a hub id is only checked for its form."""
    entry = MODELS.get(name_or_path)
    if entry is not None:
        return entry.location(), revision if revision is not None else entry.revision
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser()), revision
    if _looks_like_path(name_or_path):  # before the hub-id form, which "./x" and "../x" also match
        raise ToolkitError(f"no checkpoint directory at {name_or_path!r}; check the path, or give a registered "
                           f"name ({', '.join(sorted(MODELS))}) or a hub id")
    if _HUB_ID.match(name_or_path) and not Path(name_or_path).exists():
        return name_or_path, revision
    raise ToolkitError(unknown_model_message(name_or_path))


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or text.count("/") > 1 or "\\" in text


def check_device_name(device: str) -> tuple[str, str]:
    """(kind, index) of a device name such as "auto", "cpu", "mps", "cuda" or "cuda:1"; a ToolkitError for any
    other. Whether the device exists needs torch (`model_zoo.loading`)."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind == "auto" or not index.isdigit())) or device.endswith(":"):
        raise ToolkitError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (cuda may take an index, "
                           f"e.g. cuda:1)")
    return kind, index
