"""DoLa, Decoding by Contrasting Layers (Chuang et al., ICLR 2024), as a registered method: its hyper-parameters,
HF's candidate-layer buckets and the strategy answering a batch. The mechanics (early exits, the contrast,
the Python API) are in `methods.engines.dola`; `from methods.dola import DoLa` still works (imported on
first use, so listing the methods on the command line never loads torch).
"""
from __future__ import annotations

from dataclasses import dataclass

from common.errors import ToolkitError
from methods.registry import Answer, Hyperparameter, Method, Strategy, register

BUCKETS = ("low", "high")
DEEP_MODEL_LAYERS = 40  # HF: models deeper than this use 20-layer buckets at either end


@dataclass(frozen=True)
class LayerSet(Hyperparameter):
    """`--dola-layers`: `low`, `high`, or comma-separated layer indices forming ONE candidate set (HF's
    `dola_layers` list); `low,high` is a grid of the two buckets."""

    def check(self, value):
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        text = str(value).strip().lower()
        if text in BUCKETS:
            return text
        try:
            layers = sorted({int(part) for part in text.split(",")})
        except ValueError:
            raise ToolkitError(f"{self.flag} {value!r} is not low, high or comma-separated layer indices such as "
                               f"0,2,4") from None
        if layers[0] < 0:
            raise ToolkitError(f"{self.flag} {value!r} has a negative layer index; layers count from 0 (the "
                               f"embeddings)")
        return ",".join(map(str, layers))

    def parse(self, text: str) -> tuple:
        items = [item.strip().lower() for item in str(text).split(",")]
        if len(items) > 1 and all(item in BUCKETS for item in items):
            return tuple(self.check(item) for item in items)
        return (self.check(text),)


DOLA_LAYERS = LayerSet("dola_layers", str, "high", "DoLa candidate premature layers: low, high (HF's buckets) or "
                       "indices such as 0,2,4 (one set; a single index is DoLa-static)",
                       source="HF DoLa card: 'high' for short-answer tasks (TruthfulQA), as our one-word "
                       "answers", short="l")
RELATIVE_TOP = Hyperparameter("relative_top", float, 0.1, "DoLa plausibility constraint: keep tokens with q_N >= "
                              "relative_top * max q_N (1 = the baseline's token, 0 keeps all)",
                              source="Chuang et al. 2024 (alpha = 0.1); official code --relative_top 0.1",
                              low=0.0, high=1.0, short="rt")
DOLA_REPETITION_PENALTY = Hyperparameter(
    "dola_repetition_penalty", float, 1.2, "DoLa repetition penalty on the contrasted scores (1 = none)",
    source="Chuang et al. 2024 (1.2 in DoLa modes); HF DoLa card (transformers-community/dola)", low=1.0, short="rp")


def candidate_layers(layers: str, n_layers: int, tied: bool) -> list[int]:
    """HF's candidate premature layers of an N-layer model (see the module docstring); an explicit set is
    checked against the model."""
    if layers not in BUCKETS:
        chosen = [int(part) for part in layers.split(",")]
        if max(chosen) >= n_layers:
            final = " (the final layer: DoLa contrasts it with an EARLIER layer)" if n_layers in chosen else ""
            raise ToolkitError(f"--dola-layers {layers} includes layer {max(chosen)}{final}, but this language "
                               f"model has {n_layers} decoder layers; choose indices in 0..{n_layers - 1}, or "
                               f"low/high")
        return chosen
    bucket = _bucket(layers, n_layers, tied)
    if not bucket:
        raise ToolkitError(f"--dola-layers {layers} is empty for a {n_layers}-layer language model with tied "
                           f"embeddings (HF's rule starts at layer 2); give layer indices instead, e.g. 0,1")
    return bucket


def _bucket(layers: str, n_layers: int, tied: bool) -> list[int]:
    # The embedding exit is the identity map when lm_head is the embedding matrix, so tied models skip it.
    start = (2 if n_layers > 2 else 1 if n_layers == 2 else 0) if tied else 0
    deep = n_layers > DEEP_MODEL_LAYERS
    if layers == "low":
        if start == n_layers // 2:
            return [start]
        return list(range(start, 20 if deep else n_layers // 2, 2))
    return list(range(n_layers - 20 if deep else n_layers // 2, n_layers, 2))


class DoLaStrategy(Strategy):
    """Every DoLa configuration of a batch: one generate each."""

    name = "dola"

    def answer(self, batch, configurations) -> dict:
        from methods.engines.dola import DoLa  # torch: imported when a batch is answered

        answers: dict = {}
        for config in configurations:
            results = DoLa.of(config.hyperparameters).run(batch.vlm, batch.inputs, batch.max_new_tokens)
            answers[config] = [Answer(r.text, {"confidence": r.confidence, "premature_layers": r.premature_layers})
                               for r in results]
        return answers


def _smallest_intervention(values: dict) -> tuple:
    """Weaker contrast first: a stricter constraint (larger relative_top), then a milder penalty, then the
    high bucket (closest to the final layer), low, explicit sets."""
    layers = values["dola_layers"]
    return (-values["relative_top"], values["dola_repetition_penalty"],
            {"high": 0, "low": 1}.get(layers, 2), layers)


DOLA_METHOD = register(Method(
    name="dola", title="+DoLa", paper="Chuang et al., ICLR 2024 (DoLa)",
    description="contrast the final layer's next-token log-probabilities with those of the early exit that "
                "differs most, at every decoding step",
    hyperparameters=(DOLA_LAYERS, RELATIVE_TOP, DOLA_REPETITION_PENALTY), strategy=DoLaStrategy(),
    record_fields=("confidence", "premature_layers"), preference=_smallest_intervention, rank=20))


def __getattr__(name: str):
    # The Python API lives with the mechanics; importing it here would load torch with the registry.
    if name in ("DoLa", "DoLaAnswer", "DoLaProcessor", "EarlyExits", "layer_divergence", "dola_scores"):
        from methods.engines import dola as engine
        return getattr(engine, name)
    raise AttributeError(f"module 'methods.dola' has no attribute {name!r}")
