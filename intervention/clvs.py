"""CLVS: Cross-Layer Vision Smoothing (Zhao et al. 2025), through the registered attention function.

    from intervention import CLVS, ClvsSmoothing
    answers = CLVS(lam=0.7, beta=0.8, tau=0.5).run(vlm, inputs, max_new_tokens=10)
    answers[0].text, answers[0].stop_layer, answers[0].stop_layers

    with ClvsSmoothing(vlm, lam=[0.7, 1.0]) as smoothing:     # one value per batch row, like ScalingVis
        vlm.model.generate(**inputs, max_new_tokens=10)
    smoothing.stop_layers                                      # per row, per generating position

What it computes is in `intervention.clvs_state`; the choices the paper leaves open are in the README
("CLVS"). `ClvsSmoothing` is the context manager (as `ScalingVis`): entering switches the language model
to the registered attention function (and checks it), pushes a `ClvsState` on the row-editor stack, and
installs forward hooks: on each decoder layer (memory commit and the logit-lens stop check, on the
layer's output), on the top-level model before each call (the prompt's length and image tokens, when a
call starts a sequence) and after it (every attention module really ran the function). Exiting undoes
everything, also after an exception.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from transformers import BatchFeature

from common.errors import ToolkitError
from intervention import compat, rows
from intervention.clvs_defaults import BETA, LAMBDA, SCOPE, TAU
from intervention.clvs_state import ClvsState
from intervention.lm import (Activation, check_every_layer_called, hf_model, language_model,
                             lm_attention_modules, prompt_ids, refuse_right_padding, starts_sequence)
from intervention.scopes import SCOPES


@dataclass(frozen=True)
class ClvsAnswer:
    """One sample's CLVS answer: the text, and the stop layer of its first token and of each answer token
    that ran under CLVS (None: smoothed through the last layer, or lam = 1)."""

    text: str
    stop_layer: int | None
    stop_layers: tuple

    def to_dict(self) -> dict:
        return asdict(self)


def check_setting(name: str, value) -> float | torch.Tensor:
    """A CLVS setting as given (float, or a per-row tensor) after checking every value is in [0, 1]."""
    values = torch.as_tensor(value, dtype=torch.float32).flatten()
    if values.numel() == 0:
        raise ToolkitError(f"CLVS {name} is empty; give one value or one per batch row")
    if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ToolkitError(f"CLVS {name} must be in [0, 1] ({_MEANING[name]}), got {values.tolist()}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return values if values.numel() > 1 else float(values[0])


def check_settings(lam, beta, tau) -> tuple:
    return check_setting("lam", lam), check_setting("beta", beta), check_setting("tau", tau)


_MEANING = {"lam": "the weight kept on the layer's own image attention; 1 leaves the model unchanged",
            "beta": "the weight kept on the memory at each update",
            "tau": "the normalised entropy below which smoothing stops; 0 never stops"}


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ToolkitError(f"unknown CLVS scope {scope!r}; use one of {', '.join(SCOPES)}")
    return scope


class ClvsSmoothing:
    """Context manager applying CLVS to a loaded model (a `VLM` or a transformers VLM).

    lam, beta, tau: floats in [0, 1] or one value per batch row (lam = 1: the row is untouched).
    scope: "all" (default) smooths the last prompt position and every generated token's row; "prefill"
        only the last prompt position.
    prompt: (n, image_mask (B, n)) for callers that feed the prompt in pieces (a forked cache, then the
        last prompt token); default: observed at each call that starts a sequence.
    """

    name = "clvs"

    def __init__(self, model_or_vlm, lam=LAMBDA, beta=BETA, tau=TAU, scope: str = SCOPE,
                 prompt: tuple[int, torch.Tensor] | None = None):
        self.model = hf_model(model_or_vlm)
        self.lam, self.beta, self.tau = check_settings(lam, beta, tau)
        self.scope = check_scope(scope)
        self.prompt = prompt
        self.state: ClvsState | None = None
        self._last: ClvsState | None = None
        self._activation: Activation | None = None

    @property
    def stop_layers(self) -> list[list[int | None]]:
        """Per batch row, the stop layer at each generating position of the current (or last) sequence."""
        state = self.state or self._last
        return [] if state is None else state.stop_layers()

    @property
    def planned_calls(self) -> int:
        """Attention calls that recomputed generating rows (a check that CLVS reached the model)."""
        state = self.state or self._last
        return 0 if state is None else state.planned_calls

    def to_dict(self) -> dict:
        return _record(self)

    def __repr__(self) -> str:
        values = self.to_dict()
        return f"ClvsSmoothing(lam={values['lam']}, beta={values['beta']}, tau={values['tau']}, scope={self.scope!r})"

    def __enter__(self) -> "ClvsSmoothing":
        if self.state is not None:
            raise RuntimeError("this ClvsSmoothing is already active; create a new one to nest")
        _refuse_sliding_window(self.model)
        lm = language_model(self.model)
        layers = compat.decoder_layers(lm)
        modules = lm_attention_modules(self.model)
        state = ClvsState(modules, _image_token_id(self.model), len(layers), self.lam, self.beta, self.tau,
                          self.scope, (compat.final_norm(lm), _lm_head(self.model)), self.prompt)
        for position, layer in enumerate(layers):
            _check_layer_index(layer, position, modules)
        self._activation = Activation(self.model, state, lambda hooks: self._install_hooks(hooks, state, layers))
        self.state = state
        return self

    def __exit__(self, *exc) -> None:
        self._activation.close()
        self._last, self.state, self._activation = self.state, None, None

    def _install_hooks(self, hooks: list, state: ClvsState, layers) -> None:
        if self.prompt is None:
            hooks.append(self.model.register_forward_pre_hook(self._observe_call, with_kwargs=True))
        for position, layer in enumerate(layers):
            hooks.append(layer.register_forward_hook(_layer_hook(state, position)))
        hooks.append(self.model.register_forward_hook(self._check_called))

    def _observe_call(self, module, args, kwargs) -> None:
        if starts_sequence(kwargs):
            refuse_right_padding(kwargs.get("attention_mask"), "CLVS smooths the last prompt position")
            self.state.observe_prompt(prompt_ids(args, kwargs))

    def _check_called(self, module, args, output) -> None:
        if rows.is_innermost(self.state):  # else a nested editor on the same model answers for this forward
            check_every_layer_called(self.state, self.model, "CLVS would not act there")


def _layer_hook(state: ClvsState, index: int):
    def finish(module, args, output) -> None:
        state.finish_layer(index, compat.layer_hidden_states(output))
    return finish


class CLVS:
    """CLVS(lam=0.7, beta=0.8, tau=0.5, scope="all"): the method, as `AdaptVis` is for ScalingVis.

    `run(vlm, inputs, max_new_tokens)` answers a prepared batch with stock greedy `generate` under
    `ClvsSmoothing`; `on(model)` gives that context manager; `to_dict()` a record.
    """

    name = "clvs"

    def __init__(self, lam=LAMBDA, beta=BETA, tau=TAU, scope: str = SCOPE):
        self.lam, self.beta, self.tau = check_settings(lam, beta, tau)
        self.scope = check_scope(scope)

    def on(self, model_or_vlm, prompt: tuple[int, torch.Tensor] | None = None) -> ClvsSmoothing:
        return ClvsSmoothing(model_or_vlm, self.lam, self.beta, self.tau, self.scope, prompt)

    def to_dict(self) -> dict:
        return _record(self)

    def __repr__(self) -> str:
        values = self.to_dict()
        return f"CLVS(lam={values['lam']}, beta={values['beta']}, tau={values['tau']}, scope={self.scope!r})"

    def run(self, vlm, inputs: BatchFeature, max_new_tokens: int) -> list[ClvsAnswer]:
        """Greedy answers of one prepared batch under CLVS, with each row's stop layers."""
        with self.on(vlm) as smoothing:
            sequences = vlm.generate_ids(inputs, max_new_tokens)
        if smoothing.planned_calls == 0 and _smooths(self.lam):
            raise ToolkitError("CLVS never reached the last prompt position during generate; this transformers "
                               "version runs generation in a way the toolkit does not support")
        return answers_from(vlm, sequences[:, inputs["input_ids"].shape[1]:], smoothing.stop_layers)


