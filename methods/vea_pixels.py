"""VEA's highlight (Eq. 4) applied to the pixels the model sees: `I' = clip(I * factor)` in RGB.

    pixels = highlighted_pixels(vlm, inputs, geometries, factors)   # a new pixel_values tensor

The image the model sees is the processor's output, so the highlight acts on it directly: each view's
normalised pixels are taken back to RGB (x * std + mean, the inverse of the processor's normalisation),
multiplied by that view's factor map (`methods.vea_maps.view_factors`) and normalised again. This is the
official order (highlight the rendered model input, after the model's resize and crop, so it is
pixel-aligned with the token grid) without a round trip through a uint8 image: the official code
truncates the highlighted image to integers before the processor sees it again; here the values stay
exact (a difference below one grey level).

Per family, a view lives in `pixel_values` as follows (the layouts `model_zoo.geometry` reads):
* llava: pixel_values[row] is the single (C, H, W) view (the resized, center-cropped image);
* llava_next: pixel_values[row, 0] is the base view, pixel_values[row, 1:] the tiles of the anyres canvas,
  row-major, each (C, T, T);
* qwen2_vl, qwen2_5_vl, qwen3_vl: the row's patches, (gh/m, gw/m, m, m) patches each (C, temporal, p, p),
  flattened. The factor map is laid out in that patch order and broadcast over channels and temporal
  copies, so the per-channel mean/std act on the right channel (the peer implementation mixed the
  channel and temporal axes).
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

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, image_processor) -> "RGBScale":
        normalise = getattr(image_processor, "do_normalize", True)
        mean = image_processor.image_mean if normalise else (0.0, 0.0, 0.0)
        std = image_processor.image_std if normalise else (1.0, 1.0, 1.0)
        return cls(tuple(mean), tuple(std))

    def brighten_(self, view: torch.Tensor, factor: torch.Tensor, channel: int) -> None:
        """Multiply `view` (normalised pixels, channels on axis `channel`) by `factor` (broadcastable to it) in
        RGB, in place. In normalised units ((rgb f - mean) / std with rgb = x std + mean) that is
        x f + (mean / std)(f - 1): two passes over the pixels. Eq. 4's clip to the RGB range never binds: the
        factor lies in [alpha, 1], so a pixel in range stays in range."""
        import torch

        shape = [1] * view.dim()
        shape[channel] = -1
        offset = torch.tensor([m / s for m, s in zip(self.mean, self.std)], dtype=view.dtype, device=view.device)
        view.mul_(factor).addcmul_(factor - 1.0, offset.view(shape))


def highlighted_pixels(vlm, inputs, geometries: Sequence[ImageGeometry],
                       factors: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
    """`inputs["pixel_values"]` with each row's views brightened by `factors[row][view]` (float32 maths,
    returned in the input's dtype). The factor map is laid out like the pixels (a few MB at most), rather
    than the pixels like an image."""
    import torch

    original = inputs["pixel_values"]
    pixels = original.detach().to(torch.float32, copy=True)
    scale = RGBScale.of(vlm.processor.image_processor)
    regions = _REGIONS.get(vlm.family)
    if regions is None:
        raise ToolkitError(f"VEA does not know where the {vlm.family} family keeps its views in pixel_values; "
                           f"supported: {', '.join(_REGIONS)}")
    for row, (geometry, row_factors) in enumerate(zip(geometries, factors)):
        for view, factor in enumerate(row_factors):
            region, laid_out, channel = regions(vlm, pixels, inputs, row, view, geometry,
                                                torch.as_tensor(factor, dtype=torch.float32, device=pixels.device))
            scale.brighten_(region, laid_out, channel)
    return pixels.to(original.dtype)


def _llava(vlm, pixels, inputs, row, view, geometry, factor):
    """pixels[row]: (C, H, W)."""
    return pixels[row], factor, 0


def _llava_next(vlm, pixels, inputs, row, view, geometry, factor):
    """View 0: pixels[row, 0], (C, T, T); view 1: the anyres canvas as tiles pixels[row, 1:1 + n], (n, C, T, T)."""
    if view == 0:
        return pixels[row, 0], factor, 0
    tile = pixels.shape[-1]
    rows, cols = geometry.views[1].height // tile, geometry.views[1].width // tile
    tiles = factor.reshape(rows, tile, cols, tile).permute(0, 2, 1, 3).reshape(rows * cols, 1, tile, tile)
    return pixels[row, 1:1 + rows * cols], tiles, 1


def _qwen(vlm, pixels, inputs, row, view, geometry, factor):
    """The row's patches, (n, C, temporal, p, p), in the patchify order (gh/m, gw/m, m, m)."""
    grid_thw = inputs["image_grid_thw"]
    start = int(grid_thw[:row].prod(dim=1).sum()) if row else 0
    frames, grid_h, grid_w = (int(v) for v in grid_thw[row].tolist())
    processor = vlm.processor.image_processor
    patch, merge, temporal = int(processor.patch_size), int(processor.merge_size), int(processor.temporal_patch_size)
    n = frames * grid_h * grid_w
    patches = factor.reshape(grid_h // merge, merge, patch, grid_w // merge, merge, patch).permute(0, 3, 1, 4, 2, 5)
    return (pixels[start:start + n].view(n, -1, temporal, patch, patch), patches.reshape(n, 1, 1, patch, patch), 1)


_REGIONS = {"llava": _llava, "llava_next": _llava_next, "qwen2_vl": _qwen, "qwen2_5_vl": _qwen, "qwen3_vl": _qwen}
