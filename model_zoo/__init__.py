"""Vision-language models: the registry of supported checkpoints, the `VLM` wrapper and tiny test models.

    from model_zoo import get_model
    vlm = get_model("llava1.5", dtype="float32")
    inputs = vlm.prepare([image], [vlm.build_prompt(question)])
    answers = vlm.generate(inputs, max_new_tokens=10)
"""
from model_zoo.loading import get_model
from model_zoo.registry import FAMILIES, MODELS, register_model
from model_zoo.vlm import VLM

__all__ = ["get_model", "VLM", "MODELS", "FAMILIES", "register_model"]
