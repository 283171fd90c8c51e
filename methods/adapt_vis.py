"""AdaptVis (Chen et al., ICML 2025, §4.2): alpha per sample from the alpha = 1 first-token confidence."""
from __future__ import annotations

from methods.alpha import ALPHA, SCOPE, AlphaChoice, AlphaMethod, paper_defaults
from methods.registry import Hyperparameter, register

WEIGHT1 = Hyperparameter("weight1", float, None, "AdaptVis alpha when the confidence is below the threshold (< 1)",
                         source="the paper's per-dataset values (original run.sh)", low=0.0, short="w1",
                         symbol="α₁")
WEIGHT2 = Hyperparameter("weight2", float, None, "AdaptVis alpha when the confidence is at least the threshold "
                         "(> 1)", source="the paper's per-dataset values (original run.sh)", low=0.0, short="w2",
                         symbol="α₂")
THRESHOLD = Hyperparameter("threshold", float, None, "AdaptVis confidence threshold beta, compared with a "
                           "probability; auto (yes/no tasks): the paper's rule, the mean over the labels of the "
                           "val split's mean alpha = 1 confidence", source="the paper's per-dataset values "
                           "(original run.sh); auto: paper appendix E.3", low=0.0, high=1.0, short="t",
                           symbol="β", specials=("auto",))
ROUND_CONFIDENCE = Hyperparameter(
    "round_confidence", bool, True, "round the confidence to 2 decimals before comparing it (as the original)",
    source="original code (llava15.py)", grid=False)


def choose(values: dict, confidence) -> list[AlphaChoice]:
    from intervention.adapt_vis import AdaptVis  # torch: imported when a batch is answered

    rule = AdaptVis(weight1=values["weight1"], weight2=values["weight2"], threshold=values["threshold"],
                    round_confidence=values["round_confidence"])
    alphas, branches, compared = rule.decide(confidence)
    return [AlphaChoice(float(alpha), {"confidence_rounded": shown, "branch": branch})
            for alpha, branch, shown in zip(alphas, branches, rule.recorded_confidence(compared))]


def _smallest_intervention(values: dict) -> tuple:
    return (round(abs(values["weight1"] - 1.0), 9) + round(abs(values["weight2"] - 1.0), 9), values["threshold"],
            values["weight1"], values["weight2"])


ADAPT_VIS = register(AlphaMethod(
    name="adapt_vis", title="AdaptVis", paper="Chen et al., ICML 2025 (§4.2)",
    description="alpha = weight1 if the alpha = 1 first-token confidence < threshold else weight2",
    hyperparameters=(WEIGHT1, WEIGHT2, THRESHOLD, SCOPE, ROUND_CONFIDENCE), strategy=ALPHA,
    rank=60, record_fields=("confidence", "alpha", "confidence_rounded", "branch"),
    defaults_for=paper_defaults("weight1", "weight2", "threshold"), preference_rule="the smallest |weight1-1|+|weight2-1|, then the smaller threshold, weight1, weight2", preference=_smallest_intervention,
    choose=choose))
