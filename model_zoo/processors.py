"""Loading processors robustly, including Qwen processors on installs without torchvision.

Why this exists: transformers' Qwen2-VL / Qwen2.5-VL / Qwen3-VL processors declare a `video_processor`
sub-processor. Without torchvision, `transformers.BaseVideoProcessor` is a dummy class and both building
such a processor (the class check of its sub-processors) and `AutoProcessor.from_pretrained` (which loads
an `AutoVideoProcessor`) fail, even for image-only use. The toolkit never feeds videos, so it uses
image-only subclasses that simply drop the `video_processor` attribute (`get_attributes()` is what
`ProcessorMixin` consults to build, check, save and load sub-processors).

`load_processor(path, model_type=...)` loads Qwen checkpoints (hub or local, saved by us or not) with
the image-only class's own `from_pretrained`, which reads the usual tokenizer, image-processor and
chat-template files and skips the video processor; other families go through `AutoProcessor`. Saved
image-only processors name the stock class in `processor_config.json`, so a directory written by
`save_tiny_vlm` is an ordinary Qwen directory: with torchvision installed plain
`AutoProcessor.from_pretrained` reads it too; without torchvision only `load_processor` (and hence
`get_model`) can, because transformers then has no video processor class to build.
"""
from __future__ import annotations

from transformers import (
    AutoProcessor,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
)


class _ImageOnlyMixin:
    """Drops the video sub-processor: the toolkit only processes images."""

    @classmethod
    def get_attributes(cls):
        return [name for name in super().get_attributes() if name != "video_processor"]

    def to_dict(self):
        # Save under the stock class name, so the directory stays a normal Qwen processor directory.
        output = super().to_dict()
        output["processor_class"] = self._stock_name
        return output


class ImageOnlyQwen2VLProcessor(_ImageOnlyMixin, Qwen2VLProcessor):
    _stock_name = "Qwen2VLProcessor"


class ImageOnlyQwen2_5_VLProcessor(_ImageOnlyMixin, Qwen2_5_VLProcessor):
    _stock_name = "Qwen2_5_VLProcessor"


class ImageOnlyQwen3VLProcessor(_ImageOnlyMixin, Qwen3VLProcessor):
    _stock_name = "Qwen3VLProcessor"


_IMAGE_ONLY = {
    "qwen2_vl": ImageOnlyQwen2VLProcessor,
    "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor,
    "qwen3_vl": ImageOnlyQwen3VLProcessor,
}


def processor_class_for(family: str):
    """The image-only processor class of a Qwen family."""
    return _IMAGE_ONLY[family]


def load_processor(path_or_id: str, *, model_type: str | None, revision: str | None = None,
                   trust_remote_code: bool = False):
    """The processor of a checkpoint; Qwen families always get their image-only processor class.

    Using the image-only class for Qwen on every install (not only without torchvision) keeps the
    behaviour the same everywhere; its `from_pretrained` reads the same files as the stock class.
    """
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code)
    if model_type in _IMAGE_ONLY:
        return _IMAGE_ONLY[model_type].from_pretrained(path_or_id, **kwargs)
    return AutoProcessor.from_pretrained(path_or_id, **kwargs)
