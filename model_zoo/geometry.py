"""`image_geometries`: each family's image tokens mapped to their cells and back to original pixels.

    geometries = image_geometries(vlm, inputs, [image.size for image in images])   # one per batch row
    views = pixel_views(vlm, inputs["pixel_values"], row, geometries[row])        # the model's input per view

The types and what they offer (grids, boxes, painting maps) are in `model_zoo.geometry_types`. Each builder
follows the processor's own steps (resize, pad, crop, anyres tiling, unpadding, merge) from its settings and
its outputs (`pixel_values`' shape, `image_sizes`, `image_grid_thw`), and the token count it derives must equal
the image tokens of that row in input_ids: a processor that changed its rules fails loudly here instead of
misplacing tokens. Supported: one image per row, LLaVA-1.5's CLIP processor (optionally padding to a square,
as `LlavaImageProcessor(do_pad=True)` does), LLaVA-NeXT anyres with `image_newline`, Qwen2/2.5/3-VL images.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from common.errors import ToolkitError
from model_zoo.geometry_types import Grid, ImageGeometry, View, cell_less, concatenate, grid_tokens

__all__ = ["image_geometries", "pixel_views", "ImageGeometry", "View", "Grid"]


def image_geometries(vlm, inputs, image_sizes: Sequence[tuple[int, int]]) -> list[ImageGeometry]:
    """One geometry per row of `inputs`; `image_sizes`: the original images' (width, height)."""
    ids = inputs["input_ids"]
    if len(image_sizes) != ids.shape[0]:
        raise ToolkitError(f"got {len(image_sizes)} image sizes for {ids.shape[0]} prompt rows; give one "
                           f"(width, height) per row")
    builder = _BUILDERS.get(vlm.family)
    if builder is None:
        raise ToolkitError(f"no image geometry for the {vlm.family} family; supported: {', '.join(_BUILDERS)}")
    geometries = []
    for row, (width, height) in enumerate(image_sizes):
        positions = torch.nonzero(ids[row] == vlm.image_token_id).flatten().cpu().numpy()
        views, grids, (token_grid, token_cell), primary = builder(vlm, inputs, row, (int(width), int(height)))
        if len(token_grid) != len(positions):
            raise ToolkitError(
                f"row {row}: the {vlm.family} processor put {len(positions)} image tokens in input_ids, but its "
                f"settings give {len(token_grid)} for a {width}x{height} image; this processor lays images out "
                f"differently from what model_zoo.geometry knows (or the image sizes are not the originals)")
        geometries.append(ImageGeometry(vlm.family, (int(width), int(height)), positions, tuple(views), tuple(grids),
                                        token_grid, token_cell, primary))
    return geometries


def _get(size, key: str):
    """A field of a SizeDict or plain dict (processors hold either)."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _resized_size(size, height: int, width: int) -> tuple[int, int]:
    """(height, width) after the processor's resize (transformers' get_resize_output_image_size rules)."""
    if _get(size, "height") and _get(size, "width"):
        return int(_get(size, "height")), int(_get(size, "width"))
    shortest = _get(size, "shortest_edge")
    if shortest and not _get(size, "longest_edge"):
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = int(shortest), int(int(shortest) * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    raise ToolkitError(f"the image processor's resize setting {size} is not supported by model_zoo.geometry "
                       f"(supported: shortest_edge, or height and width)")


def _clip_view(name: str, processor, size: tuple[int, int], pad_square: bool,
               start: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)) -> View:
    """The view of CLIP-style preprocessing (optional pad to square, resize, center crop) of an image of
    `size` (width, height) whose pixels already are `start` = (sx, sy, ox, oy) of the original's."""
    sx, sy, ox, oy = start
    width, height = size
    if pad_square and width != height:
        side = max(width, height)
        ox, oy = ox + (side - width) // 2, oy + (side - height) // 2
        width = height = side
    if getattr(processor, "do_resize", True):
        new_height, new_width = _resized_size(processor.size, height, width)
        fx, fy = new_width / width, new_height / height
        sx, sy, ox, oy, width, height = sx * fx, sy * fy, ox * fx, oy * fy, new_width, new_height
    crop = getattr(processor, "crop_size", None)
    if getattr(processor, "do_center_crop", False) and crop is not None:
        crop_height, crop_width = int(_get(crop, "height")), int(_get(crop, "width"))
        # transformers' center_crop: top = int((h - crop_h) / 2); a larger crop pads, the same offset sign-flipped
        ox, oy = ox - int((width - crop_width) / 2.0), oy - int((height - crop_height) / 2.0)
        width, height = crop_width, crop_height
    return View(name, height, width, (sx, sy), (ox, oy))


