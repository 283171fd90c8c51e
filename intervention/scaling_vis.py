"""ScalingVis: scale the attention logits of the last prompt position toward image tokens by alpha.

    with ScalingVis(vlm_or_model, alpha=0.8):          # scope="prefill", all layers, as in the paper
        model.generate(**inputs)

Entering switches only the language model to the registered attention function
(`set_attn_implementation({"text_config": ...})`, the vision tower keeps its own) and checks that every
attention module of the language model now runs it, pushes a `ScalingState`, and (unless the prompt is
pinned with `prompt=`) installs a forward pre-hook on the top-level model that captures the prompt (its
length and image-token mask) whenever a call starts a sequence: a call whose cache is absent or empty.
The cache is recognised by its type, not by the keyword it travels under (transformers 5.24 renamed
`past_key_values` to `cache`). A forward hook checks after every forward that all those modules really
called the function. Exiting undoes everything, also on exceptions; nested blocks restore the
enclosing block's state.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from common.errors import ToolkitError
from intervention import rows
from intervention.lm import (Activation, check_every_layer_called, hf_model, lm_attention_modules,
                             prompt_ids, refuse_right_padding, starts_sequence)
from intervention.scopes import SCOPES
from intervention.state import ScalingState

class ScalingVis:
    """Context manager applying ScalingVis to a loaded model (a `VLM` or a transformers VLM).

    alpha: a float >= 0 or one value per batch row (sequence or tensor); 1 leaves the model unchanged
        (the stock SDPA path runs, bit-identical).
    scope: "prefill" scales only the last prompt position (the original code); "all" also every
        generated token.
    layers: language-model layer indices to scale (default: all).
    prompt: (n, image_mask (B, n)) to target position n-1 of these rows, for callers that feed the
        prompt in pieces (a forked cache, then the last prompt token); default: captured from each call
        that starts a sequence.

    `scaled_calls` counts the attention calls that recomputed rows, so a caller can check the
    intervention really reached the model.
    """

    name = "scaling_vis"

    def __init__(self, model_or_vlm, alpha: float | Sequence[float] | torch.Tensor = 1.0, scope: str = "prefill",
                 layers: Iterable[int] | None = None, prompt: tuple[int, torch.Tensor] | None = None):
        self.model = hf_model(model_or_vlm)
        self.alpha = validate_alpha(alpha)
        if scope not in SCOPES:
            raise ToolkitError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        self.scope = scope
        self.layers = None if layers is None else _validate_layers(layers, self.model)
        self.prompt = prompt
        self.state: ScalingState | None = None
        self._activation: Activation | None = None
        self._scaled_calls = 0

    @property
    def scaled_calls(self) -> int:
        """Attention calls that recomputed rows, in the current (or else the last) with-block."""
        return self._scaled_calls if self.state is None else self.state.scaled_calls

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

    def __enter__(self) -> "ScalingVis":
        if self.state is not None:
            raise RuntimeError("this ScalingVis is already active; create a new one to nest")
        _refuse_sliding_window_config(self.model)
        state = ScalingState(lm_attention_modules(self.model), _image_token_id(self.model), self.alpha, self.scope,
                             self.layers, self.prompt)
        self._activation = Activation(self.model, state, self._install_hooks)
        self.state = state
        return self

    def __exit__(self, *exc) -> None:
        self._scaled_calls = self.state.scaled_calls
        self._activation.close()
        self.state, self._activation = None, None

    def _install_hooks(self, hooks: list) -> None:
        if self.prompt is None:
            hooks.append(self.model.register_forward_pre_hook(self._observe_call, with_kwargs=True))
        hooks.append(self.model.register_forward_hook(self._check_called))

    def _observe_call(self, module, args, kwargs) -> None:
        if starts_sequence(kwargs):
            refuse_right_padding(kwargs.get("attention_mask"), "ScalingVis targets the last prompt position")
            self.state.observe_prompt(prompt_ids(args, kwargs))

    def _check_called(self, module, args, output) -> None:
        if rows.is_innermost(self.state):  # else a nested ScalingVis on the same model answers for this forward
            check_every_layer_called(self.state, self.model, "ScalingVis would not apply alpha there")


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
