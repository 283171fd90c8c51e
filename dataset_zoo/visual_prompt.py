"""Visual prompting: draw boxes around the objects a sample refers to, before the processor sees the image.

    from dataset_zoo.boxes import box_source_for
    from dataset_zoo.visual_prompt import BoxPrompt
    prompt = BoxPrompt(box_source_for("Synthetic_Controlled_A", root="data"))   # red, 3 px
    image = prompt(sample, sample.image)          # a new image; the input is left untouched
    prompt.to_dict()                              # {"kind": "box", "colour": "red", "width": 3, "source": {...},
                                                  #  "drawn": n, "missing": m}  (for run folders)

The outline is drawn inside each box (its outer edge is the box edge), so a box touching the image border
stays fully visible. A sample the source has no box for is passed through unchanged and counted in
`missing` (with one warning), so a partial annotation file does not stop a run but shows in its record.
The counts live in the object that drew: call it in the process that records them (not only in data-loader
worker processes, whose copies are discarded).
"""
from __future__ import annotations

import logging
from typing import Iterable

from PIL import Image, ImageColor, ImageDraw

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from dataset_zoo.boxes import Box, BoxSource

logger = logging.getLogger(__name__)
VISUAL_PROMPTS = ("none", "box")


def parse_colour(colour: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(colour)[:3]
    except ValueError:
        raise ToolkitError(f"unknown box colour {colour!r}; use a colour name (red, yellow) or #rrggbb") from None


def draw_boxes(image: Image.Image, boxes: Iterable[Box], colour: str = "red", width: int = 3) -> Image.Image:
    """A copy of `image` with an outline of `width` pixels inside each (x0, y0, x1, y1) box (x1/y1 exclusive)."""
    if width < 1:
        raise ToolkitError(f"box line width must be at least 1 pixel, got {width}")
    rgb = parse_colour(colour)
    out = image.convert("RGB")  # convert() copies, so the caller's image is never drawn on
    draw = ImageDraw.Draw(out)
    for x0, y0, x1, y1 in boxes:
        # PIL's rectangle includes its second corner and grows `width` inwards from the given edge.
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=rgb, width=width)
    return out


class BoxPrompt:
    """`(sample, image) -> image` with the sample's object boxes drawn; see the module docstring."""

    kind = "box"

    def __init__(self, source: BoxSource, colour: str = "red", width: int = 3):
        parse_colour(colour)
        if width < 1:
            raise ToolkitError(f"box line width must be at least 1 pixel, got {width}")
        self.source = source
        self.colour = colour
        self.width = width
        self.drawn = 0
        self.missing = 0

    def __call__(self, sample: Sample, image: Image.Image) -> Image.Image:
        boxes = self.source.boxes(sample, image)
        if not boxes:
            if not self.missing:
                logger.warning("no boxes for sample %s in %s; such images are left without a visual prompt "
                               "(counted as 'missing')", sample.id, self.source.describe())
            self.missing += 1
            return image
        self.drawn += 1
        return draw_boxes(image, [named.box for named in boxes], self.colour, self.width)

    def settings(self) -> dict:
        """What draws the boxes (for run folders): kind, colour, width and the box source."""
        return {"kind": self.kind, "colour": self.colour, "width": self.width, "source": self.source.describe()}

    def to_dict(self) -> dict:
        return {**self.settings(), "drawn": self.drawn, "missing": self.missing}
