"""The model to train: loaded like the evaluator loads it, vision side frozen, optionally wrapped with LoRA.

The vision side is every parameter outside the language model and its head: the vision tower and the
projector (LLaVA: `vision_tower`, `multi_modal_projector`, LLaVA-NeXT's `image_newline`; Qwen: `visual`,
which holds the patch merger and Qwen3-VL's DeepStack mergers). The same rule holds for all five families
because transformers 5 nests every one as `model.language_model` + the rest, with `lm_head` on top.

LoRA targets are module names as peft understands them ("q_proj" = every module whose name ends in
".q_proj"), resolved here to the exact linear layers they match. With the vision side frozen only the
language model's layers are eligible, which matters: Qwen2.5-VL's vision blocks also have gate/up/down_proj,
CLIP has q/k/v_proj, and peft would otherwise put trainable adapters into the frozen tower.
"""
from __future__ import annotations

import logging

from torch import nn

from common.errors import ToolkitError
from model_zoo.adapters import peft_calls
from training.config import FinetuneConfig

logger = logging.getLogger(__name__)
LANGUAGE_PREFIXES = ("model.language_model.", "lm_head")
DTYPE_OF_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "bf16-mixed": "float32"}


def is_language_side(name: str) -> bool:
    return name.startswith(LANGUAGE_PREFIXES)


def freeze_vision(model: nn.Module) -> int:
    """Freeze every parameter outside the language model and its head; returns how many tensors."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if not is_language_side(name):
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def linear_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def resolve_lora_targets(model: nn.Module, targets: tuple[str, ...], vision_frozen: bool) -> list[str]:
    """The full names of the linear layers the targets name (language model only when the vision side is
    frozen); a ToolkitError for a target that names nothing or only frozen layers."""
    layers = [name for name in linear_layers(model) if name != "lm_head"]
    resolved: list[str] = []
    for target in targets:
        matched = [name for name in layers if _matches(name, target)]
        if not matched:
            known = sorted({name.rsplit(".", 1)[-1] for name in layers})
            raise ToolkitError(f"LoRA target module {target!r} matches no linear layer of this model; "
                               f"its linear layers are named {', '.join(known)}")
        eligible = [name for name in matched if is_language_side(name) or not vision_frozen]
        if not eligible:
            raise ToolkitError(f"LoRA target module {target!r} only matches layers of the frozen vision side "
                               f"(e.g. {matched[0]}); drop it from --lora-targets or train the vision side too "
                               f"with --no-freeze-vision")
        resolved += [name for name in eligible if name not in resolved]
    return resolved


def apply_lora(model: nn.Module, config: FinetuneConfig):
    """Wrap `model` with LoRA adapters on the resolved targets; only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ToolkitError("--tuning lora needs peft: pip install peft") from None

    targets = resolve_lora_targets(model, config.lora_targets, config.freeze_vision)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, bias="none")
    with peft_calls():
        return get_peft_model(model, lora)


def prepare_model(vlm, config: FinetuneConfig) -> nn.Module:
    """The trainable model: vision frozen (by default), LoRA-wrapped or fully trainable, in train mode."""
    model = vlm.model
    if config.freeze_vision:
        logger.info("froze %d vision-side parameter tensors", freeze_vision(model))
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input gradients, so frozen embeddings are fine.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.tuning == "lora":
        model = apply_lora(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("training %d of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total)
    return model.train()


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only, not on biases and norm scales (as transformers' Trainer)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for _, p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0}]
