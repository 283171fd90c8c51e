"""The method registry: every method is one `Method` object, registered under its name.

A method declares what the rest of the toolkit derives from it (the CLI flags and grids, run-folder
names, config.json, the val selection, report rows and plots):

* its name, title (report row) and paper;
* its hyper-parameters (`Hyperparameter`: flag, type, default, valid range, where the default comes
  from); hyper-parameters of the same name are shared by the methods that declare them (one flag);
* its run-folder label, and the order in which equally good configurations are preferred in the val
  selection (the smallest intervention first);
* the fields it adds to each samples.jsonl record;
* a `Strategy` that answers a batch for any number of its configurations, and of the other methods
  sharing that strategy (the alpha family shares one prefix-sharing session per batch).

Adding a method is one module that builds a `Method` and calls `register`; nothing else changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from common.errors import ToolkitError


@dataclass(frozen=True)
class Hyperparameter:
    """One setting of a method, as a command-line flag and a config.json field.

    name: the field name (`cd_alpha`); the flag is `--cd-alpha`.
    kind: float, int, str or bool. Non-bool values take comma-separated lists on the command line
        (a grid evaluated in one pass) unless `grid` is False; bool ones are on/off flags.
    default: the published default; None when the method has per-dataset defaults (`Method.defaults_for`).
    source: where the default comes from (paper section, code release).
    low / high: the valid closed range (None = unbounded); choices: the valid values of a str setting.
    short: the abbreviation in run-folder names (`a` in `scaling_vis_a-0.8`) of a hyper-parameter that
        names configurations (grids vary it, the val selection chooses it); "" for options that are
        named only when they differ from their default (`scaling_vis_a-0.8_scope-all`).
    symbol: the name in tables (α).
    specials: words accepted besides numbers (AdaptVis's `--threshold auto`); their meaning is the
        runner's.
    """

    name: str
    kind: type
    default: Any
    help: str
    source: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None
    short: str = ""
    symbol: str = ""
    grid: bool = True
    specials: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """`value` converted to `kind`, or a ToolkitError naming the flag and the valid range."""
        if value is None or (isinstance(value, str) and value in self.specials):
            return value
        try:
            value = _convert(self.kind, value)
        except (TypeError, ValueError):
            raise ToolkitError(f"{self.flag} {value!r} is not a valid {self.kind.__name__}"
                           + (f" (or {', '.join(self.specials)})" if self.specials else "")) from None
        if self.kind in (int, float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ToolkitError(f"{self.flag} {value} is not a finite number")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ToolkitError(f"{self.flag} {value:g} is outside [{_bound(self.low)}, {_bound(self.high)}]: "
                                   f"{self.help}")
        if self.choices is not None and value not in self.choices:
            raise ToolkitError(f"{self.flag} {value!r} is not one of: {', '.join(map(str, self.choices))}")
        return value

    def parse(self, text: str) -> tuple:
        """A command-line value: `0.5,0.8` -> (0.5, 0.8), each checked."""
        items = [item.strip() for item in str(text).split(",")]
        if any(not item for item in items):
            raise ToolkitError(f"{self.flag} {text!r} has an empty item; give comma-separated values such as "
                               f"0.5,0.8")
        if len(items) > 1 and not self.grid:
            raise ToolkitError(f"{self.flag} takes one value, got {text!r}")
        return tuple(self.check(item) for item in items)


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return bool(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return kind(value)


def _bound(value: Optional[float]) -> str:
    return "inf" if value is None else f"{value:g}"


class Strategy:
    """How configurations answer a batch. Methods sharing a strategy object are answered together.

    `answer(batch, configurations)` gets a `methods.batch.Batch` and every configuration of the
    methods using this strategy, and returns {configuration: [Answer per row]}.
    """

    name = "strategy"

    def answer(self, batch, configurations: Sequence["Configuration"]) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class Answer:
    """One sample's answer under one configuration: the generated text and the record fields the
    method adds (e.g. alpha, branch)."""

    text: str
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A registered method (see the module docstring).

    defaults_for: dataset -> {hyper-parameter: value} for hyper-parameters whose default depends on the
        dataset (the paper's per-dataset settings); others use `Hyperparameter.default`.
    label: values -> run-folder tag: the name, `short-value` of each labelled hyper-parameter, and
        `name-value` of each other one that differs from its default (`scaling_vis_a-0.8_scope-all`).
    preference: values -> sort key among equally good configurations (smallest intervention first);
        preference_rule says it in words (for the selection's notes).
    record_fields: the fields this method adds to samples.jsonl records (documentation and checks).
    families: the model families it supports (None = all); others get a clear error naming why.
    plot_x: the hyper-parameter on the x axis of the report's curves (default: the last labelled numeric one).
    rank: the order of methods in help texts and tables (the baseline first, then the paper's comparison
        methods, then ScalingVis and AdaptVis, then the peers' methods).
    """

    name: str
    title: str
    paper: str
    description: str
    hyperparameters: tuple[Hyperparameter, ...]
    strategy: Strategy
    record_fields: tuple[str, ...] = ()
    defaults_for: Optional[Callable[[str], dict]] = None
    preference: Optional[Callable[[dict], tuple]] = None
    preference_rule: str = "the first configuration by name"
    families: Optional[tuple[str, ...]] = None
    unsupported_reason: str = ""
    plot_x: Optional[str] = None
    rank: int = 100

    def hyperparameter(self, name: str) -> Hyperparameter:
        for hyperparameter in self.hyperparameters:
            if hyperparameter.name == name:
                return hyperparameter
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hyperparameters)

    def default_values(self, dataset: str) -> dict:
        values = {h.name: h.default for h in self.hyperparameters}
        if self.defaults_for is not None:
            values.update(self.defaults_for(dataset))
        return values

    def label(self, values: dict, number: Optional[Callable[[Any], str]] = None) -> str:
        """`scaling_vis_a-0.8_scope-all`; `number` writes the values (default `format_value`; run folders
        use sortable ones)."""
        number = number or format_value
        parts = []
        for h in self.hyperparameters:
            value = values.get(h.name, h.default)
            if h.short:
                parts.append(f"{h.short}-{number(value)}")
            elif value != h.default:
                parts.append(f"{h.name}-{number(value)}")
        return "_".join([self.name, *parts])

    def preference_key(self, values: dict) -> tuple:
        return self.preference(values) if self.preference is not None else ()

    def check_family(self, family: str) -> None:
        if self.families is not None and family not in self.families:
            raise ToolkitError(f"method {self.name} does not apply to {family} models: {self.unsupported_reason}")


