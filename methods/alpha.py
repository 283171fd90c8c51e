"""The alpha family (Baseline, ScalingVis, AdaptVis): methods that give each sample an attention scaling
alpha, answered together on one prefix-sharing session per batch.

Each method of the family supplies a rule `choose(values, confidence) -> [AlphaChoice per row]` from
the alpha = 1 first-token confidence. `AlphaStrategy` opens one session per batch (and per scope),
asks every configuration for its alphas, and generates each distinct (row, alpha) pair once, all of
them in as few batched branches as memory allows (`plan_alpha_rounds`, `answer_rounds`): a whole
ScalingVis sweep plus an AdaptVis grid costs what its distinct alphas cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from intervention.scopes import SCOPES
from methods.registry import Answer, Configuration, Hyperparameter, Method, Strategy

SCOPE = Hyperparameter(
    "scope", str, "prefill", "prefill: scale only the last prompt token (the original); all: every generated one too",
    source="original code (prefill only)", choices=SCOPES, grid=False)

# The paper's per-dataset settings (original run.sh at 4b96c54, comments L9-24), used when a method's
# hyper-parameters are not given on the command line. VSR's AdaptVis line is labelled Controlled_B in
# the original; it is most likely VSR (see README, differences from the original code).
PAPER_SETTINGS = {
    "Controlled_Images_A": {"weight": 0.8, "weight1": 0.5, "weight2": 1.5, "threshold": 0.4},
    "Controlled_Images_B": {"weight": 0.8, "weight1": 0.5, "weight2": 1.5, "threshold": 0.35},
    "COCO_QA_one_obj": {"weight": 1.2, "weight1": 0.5, "weight2": 1.2, "threshold": 0.3},
    "COCO_QA_two_obj": {"weight": 1.2, "weight1": 0.5, "weight2": 1.2, "threshold": 0.3},
    "VG_QA_one_obj": {"weight": 2.0, "weight1": 0.5, "weight2": 2.0, "threshold": 0.2},
    "VG_QA_two_obj": {"weight": 2.0, "weight1": 0.5, "weight2": 2.0, "threshold": 0.2},
    "VSR": {"weight": 0.5, "weight1": 0.5, "weight2": 1.2, "threshold": 0.64},
}
PAPER_SETTINGS["VSR_zeroshot"] = PAPER_SETTINGS["VSR"]
PAPER_SETTINGS["VSR_random"] = PAPER_SETTINGS["VSR"]
PAPER_SETTINGS["Synthetic_Controlled_A"] = PAPER_SETTINGS["Controlled_Images_A"]
PAPER_SETTINGS["Synthetic_Controlled_B"] = PAPER_SETTINGS["Controlled_Images_B"]
FALLBACK_SETTINGS = PAPER_SETTINGS["Controlled_Images_A"]


def paper_defaults(*names: str) -> Callable[[str], dict]:
    """dataset -> the paper's values of `names` for that dataset (Controlled_A's for other datasets)."""
    def defaults(dataset: str) -> dict:
        settings = PAPER_SETTINGS.get(dataset, FALLBACK_SETTINGS)
        return {name: settings[name] for name in names}
    return defaults


@dataclass(frozen=True)
class AlphaChoice:
    """The alpha one configuration gives one sample, and the record fields explaining it."""

    alpha: float
    fields: Optional[dict] = None


@dataclass(frozen=True)
class AlphaMethod(Method):
    """A method of the alpha family: `choose(values, confidence (B,)) -> [AlphaChoice] * B`."""

    choose: Callable = None


class AlphaStrategy(Strategy):
    """One prefix-sharing session per batch and scope for every alpha-family configuration."""

    name = "alpha"

    def answer(self, batch, configurations: Sequence[Configuration]) -> dict:
        from intervention.session import open_session  # torch: imported when a batch is answered

        answers: dict = {}
        for scope, group in _by_scope(configurations).items():
            session = open_session(batch.vlm, batch.inputs, max_new_tokens=batch.max_new_tokens, scope=scope,
                                   engine=batch.engine)
            confidence = session.confidence.float().cpu()
            choices = {config: config.entry.choose(config.hyperparameters, confidence) for config in group}
            texts = answer_rounds(session, list(choices.values()))
            for config, rows in choices.items():
                answers[config] = [Answer(texts[(row, choice.alpha)],
                                          {"confidence": float(confidence[row]), "alpha": choice.alpha,
                                           **(choice.fields or {})})
                                   for row, choice in enumerate(rows)]
        return answers


ALPHA = AlphaStrategy()


def _by_scope(configurations: Sequence[Configuration]) -> dict[str, list[Configuration]]:
    """Configurations per scope; the baseline (alpha = 1 under any scope) joins the first group."""
    groups: dict[str, list[Configuration]] = {}
    for config in configurations:
        if "scope" in config.hyperparameters:
            groups.setdefault(config.get("scope"), []).append(config)
    unscoped = [config for config in configurations if "scope" not in config.hyperparameters]
    if unscoped:
        groups.setdefault(next(iter(groups), "prefill"), []).extend(unscoped)
    return groups


def plan_alpha_rounds(needed: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per-row alpha vectors covering every (row, alpha) pair in as few session calls as possible.

    Row i needs the distinct alphas `needed[i]`; call r gives row i its r-th alpha (or repeats its
    last one, whose answer is then already known). The number of calls is the largest number of
    distinct alphas any row needs: 1 for a single AdaptVis configuration, K for a K-alpha sweep.
    """
    distinct = [sorted(set(row)) for row in needed]
    rounds = max((len(row) for row in distinct), default=0)
    return [[row[min(r, len(row) - 1)] for row in distinct] for r in range(rounds)]


def answer_rounds(session, choices_per_configuration: Sequence[list[AlphaChoice]]) -> dict[tuple[int, float], str]:
    """Each sample's answer at every alpha some configuration chose for it.

    All rounds go to the session at once (`answers_rounds`): the prefix engine then runs every
    distinct (row, alpha) pair once, batched.
    """
    n_rows = len(choices_per_configuration[0])
    needed = [[choices[row].alpha for choices in choices_per_configuration] for row in range(n_rows)]
    rounds = plan_alpha_rounds(needed)
    texts: dict[tuple[int, float], str] = {}
    for alphas, round_texts in zip(rounds, session.answers_rounds(rounds)):
        for row, (alpha, text) in enumerate(zip(alphas, round_texts)):
            texts.setdefault((row, alpha), text)
    return texts


def constant_alpha(alpha: float, rows: int) -> list[AlphaChoice]:
    return [AlphaChoice(float(alpha))] * rows
