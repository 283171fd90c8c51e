"""The toy model: a tiny LLaVA trained from scratch on synthetic Controlled scenes, shipped in `checkpoint/`.

It lets a machine with no downloaded weights or datasets run the real pipeline: a model that actually sees,
attention that lands on the objects, and interventions that move accuracy. The checkpoint directory loads
like a hub model (`AutoProcessor` / `AutoModelForImageTextToText.from_pretrained`, or `get_model(path)`).

    python -m model_zoo.toy.train --output model_zoo/toy/checkpoint     # retrain (a few minutes on 2 cores)
    python -m model_zoo.toy.evaluate                                     # accuracy, attention, ScalingVis

Modules: `data` (scenes with the toolkit's exact question text), `build` (model, tokenizer and the
initialisation that makes training escape the chance plateau), `train`, `attention_mass` (how much of the
last prompt token's image attention falls inside the objects' boxes), `evaluate`.
"""
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoint"

__all__ = ["CHECKPOINT_DIR"]
