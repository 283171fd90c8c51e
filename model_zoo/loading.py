"""`get_model`: a short name, a local directory or a hub id -> a ready `VLM`.

Two steps, so that callers can settle everything cheap before the slow part: `open_checkpoint` reads
the config and the processor and decides the prompt format; `Checkpoint.load` loads the weights.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import transformers
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_session, is_offline_mode, try_to_load_from_cache
from transformers import AutoConfig

from common.errors import ToolkitError
from model_zoo.adapters import adapter_base, adapter_processor, is_adapter_dir, merge_adapter
from model_zoo.processors import load_processor
from model_zoo.registry import (DTYPE_NAMES, FamilySpec, auto_prompt_format, check_device_name, family_spec,
                               resolve_model_reference)
from model_zoo.vlm import VLM, resolve_prompt_format

logger = logging.getLogger(__name__)

DTYPES = dict(zip(DTYPE_NAMES, (None, torch.float32, torch.bfloat16, torch.float16)))


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
    adapter: Path | None = None  # a LoRA adapter folder merged into these weights on load

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
        if self.adapter is not None:
            model = merge_adapter(model, self.adapter, self.model_id)
        model_id = str(self.adapter) if self.adapter is not None else self.model_id
        vlm = VLM(model.eval(), self.processor, name=self.name, model_id=model_id, revision=self.revision,
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
    if is_adapter_dir(name_or_path):
        return _open_adapter(Path(name_or_path).expanduser(), revision, prompt_format, trust_remote_code)
    model_id, revision = resolve_model_reference(name_or_path, revision)
    config = _load_config(model_id, revision, trust_remote_code)
    spec = family_spec(config.model_type, model_id)
    processor = _load_processor(model_id, spec, revision, trust_remote_code)
    resolved = resolve_prompt_format(prompt_format, spec, processor, source=model_id,
                                     auto_format=auto_prompt_format(name_or_path))
    return Checkpoint(name_or_path, model_id, revision, spec, processor, resolved, trust_remote_code)


def _open_adapter(path: Path, revision: str | None, prompt_format: str, trust_remote_code: bool) -> Checkpoint:
    """A LoRA adapter folder (`model_zoo.adapters`): its base model's checkpoint, with the adapter's own
    processor when it saved one, and the adapter to merge on load."""
    base, base_revision = adapter_base(path)
    checkpoint = open_checkpoint(base, revision=revision or base_revision, prompt_format=prompt_format,
                                 trust_remote_code=trust_remote_code)
    processor = adapter_processor(path, checkpoint.spec.name) or checkpoint.processor
    resolved = resolve_prompt_format(prompt_format, checkpoint.spec, processor, source=str(path),
                                     auto_format=auto_prompt_format(base))
    return replace(checkpoint, name=str(path), processor=processor, prompt_format=resolved, adapter=path)


def get_model(name_or_path: str, *, dtype: str = "auto", device: str = "auto", device_map=None,
              revision: str | None = None, prompt_format: str = "auto", trust_remote_code: bool = False,
              attn_implementation: str = "sdpa") -> VLM:
    """Load a registered model (see `model_zoo.registry.MODELS`), a local checkpoint directory or a hub id.

    dtype: "auto" = float32 on CPU (as the paper ran; half precision is slow and inexact there), the
        checkpoint's own dtype on an accelerator; or "float32" / "bfloat16" / "float16".
    device: "auto" picks cuda, then mps, then cpu. `device_map` (e.g. "auto") instead spreads a model
        too large for one GPU over several devices via accelerate; `device` is then not used (its name is
        still checked, so a typo never passes silently).
    revision: a hub revision (commit, tag or branch) to pin; defaults to the registry entry's pin.
    prompt_format: "auto" (default), "chat" or "paper" (see `open_checkpoint`).
    A LoRA adapter folder loads as its base model with the adapter merged in (`model_zoo.adapters`).

    Order: options are checked first, then config and processor are read and the prompt format is
    settled (`open_checkpoint`), and only then are the weights loaded, so every mistake is reported
    before the slow part.
    """
    _resolve_dtype(dtype)
    check_device_name(device)
    if device_map is None:
        _resolve_device(device)
    checkpoint = open_checkpoint(name_or_path, revision=revision, prompt_format=prompt_format,
                                 trust_remote_code=trust_remote_code)
    return checkpoint.load(dtype=dtype, device=device, device_map=device_map,
                           attn_implementation=attn_implementation)


def _resolve_dtype(dtype: str):
    if dtype not in DTYPES:
        raise ToolkitError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _resolve_device(device: str) -> str:
    """"auto" → cuda, mps or cpu; otherwise a device such as "cuda", "cuda:1" or "cpu", checked to exist (its
    name's form is checked without torch, `registry.check_device_name`)."""
    kind, index = check_device_name(device)
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
    if not Path(model_id).is_dir():
        _require_hub(model_id, revision)
    try:
        return AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        if not Path(model_id).is_dir() and is_offline_mode():
            raise ToolkitError(f"{model_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                               f"downloading it: unset HF_HUB_OFFLINE on a machine with network access once, or "
                               f"give a local checkpoint folder (--model-path)") from None
        raise ToolkitError(f"cannot load a model config from {model_id!r}: {_first_line(err)}. Give a registered "
                           f"name, a checkpoint directory (with config.json) or a reachable hub id") from None


HUB_TIMEOUT_SECONDS = 5


def _require_hub(model_id: str, revision: str | None) -> None:
    """One quick request to the hub before transformers' own, which retries an unreachable hub for ~25 s
    with every retry logged; here an unreachable hub is one error that says how to work offline."""
    if is_offline_mode():
        return
    url = f"{hub_constants.ENDPOINT}/api/models/{model_id}"
    try:
        get_session().head(url, timeout=HUB_TIMEOUT_SECONDS)
    except Exception as err:  # the session's transport errors (DNS, refused, timeout) have no common base here
        cached = isinstance(try_to_load_from_cache(model_id, "config.json", revision=revision), str)
        where = ("it is in the local cache, so HF_HUB_OFFLINE=1 runs it from there" if cached else
                 "it is not in the local cache: download it once with network access, or give a local checkpoint "
                 "folder (--model-path)")
        raise ToolkitError(f"cannot reach the Hugging Face hub at {hub_constants.ENDPOINT} to read {model_id!r} "
                           f"({_first_line(err)}); {where}. To work offline, set HF_HUB_OFFLINE=1 (models from "
                           f"the cache) or use local folders") from None


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
