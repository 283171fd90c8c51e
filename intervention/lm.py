"""The language model inside a VLM: its attention modules, and switching them to the registered function.

Every intervention that edits or reads attention rows (`intervention.rows`) needs the language model to
run the registered attention function, and only the language model: `RegisteredAttention` switches the
text sub-config (the vision tower keeps its own implementation), checks that every attention module of
the language model now looks the function up, and restores the previous implementation on exit.
"""
from __future__ import annotations

from typing import Callable

from common.errors import ToolkitError
from intervention import attention, rows
from intervention.compat import Cache, attention_implementation

_LM_PATHS = ("model.language_model", "language_model", "model.text_model")


def hf_model(model_or_vlm):
    """The transformers model of a `VLM`, or the argument itself."""
    from model_zoo.vlm import VLM

    return model_or_vlm.model if isinstance(model_or_vlm, VLM) else model_or_vlm


def language_model(model):
    for path in _LM_PATHS:
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if module is not None:
            return module
    raise ToolkitError(f"cannot find the language model inside {type(model).__name__}; supported layouts keep it "
                       f"at one of {', '.join(_LM_PATHS)}")


def lm_attention_modules(model) -> dict[int, int]:
    """id(attention module) -> layer index, for the language model's causal self-attentions only."""
    modules = {id(m): m.layer_idx for m in language_model(model).modules()
               if getattr(m, "layer_idx", None) is not None and hasattr(m, "num_key_value_groups")
               and getattr(m, "is_causal", False)}
    if not modules:
        raise ToolkitError(f"found no causal self-attention layers in the language model of {type(model).__name__}")
    return modules


def starts_sequence(kwargs: dict) -> bool:
    """Whether a forward (its kwargs, seen by a pre-hook) starts a sequence: no cache, or an empty one.
    The cache is found by type, not by its keyword, which transformers renamed (`intervention.compat`)."""
    cache = next((value for value in kwargs.values() if isinstance(value, Cache)), None)
    return cache is None or cache.get_seq_length() == 0


def prompt_ids(args: tuple, kwargs: dict):
    """The `input_ids` a forward pre-hook sees (keyword or first positional argument), or None."""
    return kwargs.get("input_ids", args[0] if args else None)


def refuse_right_padding(attention_mask, reads: str) -> None:
    """Row interventions act on the last prompt position, which right padding fills with a pad token.
    `reads`: what the caller does there, for the message ("ScalingVis targets the last prompt position")."""
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
        raise ToolkitError(f"the batch is right-padded; {reads}, so pad on the left "
                           f"(tokenizer.padding_side = 'left', as VLM.prepare does)")


def check_every_layer_called(party, model, consequence: str) -> None:
    """After a forward: every language-model attention module of `party` ran the registered function
    (`party.modules_called`, filled by its `note_call`), then start counting afresh.
    `consequence`: what a skipped layer would mean ("ScalingVis would not apply alpha there")."""
    skipped = len(party.module_layers.keys() - party.modules_called)
    party.modules_called.clear()
    if skipped:
        raise ToolkitError(f"{skipped} attention layer(s) of the language model of {type(model).__name__} did not "
                           f"call the toolkit's attention function during this forward, so {consequence}; this "
                           f"model or transformers version routes attention differently and is not supported")


class RegisteredAttention:
    """Context manager: the language model of `model` runs the registered attention function."""

    def __init__(self, model):
        self.model = model
        self._previous: str | None = None

    def __enter__(self) -> "RegisteredAttention":
        attention.register()
        self._previous = attention_implementation(self.model.config.get_text_config())
        self.model.set_attn_implementation({"text_config": attention.ATTENTION_NAME})
        try:
            self._check_switched()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            self.model.set_attn_implementation({"text_config": self._previous})
            self._previous = None

    def _check_switched(self) -> None:
        modules = lm_attention_modules(self.model)
        lm_modules = [m for m in language_model(self.model).modules() if id(m) in modules]
        wrong = {attention_implementation(m) for m in lm_modules} - {attention.ATTENTION_NAME}
        if wrong:
            raise ToolkitError(f"could not switch the language model of {type(self.model).__name__} to the "
                               f"toolkit's attention function (it still runs {', '.join(sorted(map(str, wrong)))}); "
                               f"this model's configuration does not expose its language model as 'text_config'")


class Activation:
    """What a row intervention holds while active: `party` on the row stack (`intervention.rows`), the
    language model of `model` switched to the registered function, and the hooks `install(hooks)` appends
    to its list. `close()` undoes all three, also when entering failed half-way."""

    def __init__(self, model, party: rows.RowParty, install: Callable[[list], None]):
        self.party = party
        self._switch: RegisteredAttention | None = None
        self._hooks: list = []
        rows.push(party)
        try:
            self._switch = RegisteredAttention(model).__enter__()
            install(self._hooks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            if self._switch is not None:
                self._switch.__exit__()
        finally:
            for hook in self._hooks:
                hook.remove()
            rows.remove(self.party)
            self._switch, self._hooks = None, []
