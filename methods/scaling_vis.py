"""ScalingVis (Chen et al., ICML 2025, §4.1): one alpha for every sample."""
from __future__ import annotations

from methods.alpha import ALPHA, SCOPE, AlphaMethod, constant_alpha, paper_defaults
from methods.registry import Hyperparameter, register

WEIGHT = Hyperparameter(
    "weight", float, None, "ScalingVis alpha, e.g. 0.8 or 0.5,0.8,1.2 (0 removes the image attention of the "
    "scaled row, 1 is the model itself)", source="the paper's per-dataset values (original run.sh)", low=0.0,
    short="a", symbol="α")


def _closest_to_one(values: dict) -> tuple:
    # Rounded so that 0.8 and 1.2 count as equally far from 1 despite binary floating point.
    return (round(abs(values["weight"] - 1.0), 9), values["weight"])


SCALING_VIS = register(AlphaMethod(
    name="scaling_vis", title="ScalingVis", paper="Chen et al., ICML 2025 (§4.1)",
    description="multiply the last prompt token's attention logits toward image tokens by alpha",
    hyperparameters=(WEIGHT, SCOPE), strategy=ALPHA, rank=50, record_fields=("confidence", "alpha"),
    defaults_for=paper_defaults("weight"), preference_rule="the weight closest to 1, then the smaller weight", preference=_closest_to_one,
    choose=lambda values, confidence: constant_alpha(values["weight"], len(confidence))))