def answers_from(vlm, tokens: torch.Tensor, stop_layers: Sequence[Sequence]) -> list[ClvsAnswer]:
    """`ClvsAnswer`s from generated tokens (B, T) and the stop layers of each row's generating positions,
    cut to the answer: a row's positions after its end token only decoded padding."""
    texts = vlm.decode_new_tokens(tokens, 0)
    lengths = answer_lengths(tokens, vlm)
    answers = []
    for row, text in enumerate(texts):
        stops = tuple(stop_layers[row][:lengths[row]]) if stop_layers else ()
        answers.append(ClvsAnswer(text, stops[0] if stops else None, stops))
    return answers


def answer_lengths(tokens: torch.Tensor, vlm) -> list[int]:
    """Per row, the number of tokens up to and including its first end token (all of them if none)."""
    eos = vlm.model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    ended = torch.isin(tokens, torch.tensor(eos, dtype=tokens.dtype, device=tokens.device))
    first_end = torch.where(ended.any(-1), ended.int().argmax(-1) + 1, tokens.shape[1])
    return first_end.tolist()


def _record(clvs) -> dict:
    def plain(value):
        return value.tolist() if isinstance(value, torch.Tensor) else value
    return {"method": "clvs", "lam": plain(clvs.lam), "beta": plain(clvs.beta), "tau": plain(clvs.tau),
            "scope": clvs.scope}


def _smooths(lam) -> bool:
    return bool((torch.as_tensor(lam) != 1.0).any())


def _image_token_id(model) -> int:
    token_id = getattr(model.config, "image_token_id", None)
    if token_id is None:
        raise ToolkitError(f"{type(model).__name__} has no config.image_token_id; CLVS needs it to find image tokens")
    return int(token_id)


def _lm_head(model) -> torch.nn.Module:
    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise ToolkitError(f"{type(model).__name__} exposes no output embeddings (lm_head), which CLVS's logit lens "
                           f"needs; load the model with its language-model head (a *ForConditionalGeneration class)")
    return head


def _check_layer_index(layer, position: int, modules: dict[int, int]) -> None:
    """The decoder layer at `position` holds the attention module of that layer index (the stop check and
    the memory are keyed by it)."""
    indices = {modules[id(m)] for m in layer.modules() if id(m) in modules}
    if indices != {position}:
        raise compat.TransformersChanged(f"the decoder layers' order (layer {position} holds attention layer(s) "
                                         f"{sorted(indices)})")


def _refuse_sliding_window(model) -> None:
    # A sliding-window cache keeps only the window's keys, so key index != position and the image columns
    # and the generating row would be misread.
    text = model.config.get_text_config()
    windowed = "sliding_attention" in (getattr(text, "layer_types", None) or []) or (
        getattr(text, "use_sliding_window", False) and getattr(text, "sliding_window", None))
    if windowed:
        raise ToolkitError(f"{type(model).__name__} uses sliding-window attention layers, which CLVS does not "
                           f"support (key positions would be misread); use a model without them")
