"""The page's method controls, derived from the method registry: one control per hyper-parameter, its range,
step and default, and the way back from the controls' values to a registry `Configuration`.

Nothing here names a method: a method added to the registry gets its controls without a change to the demo.
Torch-free, so the page can be laid out before the model loads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from common.errors import ToolkitError
from methods import Configuration, Hyperparameter, all_hyperparameters, all_methods, get_method

SLIDER = "slider"
CHOICE = "choice"
CHECKBOX = "checkbox"
TEXT = "text"

# A hyper-parameter without an upper (lower) bound, such as ScalingVis' alpha, still needs a slider end: twice
# its default (minus that), and at least this far from 0, which covers the paper's alpha grid (0.5 ... 2.0).
UNBOUNDED_SPAN = 2.0


@dataclass(frozen=True)
class Control:
    """How one hyper-parameter is set on the page.

    kind: SLIDER (int/float), CHOICE (str with choices), CHECKBOX (bool) or TEXT (any other str).
    minimum / maximum / step: the slider's range; value: the method's default for the demo's dataset.
    """

    name: str
    label: str
    info: str
    kind: str
    value: Any
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    step: Optional[float] = None
    choices: tuple = ()


def control_names() -> tuple[str, ...]:
    """Every hyper-parameter of every registered method, once (shared ones such as scope appear once); the page
    lays out one control per name in this order and passes their values in it."""
    return tuple(all_hyperparameters())


def method_choices() -> list[tuple[str, str]]:
    """(shown text, method name) for the method picker, in the registry's order."""
    return [(f"{method.title} ({method.name})", method.name) for method in all_methods()]


def controls_for(method: str, dataset: str) -> list[Control]:
    """The controls of `method`'s hyper-parameters, set to its defaults for `dataset`."""
    entry = get_method(method)
    defaults = entry.default_values(dataset)
    return [_control(h, defaults.get(h.name)) for h in entry.hyperparameters]


def _control(h: Hyperparameter, default: Any) -> Control:
    label = f"{h.symbol} ({h.name})" if h.symbol else h.name
    info = h.help + (f" [default: {h.source}]" if h.source else "")
    if h.kind is bool:
        return Control(h.name, label, info, CHECKBOX, bool(default))
    if h.kind is str:
        if h.choices:
            return Control(h.name, label, info, CHOICE, default, choices=tuple(h.choices))
        return Control(h.name, label, info, TEXT, "" if default is None else default)
    value = default if default is not None else (h.low if h.low is not None else 0.0)
    span = max(UNBOUNDED_SPAN, 2 * abs(value))
    low = h.low if h.low is not None else -span
    high = h.high if h.high is not None else span
    step = 1 if h.kind is int else _float_step(high - low)
    return Control(h.name, label, info, SLIDER, value, minimum=low, maximum=high, step=step)


def _float_step(span: float) -> float:
    """A step giving 100-1000 positions over the span: 0.01 for [0, 1] or [0, 2]."""
    return 10.0 ** (math.floor(math.log10(span)) - 2) if span > 0 else 0.01


def configuration_from(method: str, names: Sequence[str], values: Sequence[Any]) -> Configuration:
    """The registry configuration of `method` from the page's control values (in `names` order; the values of
    other methods' controls are ignored). Out-of-range or malformed values raise the registry's ToolkitError,
    which names the setting and its valid range."""
    entry = get_method(method)
    given = dict(zip(names, values))
    chosen = {}
    for h in entry.hyperparameters:
        value = given.get(h.name)
        if value is None or (isinstance(value, str) and not value.strip() and h.kind is not str):
            raise ToolkitError(f"{h.name} has no value; set it with its control")
        chosen[h.name] = _from_page(h, value)
    return Configuration.of(method, **chosen)


def _from_page(h: Hyperparameter, value: Any) -> Any:
    # Sliders hand over floats (3.0 for an int setting); the registry refuses 3.5 for an int, as it should.
    if h.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if h.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
