"""What a strategy gets to answer: one batch of samples, their images and prompts, and the model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Batch:
    """One batch as the runner (or a Python caller) hands it to every strategy.

    samples / images / prompts: per row (prompts are the full model text, image placeholder included);
    max_new_tokens: the answer length; engine: "prefix" or "naive" for strategies that have both.
    `inputs` prepares the model inputs once and shares them among the strategies that use them as is.
    """

    vlm: Any
    samples: Sequence
    images: Sequence
    prompts: Sequence[str]
    max_new_tokens: int
    engine: str = "prefix"
    _inputs: Any = field(default=None, repr=False)

    @property
    def inputs(self):
        if self._inputs is None:
            self._inputs = self.vlm.prepare(self.images, self.prompts)
        return self._inputs

    def __len__(self) -> int:
        return len(self.samples)
