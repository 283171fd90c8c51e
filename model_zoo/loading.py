"""`get_model`: a short name, a local directory or a hub id -> a ready `VLM`.

Two steps, so that callers can settle everything cheap before the slow part: `open_checkpoint` reads
the config and the processor and decides the prompt format; `Checkpoint.load` loads the weights.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig

from common.errors import ToolkitError
from model_zoo.processors import load_processor
from model_zoo.registry import (DTYPE_NAMES, MODELS, FamilySpec, auto_prompt_format, family_spec,
                               unknown_model_message)
from model_zoo.vlm import VLM, resolve_prompt_format

logger = logging.getLogger(__name__)

DTYPES = dict(zip(DTYPE_NAMES, (None, torch.float32, torch.bfloat16, torch.float16)))
DEVICES = ("auto", "cuda", "mps", "cpu")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class Checkpoint:
    """A model found and described, its weights not loaded yet: what `get_model` knows before the slow part.

    prompt_format is the resolved one ("chat" or "paper"), so every prompt-format problem surfaces here.
    """

    name: str
    model_id: str
    revision: str | None
    spec: FamilySpec
    processor: object
    prompt_format: str
    trust_remote_code: bool = False

    def load(self, *, dtype: str = "auto", device: str = "auto", device_map=None,
             attn_implementation: str = "sdpa") -> VLM:
        """Load the weights (see `get_model` for the arguments) and wrap them with the processor as a VLM."""
        torch_dtype = _resolve_dtype(dtype)
        target = None if device_map is not None else _resolve_device(device)
        if torch_dtype is None:
            torch_dtype = torch.float32 if target == "cpu" else "auto"
        model = _load_weights(self.spec, self.model_id, revision=self.revision, dtype=torch_dtype,
                              device_map=device_map, trust_remote_code=self.trust_remote_code,
                              attn_implementation=attn_implementation)
        if target is not None:
            model.to(target)
        vlm = VLM(model.eval(), self.processor, name=self.name, model_id=self.model_id, revision=self.revision,
                  prompt_format=self.prompt_format)
        logger.info("loaded %s (%s) as %s on %s", self.name, self.model_id, vlm.dtype, vlm.device)
        return vlm


def open_checkpoint(name_or_path: str, *, revision: str | None = None, prompt_format: str = "auto",
                    trust_remote_code: bool = False) -> Checkpoint:
    """Read a model's config and processor and settle its prompt format; no weights are loaded.

    prompt_format "auto": the registry's choice for the name (`registry.auto_prompt_format`: the paper's
    literal prompt for llava1.5 and llava1.5-13b, the chat template otherwise); see
    `model_zoo.vlm.resolve_prompt_format` for the fallback and the errors.
    """
    model_id, revision = _resolve(name_or_path, revision)
    config = _load_config(model_id, revision, trust_remote_code)
    spec = family_spec(config.model_type, model_id)
    processor = _load_processor(model_id, spec, revision, trust_remote_code)
    resolved = resolve_prompt_format(prompt_format, spec, processor, source=model_id,
                                     auto_format=auto_prompt_format(name_or_path))
    return Checkpoint(name_or_path, model_id, revision, spec, processor, resolved, trust_remote_code)


def get_model(name_or_path: str, *, dtype: str = "auto", device: str = "auto", device_map=None,
              revision: str | None = None, prompt_format: str = "auto", trust_remote_code: bool = False,
              attn_implementation: str = "sdpa") -> VLM:
    """Load a registered model (see `model_zoo.registry.MODELS`), a local checkpoint directory or a hub id.

    dtype: "auto" = float32 on CPU (as the paper ran; half precision is slow and inexact there), the
        checkpoint's own dtype on an accelerator; or "float32" / "bfloat16" / "float16".
    device: "auto" picks cuda, then mps, then cpu. `device_map` (e.g. "auto") instead spreads a model
        too large for one GPU over several devices via accelerate; `device` is then ignored.
    revision: a hub revision (commit, tag or branch) to pin; defaults to the registry entry's pin.
    prompt_format: "auto" (default), "chat" or "paper" (see `open_checkpoint`).

    Order: options are checked first, then config and processor are read and the prompt format is
    settled (`open_checkpoint`), and only then are the weights loaded, so every mistake is reported
    before the slow part.
    """
    _resolve_dtype(dtype)
    if device_map is None:
        _resolve_device(device)
    checkpoint = open_checkpoint(name_or_path, revision=revision, prompt_format=prompt_format,
                                 trust_remote_code=trust_remote_code)
    return checkpoint.load(dtype=dtype, device=device, device_map=device_map,
                           attn_implementation=attn_implementation)


def _resolve(name_or_path: str, revision: str | None) -> tuple[str, str | None]:
    entry = MODELS.get(name_or_path)
    if entry is not None:
        return entry.location(), revision if revision is not None else entry.revision
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser()), revision
    if _HUB_ID.match(name_or_path) and not Path(name_or_path).exists():
        return name_or_path, revision
    if _looks_like_path(name_or_path):
        raise ToolkitError(f"no checkpoint directory at {name_or_path!r}; check the path, or give a registered "
                           f"name ({', '.join(sorted(MODELS))}) or a hub id")
    raise ToolkitError(unknown_model_message(name_or_path))


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or text.count("/") > 1 or "\\" in text


def _resolve_dtype(dtype: str):
    if dtype not in DTYPES:
        raise ToolkitError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _resolve_device(device: str) -> str:
    """"auto" → cuda, mps or cpu; otherwise a device such as "cuda", "cuda:1" or "cpu", checked to exist."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind == "auto" or not index.isdigit())):
        raise ToolkitError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} (cuda may take an index, "
                           f"e.g. cuda:1)")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise ToolkitError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ToolkitError(f"device {device!r} requested but torch sees {torch.cuda.device_count()} GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ToolkitError("device 'mps' requested but torch has no MPS backend here; use --device cpu or auto")
    return device


def _load_config(model_id: str, revision: str | None, trust_remote_code: bool):
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ToolkitError(f"cannot load a model config from {model_id!r}: {_first_line(err)}. Give a registered "
                           f"name, a checkpoint directory (with config.json) or a reachable hub id") from None


def _load_weights(spec: FamilySpec, model_id: str, **kwargs):
    model_class = getattr(transformers, spec.model_class)
    try:
        return model_class.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        raise ToolkitError(f"cannot load the weights of {model_id!r} as {spec.model_class}: {_first_line(err)}"
                           ) from None


def _load_processor(model_id: str, spec: FamilySpec, revision: str | None, trust_remote_code: bool):
    try:
        return load_processor(model_id, model_type=spec.name, revision=revision,
                              trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as err:
        raise ToolkitError(f"cannot load the processor (tokenizer, image processor) of {model_id!r}: "
                           f"{_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
