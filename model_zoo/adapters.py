"""LoRA adapter folders as models: `get_model("<adapter folder>")` loads the base model and merges the adapter.

An adapter folder is what peft's `save_pretrained` writes (`adapter_config.json`, `adapter_model.safetensors`)
and has no `config.json` of its own; `python -m training.finetune --tuning lora` adds the processor files,
so the folder carries the exact chat template and tokenizer it was trained with (without them the base
model's processor is used). The base model is `base_model_name_or_path` of `adapter_config.json`: a registry
name ("toy", "qwen3-vl"), a hub id, or an absolute directory; `revision` pins a hub revision.

The adapter is merged into the base weights on load (`merge_and_unload`), so the evaluated model is a stock
transformers model: the intervention, the prefix engine and every check treat it like any checkpoint. A
merged folder (`--merge-lora`) is an ordinary checkpoint and loads without this module.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from common.errors import ToolkitError
from common.jsonio import read_json
from model_zoo.processors import load_processor
from model_zoo.registry import MODELS

logger = logging.getLogger(__name__)
ADAPTER_CONFIG = "adapter_config.json"
_PROCESSOR_FILES = ("processor_config.json", "tokenizer_config.json")


@contextmanager
def peft_calls():
    """Around peft calls: peft 0.21 reads `is_gradient_checkpointing`, which transformers 5.24 deprecated; the
    FutureWarning says nothing the user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def is_adapter_dir(name_or_path: str) -> bool:
    """A local folder holding a peft adapter and no full model."""
    path = Path(name_or_path).expanduser()
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def base_model_reference(name_or_path: str) -> str:
    """How an adapter should name its base: registry names and hub ids as given, directories absolute
    (so the adapter loads from any working directory)."""
    if name_or_path in MODELS:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else name_or_path


def adapter_base(path: Path) -> tuple[str, str | None]:
    """(base model, revision) named by the adapter's config."""
    config = read_json(path / ADAPTER_CONFIG, what="adapter config")
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise ToolkitError(f"{path / ADAPTER_CONFIG} names no base model (base_model_name_or_path); set it to "
                           f"the registry name, hub id or folder of the model the adapter was trained on")
    return base, config.get("revision")


def adapter_processor(path: Path, family: str):
    """The processor saved with the adapter (its exact chat template and tokenizer), or None."""
    if any((path / name).is_file() for name in _PROCESSOR_FILES):
        return load_processor(str(path), model_type=family)
    return None


def merge_adapter(model, path: Path, base: str):
    """`model` (the loaded base) with the adapter in `path` merged into its weights."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ToolkitError(f"{path} is a LoRA adapter; loading it needs peft (pip install peft)") from None
    try:
        with peft_calls():
            merged = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ToolkitError(f"cannot apply the adapter {path} to {base}: {str(err).strip().splitlines()[0]}; "
                           f"is {base} the model it was trained on?") from None
    logger.info("merged LoRA adapter %s into %s", path, base)
    return merged
