"""Methods by name: `get_method("adapt_vis")`, `method_names()`, and the `Configuration`s the runner evaluates.

    from methods import Configuration, answer
    config = Configuration.of("scaling_vis", weight=0.8)
    answers = answer(vlm, samples, images, prompts, [config], max_new_tokens=10)

Every method lives in its own module of this package and registers itself (methods.registry); importing
the package imports every module in it, so adding a method is adding its module.
"""
import importlib
import pkgutil

from methods.batch import Batch
from methods.registry import (Answer, Configuration, Hyperparameter, Method, Strategy, all_hyperparameters,
                              all_methods, check_requested, get_method, method_names, methods_taking)

__all__ = ["Answer", "Batch", "Configuration", "Hyperparameter", "Method", "Strategy", "all_hyperparameters",
           "all_methods", "check_requested", "get_method", "method_names", "methods_taking", "answer"]


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def answer(vlm, samples, images, prompts, configurations, *, max_new_tokens: int, engine: str = "prefix",
           inputs=None) -> dict:
    """{configuration: [Answer per sample]} for one batch, each strategy answering its configurations once.
    `inputs`: the batch already prepared (`vlm.prepare(images, prompts)`), if the caller has it."""
    batch = Batch(vlm, samples, images, prompts, max_new_tokens, engine, _inputs=inputs)
    by_strategy: dict = {}
    for config in dict.fromkeys(configurations):
        by_strategy.setdefault(config.entry.strategy, []).append(config)
    answers: dict = {}
    for strategy, group in by_strategy.items():
        answers.update(strategy.answer(batch, group))
    for config in dict.fromkeys(configurations):
        _check_record_fields(config, answers[config])
    return answers


def _check_record_fields(config: Configuration, config_answers: list) -> None:
    """A strategy records exactly the fields its method declares (the README and the report rely on them)."""
    declared = set(config.entry.record_fields)
    for one in config_answers:
        if set(one.fields) != declared:
            raise RuntimeError(f"method {config.method} recorded fields {sorted(one.fields)} but declares "
                               f"{sorted(declared)} (Method.record_fields); make them agree")
