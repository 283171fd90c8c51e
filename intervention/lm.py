"""The language model inside a VLM: its attention modules, and switching them to the registered function.

Every intervention that edits or reads attention rows (`intervention.rows`) needs the language model to
run the registered attention function, and only the language model: `RegisteredAttention` switches the
text sub-config (the vision tower keeps its own implementation), checks that every attention module of
the language model now looks the function up, and restores the previous implementation on exit.
"""
from __future__ import annotations

from common.errors import ToolkitError
from intervention import attention
from intervention.compat import attention_implementation

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