def _vision_patch(vlm) -> int:
    return int(vlm.model.config.vision_config.patch_size)


def _llava(vlm, inputs, row: int, size: tuple[int, int]):
    processor = vlm.processor.image_processor
    pad_square = bool(getattr(processor, "do_pad", False)) and hasattr(processor, "pad_to_square")
    view = _clip_view("image", processor, size, pad_square)
    height, width = inputs["pixel_values"].shape[-2:]
    if (view.height, view.width) != (height, width):
        raise ToolkitError(f"the LLaVA processor made {width}x{height} pixel values, model_zoo.geometry expected "
                           f"{view.width}x{view.height}; this image processor resizes differently")
    patch = _vision_patch(vlm)
    rows, cols = height // patch, width // patch
    n = int((inputs["input_ids"][row] == vlm.image_token_id).sum())
    # vision_feature_select_strategy "full" keeps CLIP's CLS feature in front of the patch grid
    parts = [cell_less(1)] if n == rows * cols + 1 else []
    parts.append(grid_tokens(0, rows, cols))
    return [view], [Grid("image", 0, rows, cols, patch)], concatenate(parts), 0


def select_best_resolution(original: tuple[int, int], candidates) -> tuple[int, int]:
    """LLaVA-NeXT's choice of the tiled resolution (height, width) for an original (height, width): the most
    effective pixels, then the least waste (transformers.image_processing_utils.select_best_resolution)."""
    height, width = original
    best, best_effective, best_waste = None, 0, float("inf")
    for cand_height, cand_width in candidates:
        scale = min(cand_width / width, cand_height / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = cand_width * cand_height - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (int(cand_height), int(cand_width)), effective, waste
    return best


def _fit_size(original: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the image resized into `target` keeping its aspect (get_patch_output_size)."""
    height, width = original
    target_height, target_width = target
    scale_w, scale_h = target_width / width, target_height / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_height), target_width
    return target_height, min(math.ceil(width * scale_h), target_width)


def unpadded_range(original: tuple[int, int], rows: int, cols: int) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the rows/cols of the tile feature grid LLaVA-NeXT keeps (modeling unpad_image)."""
    height, width = original
    if width / height > cols / rows:
        new_rows = int(round(height * (cols / width), 7))
        pad = (rows - new_rows) // 2
        return pad, rows - pad, 0, cols
    new_cols = int(round(width * (rows / height), 7))
    pad = (cols - new_cols) // 2
    return 0, rows, pad, cols - pad


def _llava_next(vlm, inputs, row: int, size: tuple[int, int]):
    processor = vlm.processor.image_processor
    width, height = size
    recorded = tuple(int(v) for v in inputs["image_sizes"][row].tolist())
    if recorded != (height, width):
        raise ToolkitError(f"row {row}: the processor saw a {recorded[1]}x{recorded[0]} image, not {width}x{height}; "
                           f"give the original image sizes")
    patch = _vision_patch(vlm)
    square = processor.size
    base_height = int(_get(square, "height") or _get(square, "shortest_edge"))
    base_width = int(_get(square, "width") or _get(square, "shortest_edge"))
    base = _clip_view("base", processor, (base_width, base_height), False,
                      (base_width / width, base_height / height, 0.0, 0.0))
    crop = getattr(processor, "crop_size", None)
    tile = int((_get(crop, "height") if crop is not None else None) or base_height)
    if _clip_view("tile", processor, (tile, tile), False) != View("tile", tile, tile, (1.0, 1.0), (0.0, 0.0)):
        raise ToolkitError("this LLaVA-NeXT processor resizes its tiles again; model_zoo.geometry does not support it")
    best = select_best_resolution((height, width), processor.image_grid_pinpoints)
    fit_height, fit_width = _fit_size((height, width), best)
    tiles = View("tiles", best[0], best[1], (fit_width / width, fit_height / height),
                 ((best[1] - fit_width) // 2, (best[0] - fit_height) // 2))
    per_tile, side = tile // patch, base.height // patch
    r0, r1, c0, c1 = unpadded_range((height, width), best[0] // tile * per_tile, best[1] // tile * per_tile)
    grids = [Grid("base", 0, side, side, patch), Grid("tiles", 1, r1 - r0, c1 - c0, patch, r0, c0)]
    parts = [grid_tokens(0, side, side)]
    for r in range(r1 - r0):  # each kept row of the tile grid, then its image_newline token
        cells = np.stack([np.full(c1 - c0, r), np.arange(c1 - c0)], axis=1)
        parts += [(np.ones(c1 - c0, dtype=np.int64), cells), cell_less(1)]
    return [base, tiles], grids, concatenate(parts), 1


def _qwen(vlm, inputs, row: int, size: tuple[int, int]):
    grid_thw = inputs["image_grid_thw"]
    if grid_thw.shape[0] != inputs["input_ids"].shape[0]:
        raise ToolkitError(f"{grid_thw.shape[0]} images for {inputs['input_ids'].shape[0]} prompt rows; the image "
                           f"geometry needs exactly one image per row")
    frames, grid_h, grid_w = (int(v) for v in grid_thw[row].tolist())
    if frames != 1:
        raise ToolkitError("image geometry covers still images (one frame); this row holds a video")
    processor = vlm.processor.image_processor
    patch, merge = int(processor.patch_size), int(processor.merge_size)
    width, height = size
    view = View("image", grid_h * patch, grid_w * patch, (grid_w * patch / width, grid_h * patch / height),
                (0.0, 0.0))
    rows, cols = grid_h // merge, grid_w // merge
    return [view], [Grid("image", 0, rows, cols, patch * merge)], grid_tokens(0, rows, cols), 0


_BUILDERS = {"llava": _llava, "llava_next": _llava_next, "qwen2_vl": _qwen, "qwen2_5_vl": _qwen, "qwen3_vl": _qwen}


def pixel_views(vlm, pixel_values: torch.Tensor, row: int, geometry: ImageGeometry, inputs=None) -> list[torch.Tensor]:
    """A tensor laid out like the model's `pixel_values` (e.g. its gradient) -> one (C, h, w) tensor per view of
    `geometry`, in the views' pixel coordinates. Qwen needs `inputs` (for image_grid_thw); its temporal copies of
    the frame are summed (a pixel of the still image feeds every copy)."""
    if vlm.family == "llava":
        return [pixel_values[row]]
    if vlm.family == "llava_next":
        tiles = geometry.views[1]
        tile = pixel_values.shape[-1]
        n_rows, n_cols = tiles.height // tile, tiles.width // tile
        crops = pixel_values[row, 1:1 + n_rows * n_cols]                      # (tiles, C, T, T), row-major
        canvas = crops.reshape(n_rows, n_cols, *crops.shape[1:]).permute(2, 0, 3, 1, 4)
        return [pixel_values[row, 0], canvas.reshape(crops.shape[1], tiles.height, tiles.width)]
    grid_thw = inputs["image_grid_thw"]
    start = int(grid_thw[:row].prod(dim=1).sum()) if row else 0
    frames, grid_h, grid_w = (int(v) for v in grid_thw[row].tolist())
    processor = vlm.processor.image_processor
    patch, merge, temporal = int(processor.patch_size), int(processor.merge_size), int(processor.temporal_patch_size)
    block = pixel_values[start:start + frames * grid_h * grid_w]
    # row layout of the processor's patchify: (gh/m, gw/m, m, m) patches, each (C, temporal, p, p)
    block = block.reshape(grid_h // merge, grid_w // merge, merge, merge, -1, temporal, patch, patch)
    image = block.permute(4, 5, 0, 2, 6, 1, 3, 7).reshape(-1, temporal, grid_h * patch, grid_w * patch)
    return [image.sum(dim=1)]
