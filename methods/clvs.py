"""CLVS (Zhao et al. 2025, arXiv 2509.12897): Cross-Layer Vision Smoothing of the generating row's image
attention with a vision memory, stopped by the logit lens's uncertainty (intervention.clvs)."""
from __future__ import annotations

from typing import Sequence

from intervention.clvs_defaults import BETA, LAMBDA, PEER_SOURCE as PEER, SCOPE, TAU
from intervention.scopes import SCOPES
from methods.registry import Answer, Configuration, Hyperparameter, Method, Strategy, register

CLVS_LAMBDA = Hyperparameter(
    "clvs_lambda", float, LAMBDA, "CLVS weight lambda of the layer's own image attention in the blend with the "
    "vision memory (1 is the model itself, 0 replaces it by the memory)",
    source=f"{PEER}: --smoothing; its script and app default to 0.8", low=0.0, high=1.0, short="l", symbol="λ")
CLVS_BETA = Hyperparameter(
    "clvs_beta", float, BETA, "CLVS memory coefficient beta: M_l = beta M_(l-1) + (1 - beta) max_h A_l",
    source=f"{PEER}: --window_memory_size", low=0.0, high=1.0, short="b", symbol="β")
CLVS_TAU = Hyperparameter(
    "clvs_tau", float, TAU, "CLVS stop threshold tau on the logit lens's normalised top-10 entropy (0 never stops)",
    source=f"{PEER}: --uncertainty_threshold", low=0.0, high=1.0, short="t", symbol="τ")
CLVS_SCOPE = Hyperparameter(
    "clvs_scope", str, SCOPE, "all: smooth the last prompt token and every generated token; prefill: the last "
    "prompt token only", source="the peer smooths every forward's last row; the paper also evaluates captioning",
    choices=SCOPES, grid=False)


def setting(config: Configuration):
    """The `intervention.CLVS` of a configuration."""
    from intervention.clvs import CLVS  # torch: imported when a batch is answered

    values = config.hyperparameters
    return CLVS(lam=values["clvs_lambda"], beta=values["clvs_beta"], tau=values["clvs_tau"],
                scope=values["clvs_scope"])


class ClvsStrategy(Strategy):
    """All CLVS configurations of a batch together: one generate for one configuration, one prompt forward
    and one batched branch for several (intervention.clvs_grid)."""

    name = "clvs"

    def answer(self, batch, configurations: Sequence[Configuration]) -> dict:
        from intervention.clvs_grid import answer_settings  # torch: imported when a batch is answered

        results = answer_settings(batch.vlm, batch.inputs, [setting(c) for c in configurations],
                                  batch.max_new_tokens, batch.engine)
        return {config: [Answer(a.text, {"stop_layer": a.stop_layer, "stop_layers": list(a.stop_layers)})
                         for a in answers]
                for config, answers in zip(configurations, results)}


def _smallest_intervention(values: dict) -> tuple:
    # lambda closest to 1 first; then the earliest stop (larger tau); then smoothing the prompt only.
    return (round(1.0 - values["clvs_lambda"], 9), -values["clvs_tau"], values["clvs_scope"] != "prefill",
            values["clvs_beta"])


CLVS_METHOD = register(Method(
    name="clvs", title="+CLVS", paper="Zhao et al. 2025 (arXiv 2509.12897)",
    description="blend the generating row's image attention with a cross-layer vision memory until the logit "
                "lens is certain",
    hyperparameters=(CLVS_LAMBDA, CLVS_BETA, CLVS_TAU, CLVS_SCOPE), strategy=ClvsStrategy(),
    record_fields=("stop_layer", "stop_layers"), preference=_smallest_intervention,
    preference_rule="lambda closest to 1, then the larger tau, then scope prefill, then the smaller beta",
    plot_x="clvs_lambda", rank=70))
