"""ScalingVis: scale the attention logits of the last prompt position toward image tokens by alpha.

    with ScalingVis(vlm_or_model, alpha=0.8):          # scope="prefill", all layers, as in the paper
        model.generate(**inputs)

Entering switches only the language model to the registered attention function
(`set_attn_implementation({"text_config": ...})`, the vision tower keeps its own), pushes a
`ScalingState` and installs a forward pre-hook on the top-level model that captures the prompt (its
length and image-token mask) whenever a call starts a sequence. Exiting undoes all three, also on
exceptions; nested blocks restore the enclosing block's state.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from common.errors import ToolkitError
from intervention import attention
from intervention import state as state_module
from intervention.state import SCOPES, ScalingState

_LM_PATHS = ("model.language_model", "language_model", "model.text_model")


class ScalingVis:
    """Context manager applying ScalingVis to a loaded model (a `VLM` or a transformers VLM).

    alpha: a float >= 0 or one value per batch row (sequence or tensor); 1 leaves the model unchanged
        (the stock SDPA path runs, bit-identical).
    scope: "prefill" scales only the last prompt position (the original code); "all" also every
        generated token.
    layers: language-model layer indices to scale (default: all).
    """

    name = "scaling_vis"

    def __init__(self, model_or_vlm, alpha: float | Sequence[float] | torch.Tensor = 1.0, scope: str = "prefill",
                 layers: Iterable[int] | None = None):
        self.model = _hf_model(model_or_vlm)
        self.alpha = validate_alpha(alpha)
        if scope not in SCOPES:
            raise ToolkitError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        self.scope = scope
        self.layers = None if layers is None else _validate_layers(layers, self.model)
        self.state: ScalingState | None = None
        self._hook = None
        self._previous_implementation: str | None = None

    def to_dict(self) -> dict:
        alpha = self.alpha.tolist() if isinstance(self.alpha, torch.Tensor) else self.alpha
        return {"method": self.name, "alpha": alpha, "scope": self.scope,
                "layers": None if self.layers is None else sorted(self.layers)}

    def __repr__(self) -> str:
        return f"ScalingVis(alpha={self.to_dict()['alpha']}, scope={self.scope!r}, layers={self.to_dict()['layers']})"

    def set_alpha(self, alpha: float | Sequence[float] | torch.Tensor) -> None:
        """Change alpha, also while active (the next attention call uses it)."""
        self.alpha = validate_alpha(alpha)
        if self.state is not None:
            self.state.set_alpha(self.alpha)

    def pin(self, prompt_length: int, image_mask: torch.Tensor) -> None:
        """While active: target position prompt_length-1 with this image mask (B, prompt_length), instead of
        capturing the prompt from the next call that starts a sequence."""
        self._require_active().pin(prompt_length, image_mask)

    def unpin(self) -> None:
        self._require_active().unpin()

    def __enter__(self) -> "ScalingVis":
        if self.state is not None:
            raise RuntimeError("this ScalingVis is already active; create a new one to nest")
        _refuse_sliding_window_config(self.model)
        attention.register()
        self.state = ScalingState(_lm_attention_modules(self.model), _image_token_id(self.model), self.alpha,
                                  self.scope, self.layers)
        state_module.push(self.state)
        try:
            self._hook = self.model.register_forward_pre_hook(self._observe_call, with_kwargs=True)
            self._previous_implementation = self.model.config.get_text_config()._attn_implementation
            self.model.set_attn_implementation({"text_config": attention.ATTENTION_NAME})
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def _teardown(self) -> None:
        try:
            if self._previous_implementation is not None:
                self.model.set_attn_implementation({"text_config": self._previous_implementation})
        finally:
            if self._hook is not None:
                self._hook.remove()
            state_module.remove(self.state)
            self.state, self._hook, self._previous_implementation = None, None, None

    def _observe_call(self, module, args, kwargs) -> None:
        past = kwargs.get("past_key_values")
        if past is not None and past.get_seq_length() > 0:
            return
        _refuse_right_padding(kwargs.get("attention_mask"))
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        self.state.observe_prompt(input_ids)

    def _require_active(self) -> ScalingState:
        if self.state is None:
            raise RuntimeError("pin()/unpin() need an active ScalingVis (inside its with-block)")
        return self.state


def validate_alpha(alpha):
    """Alpha as given (float or per-row tensor), after checking every value is a finite number >= 0."""
    values = torch.as_tensor(alpha, dtype=torch.float32).flatten()
    if values.numel() == 0:
        raise ToolkitError("alpha is empty; give one value or one per batch row")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ToolkitError(f"alpha must be finite and >= 0 (0 removes image attention of the targeted row, 1 "
                           f"leaves it unchanged), got {values.tolist()}")
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        return float(alpha)
    return values if values.numel() > 1 else float(values[0])


def _validate_layers(layers: Iterable[int], model) -> frozenset[int]:
    count = model.config.get_text_config().num_hidden_layers
    chosen = frozenset(int(i) for i in layers)
    bad = sorted(i for i in chosen if not 0 <= i < count)
    if bad or not chosen:
        raise ToolkitError(f"layers must be indices in [0, {count}) of the language model, got {sorted(chosen)}")
    return chosen


def _hf_model(model_or_vlm):
    from model_zoo.vlm import VLM

    return model_or_vlm.model if isinstance(model_or_vlm, VLM) else model_or_vlm


def _language_model(model):
    for path in _LM_PATHS:
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if module is not None:
            return module
    raise ToolkitError(f"cannot find the language model inside {type(model).__name__}; supported layouts keep it "
                       f"at one of {', '.join(_LM_PATHS)}")


def _lm_attention_modules(model) -> dict[int, int]:
    """id(attention module) -> layer index, for the language model's causal self-attentions only."""
    modules = {id(m): m.layer_idx for m in _language_model(model).modules()
               if getattr(m, "layer_idx", None) is not None and hasattr(m, "num_key_value_groups")
               and getattr(m, "is_causal", False)}
    if not modules:
        raise ToolkitError(f"found no causal self-attention layers in the language model of {type(model).__name__}")
    return modules


def _image_token_id(model) -> int:
    token_id = getattr(model.config, "image_token_id", None)
    if token_id is None:
        raise ToolkitError(f"{type(model).__name__} has no config.image_token_id; ScalingVis needs it to find "
                           f"image tokens")
    return int(token_id)


def _refuse_sliding_window_config(model) -> None:
    text = model.config.get_text_config()
    layer_types = getattr(text, "layer_types", None) or []
    windowed = "sliding_attention" in layer_types or (getattr(text, "use_sliding_window", False)
                                                      and getattr(text, "sliding_window", None))
    if windowed:
        raise ToolkitError(f"{type(model).__name__} uses sliding-window attention layers, which ScalingVis/AdaptVis "
                           f"do not support yet (key positions would be misread); use a model without them")


def _refuse_right_padding(attention_mask) -> None:
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
        raise ToolkitError("the batch is right-padded; ScalingVis targets the last prompt position, so pad on the "
                           "left (tokenizer.padding_side = 'left', as VLM.prepare does)")


