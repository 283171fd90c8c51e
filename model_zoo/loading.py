"""`get_model`: a short name, a local directory or a hub id -> a ready `VLM`."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig

from common.errors import ToolkitError
from model_zoo.adapters import is_adapter_dir, load_adapter
from model_zoo.processors import load_processor
from model_zoo.registry import MODELS, FamilySpec, family_spec, unknown_model_message
from model_zoo.vlm import VLM, check_prompt_format

logger = logging.getLogger(__name__)

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("auto", "cuda", "mps", "cpu")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def get_model(name_or_path: str, *, dtype: str = "auto", device: str = "auto", device_map=None,
              revision: str | None = None, prompt_format: str = "chat", trust_remote_code: bool = False,
              attn_implementation: str = "sdpa") -> VLM:
    """Load a registered model (see `model_zoo.registry.MODELS`), a local checkpoint directory or a hub id.

    dtype: "auto" = float32 on CPU (as the paper ran; half precision is slow and inexact there), the
        checkpoint's own dtype on an accelerator; or "float32" / "bfloat16" / "float16".
    device: "auto" picks cuda, then mps, then cpu. `device_map` (e.g. "auto") instead spreads a model
        too large for one GPU over several devices via accelerate; `device` is then ignored.
    revision: a hub revision (commit, tag or branch) to pin; defaults to the registry entry's pin.
    A LoRA adapter folder loads as its base model with the adapter merged in (`model_zoo.adapters`).
    """
    if is_adapter_dir(name_or_path):
        return load_adapter(name_or_path, dtype=dtype, device=device, device_map=device_map,
                            prompt_format=prompt_format, trust_remote_code=trust_remote_code,
                            attn_implementation=attn_implementation)
    model_id, revision = _resolve(name_or_path, revision)
    torch_dtype = _resolve_dtype(dtype)
    target = None if device_map is not None else _resolve_device(device)
    config = _load_config(model_id, revision, trust_remote_code)
    spec = family_spec(config.model_type, model_id)
    check_prompt_format(prompt_format, spec)
    if torch_dtype is None:
        torch_dtype = torch.float32 if target == "cpu" else "auto"
    model = _load_weights(spec, model_id, revision=revision, dtype=torch_dtype, device_map=device_map,
                          trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    if target is not None:
        model.to(target)
    processor = _load_processor(model_id, spec, revision, trust_remote_code)
    vlm = VLM(model.eval(), processor, name=name_or_path, model_id=model_id, revision=revision,
              prompt_format=prompt_format)
    logger.info("loaded %s (%s) as %s on %s", name_or_path, model_id, vlm.dtype, vlm.device)
    return vlm


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