def format_value(value: Any) -> str:
    """A value as written on the command line and in folder names: 0.8, 2, low, true, auto (None: "none").

    Numbers are short when that reads back as the same float, else every digit they take (an auto
    threshold such as 0.6123456789 must reach the test run exactly).
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


@dataclass(frozen=True)
class Configuration:
    """One configuration of one method: the method's name and the value of each of its hyper-parameters
    (hashable, so configurations key dictionaries and sets)."""

    method: str
    values: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, method: str, **values) -> "Configuration":
        """A configuration with the method's defaults (not per-dataset) for what `values` leaves out."""
        entry = get_method(method)
        unknown = sorted(set(values) - set(entry.names))
        if unknown:
            raise ToolkitError(f"{method} has no hyper-parameter {', '.join(unknown)}; its hyper-parameters are "
                               f"{', '.join(entry.names) or 'none'}")
        merged = {h.name: h.default for h in entry.hyperparameters}
        merged.update(values)
        return cls(method, tuple((name, entry.hyperparameter(name).check(merged[name])) for name in entry.names))

    @property
    def entry(self) -> Method:
        return get_method(self.method)

    @property
    def hyperparameters(self) -> dict:
        return dict(self.values)

    def get(self, name: str, default: Any = None) -> Any:
        return self.hyperparameters.get(name, default)

    def label(self) -> str:
        return self.entry.label(self.hyperparameters)


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method; a hyper-parameter shared with another method must be declared identically."""
    for other in _METHODS.values():
        for mine in method.hyperparameters:
            theirs = next((h for h in other.hyperparameters if h.name == mine.name), None)
            if theirs is not None and theirs != mine and other.name != method.name:
                raise ValueError(f"{method.name} declares --{mine.name} differently from {other.name}")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise ToolkitError(f"unknown method {name!r}; choose one of: {', '.join(method_names())}") from None


def all_methods() -> tuple[Method, ...]:
    """Every registered method, in `rank` order."""
    return tuple(sorted(_METHODS.values(), key=lambda m: m.rank))


def method_names() -> tuple[str, ...]:
    return tuple(m.name for m in all_methods())


def all_hyperparameters() -> dict[str, Hyperparameter]:
    """Every hyper-parameter of every method, once per name (shared ones are identical)."""
    found: dict[str, Hyperparameter] = {}
    for method in all_methods():
        for hyperparameter in method.hyperparameters:
            found.setdefault(hyperparameter.name, hyperparameter)
    return found


def methods_taking(name: str) -> tuple[str, ...]:
    return tuple(m.name for m in all_methods() if name in m.names)


def check_requested(methods: Iterable[str], given: Iterable[str]) -> None:
    """Every method exists, and every hyper-parameter given is used by at least one requested method."""
    methods = tuple(methods)
    for name in methods:
        get_method(name)
    for name in given:
        takers = methods_taking(name)
        if not takers:
            raise ToolkitError(f"unknown hyper-parameter --{name.replace('_', '-')}; known: "
                               f"{', '.join(h.flag for h in all_hyperparameters().values())}")
        if not set(takers) & set(methods):
            raise ToolkitError(f"--{name.replace('_', '-')} is a hyper-parameter of {', '.join(takers)}, which "
                               f"the requested methods ({', '.join(methods)}) do not include; add --method "
                               f"{takers[0]} or drop the flag")
