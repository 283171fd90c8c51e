"""VEA's highlight (Eq. 4) applied to the pixels the model sees: `I' = clip(I * factor)` in RGB.

    pixels = highlighted_pixels(vlm, inputs, geometries, factors)   # a new pixel_values tensor

The image the model sees is the processor's output, so the highlight acts on it directly: each view's
normalised pixels are taken back to RGB (x * std + mean, the inverse of the processor's rescale and
normalise), multiplied by that view's factor map (`methods.vea_maps.view_factors`), clipped to the RGB
range and normalised again. This is the official order (highlight the rendered model input, after the
model's resize and crop, so it is pixel-aligned with the token grid) without a round trip through a uint8
image: the official code truncates the highlighted image to integers before the processor sees it again;
here the values stay exact (a difference below one grey level).

Per family, a view lives in `pixel_values` as follows (the layouts `model_zoo.geometry` reads):
* llava: pixel_values[row] is the single (C, H, W) view (the resized, center-cropped image);
* llava_next: pixel_values[row, 0] is the base view, pixel_values[row, 1:] the tiles of the anyres canvas,
  row-major, each (C, T, T);
* qwen2_vl, qwen2_5_vl, qwen3_vl: the row's patches, (gh/m, gw/m, m, m) patches each (C, temporal, p, p),
  flattened; channels are kept apart when converting, so per-channel mean/std are applied to the right
  channel (the peer implementation mixed channel and temporal axes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from common.errors import ToolkitError
from model_zoo.geometry_types import ImageGeometry

if TYPE_CHECKING:  # torch is imported when a batch is highlighted (the package is imported by --help)
    import torch


@dataclass(frozen=True)
class RGBScale:
    """How the processor turned RGB into pixel values: x = (rgb * rescale - mean) / std, rgb in [0, 255]."""

    mean: torch.Tensor   # (C,)
    std: torch.Tensor    # (C,)
    top: float           # the largest value of rescaled RGB (1.0 after rescaling by 1/255)

    @classmethod
    def of(cls, image_processor) -> "RGBScale":
        import torch

        normalise = getattr(image_processor, "do_normalize", True)
        mean = image_processor.image_mean if normalise else (0.0, 0.0, 0.0)
        std = image_processor.image_std if normalise else (1.0, 1.0, 1.0)
        rescale = image_processor.rescale_factor if getattr(image_processor, "do_rescale", True) else 1.0
        return cls(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32), 255.0 * rescale)

    def brighten(self, view: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """A (C, ..., h, w) view multiplied by an (h, w) factor in RGB, clipped to the RGB range."""
        shape = (-1,) + (1,) * (view.dim() - 1)
        mean, std = self.mean.to(view.device).view(shape), self.std.to(view.device).view(shape)
        rgb = (view * std + mean) * factor.to(view.device)
        return (rgb.clamp(0.0, self.top) - mean) / std


def highlighted_pixels(vlm, inputs, geometries: Sequence[ImageGeometry],
                       factors: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
    """`inputs["pixel_values"]` with each row's views brightened by `factors[row][view]` (float32 maths,
    returned in the input's dtype)."""
    import torch

    original = inputs["pixel_values"]
    pixels = original.detach().float().clone()
    scale = RGBScale.of(vlm.processor.image_processor)
    layout = _LAYOUTS.get(vlm.family)
    if layout is None:
        raise ToolkitError(f"VEA does not know where the {vlm.family} family keeps its views in pixel_values; "
                           f"supported: {', '.join(_LAYOUTS)}")
    read, write = layout
    for row, (geometry, row_factors) in enumerate(zip(geometries, factors)):
        for view, factor in enumerate(row_factors):
            region = read(vlm, pixels, inputs, row, view, geometry)
            brightened = scale.brighten(region, torch.as_tensor(factor, dtype=torch.float32))
            write(vlm, pixels, inputs, row, view, geometry, brightened)
    return pixels.to(original.dtype)


def _llava_read(vlm, pixels, inputs, row, view, geometry) -> torch.Tensor:
    return pixels[row]


def _llava_write(vlm, pixels, inputs, row, view, geometry, values) -> None:
    pixels[row] = values


def _next_tiles(pixels: torch.Tensor, geometry: ImageGeometry) -> tuple[int, int]:
    """(rows, cols) of tiles on the anyres canvas."""
    canvas, tile = geometry.views[1], pixels.shape[-1]
    return canvas.height // tile, canvas.width // tile


def _next_read(vlm, pixels, inputs, row, view, geometry) -> torch.Tensor:
    if view == 0:
        return pixels[row, 0]
    rows, cols = _next_tiles(pixels, geometry)
    tiles = pixels[row, 1:1 + rows * cols]                                       # (tiles, C, T, T) row-major
    channels, tile = tiles.shape[1], tiles.shape[-1]
    return tiles.reshape(rows, cols, channels, tile, tile).permute(2, 0, 3, 1, 4).reshape(
        channels, rows * tile, cols * tile)


def _next_write(vlm, pixels, inputs, row, view, geometry, values) -> None:
    if view == 0:
        pixels[row, 0] = values
        return
    rows, cols = _next_tiles(pixels, geometry)
    channels, tile = values.shape[0], pixels.shape[-1]
    pixels[row, 1:1 + rows * cols] = values.reshape(channels, rows, tile, cols, tile).permute(1, 3, 0, 2, 4).reshape(
        rows * cols, channels, tile, tile)


def _qwen_block(vlm, inputs, row: int) -> tuple[slice, tuple[int, ...]]:
    """The row's patch rows in pixel_values and the 8-D layout of its patchify: (gh/m, gw/m, m, m, C,
    temporal, p, p)."""
    grid_thw = inputs["image_grid_thw"]
    start = int(grid_thw[:row].prod(dim=1).sum()) if row else 0
    frames, grid_h, grid_w = (int(v) for v in grid_thw[row].tolist())
    processor = vlm.processor.image_processor
    patch, merge, temporal = int(processor.patch_size), int(processor.merge_size), int(processor.temporal_patch_size)
    return slice(start, start + frames * grid_h * grid_w), (grid_h // merge, grid_w // merge, merge, merge, -1,
                                                           temporal, patch, patch)


def _qwen_read(vlm, pixels, inputs, row, view, geometry) -> torch.Tensor:
    rows, layout = _qwen_block(vlm, inputs, row)
    block = pixels[rows].reshape(layout)
    height, width = layout[0] * layout[2] * layout[6], layout[1] * layout[3] * layout[7]
    return block.permute(4, 5, 0, 2, 6, 1, 3, 7).reshape(-1, layout[5], height, width)   # (C, temporal, H, W)


def _qwen_write(vlm, pixels, inputs, row, view, geometry, values) -> None:
    rows, (gh, gw, merge, _, _, temporal, patch, _) = _qwen_block(vlm, inputs, row)
    channels = values.shape[0]
    block = values.reshape(channels, temporal, gh, merge, patch, gw, merge, patch).permute(2, 5, 3, 6, 0, 1, 4, 7)
    pixels[rows] = block.reshape(pixels[rows].shape)


_LAYOUTS = {"llava": (_llava_read, _llava_write), "llava_next": (_next_read, _next_write),
            "qwen2_vl": (_qwen_read, _qwen_write), "qwen2_5_vl": (_qwen_read, _qwen_write),
            "qwen3_vl": (_qwen_read, _qwen_write)}
