"""Image geometry (model_zoo.geometry): every family's image tokens land at the right cell of the right grid,
and map back to the right original pixels; checked against the processor's real pixel values and, for
LLaVA-NeXT's token order, against the model's own packing code."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import ToolkitError
from model_zoo.geometry import image_geometries, pixel_views
from model_zoo.geometry_types import ImageGeometry
from model_zoo.tiny import FAMILIES
from model_zoo.vlm import VLM

# Image sizes giving several cells per side: LLaVA 56 px / patch 14 -> 4 x 4; NeXT tiles of 56 px; Qwen
# up to 112^2 px (128^2 for Qwen3-VL's 16-px patches).
GEOMETRY_SIZES = {"llava": 56, "llava_next": 56, "qwen2_vl": 112, "qwen2_5_vl": 112, "qwen3_vl": 128}
WIDTH, HEIGHT = 90, 50
SQUARE = 4


def _vlm(tiny_factory, family) -> VLM:
    return VLM.from_loaded(*tiny_factory(family, image_size=GEOMETRY_SIZES[family]))


def _marked(x: int, y: int, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[y:y + SQUARE, x:x + SQUARE] = 255
    return Image.fromarray(pixels)


def _prepare(vlm, images):
    return vlm.prepare(images, [vlm.build_prompt("Where is the mug?")] * len(images))


def _brightest_token(vlm, inputs, geometry: ImageGeometry, grid: int) -> int:
    """The token whose cell holds the brightest processed pixel of `grid`'s view (found in pixel_values)."""
    spec = geometry.grids[grid]
    view = pixel_views(vlm, inputs["pixel_values"], 0, geometry, inputs)[spec.view].float().mean(0)
    row, col = np.unravel_index(int(view.argmax()), tuple(view.shape))
    return int(geometry.grid_tokens(grid)[row // spec.cell - spec.row0, col // spec.cell - spec.col0])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_marked_pixel_lands_in_its_tokens_cell(tiny_factory, family):
    vlm = _vlm(tiny_factory, family)
    for x, y in ((40, 8), (62, 30), (45, 40), (25, 20)):  # inside LLaVA-1.5's crop (x 20-70)
        inputs = _prepare(vlm, [_marked(x, y)])
        geometry = image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])[0]
        assert geometry.n_tokens == int((inputs["input_ids"][0] == vlm.image_token_id).sum())
        for grid in range(len(geometry.grids)):
            token = _brightest_token(vlm, inputs, geometry, grid)
            x0, y0, x1, y1 = geometry.token_boxes()[token]
            assert x0 < x + SQUARE and x1 > x and y0 < y + SQUARE and y1 > y, (family, grid, (x, y), (x0, y0, x1, y1))
            painted = geometry.paint(np.eye(geometry.n_tokens)[token], grid)
            assert np.nanmax(painted[y: y + SQUARE, x: x + SQUARE]) == 1.0


def test_llava_center_crop_hides_the_sides_from_every_token(tiny_factory):
    vlm = _vlm(tiny_factory, "llava")
    inputs = _prepare(vlm, [_marked(5, 20)])
    geometry = image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])[0]
    painted = geometry.paint(np.arange(geometry.n_tokens, dtype=float))
    assert np.isnan(painted[:, :15]).all() and not np.isnan(painted[:, 25:65]).any()
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[20:24, 5:9] = True
    assert geometry.coverage(mask).max() == 0.0
    unmarked = _prepare(vlm, [Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8))])
    assert torch.equal(inputs["pixel_values"], unmarked["pixel_values"])  # the model cannot see that pixel


def test_llava_next_token_order_is_the_models_own_packing(tiny_factory):
    vlm = _vlm(tiny_factory, "llava_next")
    model = vlm.model.model
    for size in ((WIDTH, HEIGHT), (40, 100), (100, 24), (56, 56)):
        inputs = _prepare(vlm, [_marked(10, 10, *size)])
        geometry = image_geometries(vlm, inputs, [size])[0]
        crops = int(inputs["pixel_values"].shape[1])
        side = model.config.vision_config.image_size // model.config.vision_config.patch_size
        # fake features that name their own (crop, row, col); the newline feature is (-1, -1, -1)
        crop, row, col = torch.meshgrid(torch.arange(crops), torch.arange(side), torch.arange(side), indexing="ij")
        features = torch.stack([crop, row, col], dim=-1).reshape(crops, side * side, 3).float()
        packed = model.pack_image_features([features], inputs["image_sizes"], "default", torch.full((3,), -1.0))[0]
        packed = packed[0] if isinstance(packed, (list, tuple)) else packed
        assert packed.shape[0] == geometry.n_tokens
        tiles_view, tiles = geometry.views[1], geometry.grids[1]
        per_row = tiles_view.width // model.config.vision_config.image_size
        for token, (grid, (r, c)) in enumerate(zip(geometry.token_grid, geometry.token_cell)):
            if grid == -1:
                expected = (-1, -1, -1)
            elif grid == 0:
                expected = (0, r, c)
            else:
                full_r, full_c = r + tiles.row0, c + tiles.col0
                expected = (1 + (full_r // side) * per_row + full_c // side, full_r % side, full_c % side)
            assert tuple(packed[token].int().tolist()) == expected, (size, token)


def test_rows_of_a_batch_get_their_own_geometry(tiny_factory):
    for family in ("llava_next", "qwen2_vl"):
        vlm = _vlm(tiny_factory, family)
        images = [_marked(10, 10), _marked(5, 5, 40, 100)]
        inputs = _prepare(vlm, images)
        geometries = image_geometries(vlm, inputs, [image.size for image in images])
        for row, geometry in enumerate(geometries):
            positions = torch.nonzero(inputs["input_ids"][row] == vlm.image_token_id).flatten().numpy()
            assert np.array_equal(geometry.positions, positions)
        with pytest.raises(ToolkitError):
            image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])


def test_grid_reshape_coverage_and_serialisation_on_a_known_layout(tiny_factory):
    vlm = _vlm(tiny_factory, "qwen2_vl")
    inputs = _prepare(vlm, [_marked(0, 0)])
    geometry = image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])[0]   # 2 x 3 merged tokens over 90 x 50 px
    assert geometry.to_grid(np.arange(6)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert np.allclose(geometry.token_boxes()[4], [30, 25, 60, 50])
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[25:50, 30:60] = True
    assert np.allclose(geometry.coverage(mask), [0, 0, 0, 0, 1, 0])
    restored = ImageGeometry.from_json(geometry.to_json())
    assert np.allclose(restored.token_boxes(), geometry.token_boxes())
    assert np.array_equal(restored.to_grid(np.arange(6)), geometry.to_grid(np.arange(6)))


def test_llava_processor_padding_to_a_square_keeps_the_whole_image(tiny_factory):
    from transformers import LlavaImageProcessorPil, LlavaProcessor

    model, processor = tiny_factory("llava", image_size=56)
    padded = LlavaProcessor(image_processor=LlavaImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_pad=True),
        tokenizer=processor.tokenizer, chat_template=processor.chat_template, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>")
    vlm = VLM.from_loaded(model, padded)
    for x, y in ((5, 20), (80, 40), (45, 2)):  # the corners LLaVA-1.5's plain center crop would drop
        inputs = _prepare(vlm, [_marked(x, y)])
        geometry = image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])[0]
        token = _brightest_token(vlm, inputs, geometry, 0)
        x0, y0, x1, y1 = geometry.token_boxes()[token]
        assert x0 < x + SQUARE and x1 > x and y0 < y + SQUARE and y1 > y
    assert not np.isnan(geometry.paint(np.ones(geometry.n_tokens))).any()


def test_llava_full_feature_strategy_puts_the_cls_token_first_without_a_cell(tiny_factory):
    from transformers import LlavaProcessor

    model, processor = tiny_factory("llava", image_size=56)
    full = LlavaProcessor(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                          chat_template=processor.chat_template, patch_size=14, vision_feature_select_strategy="full",
                          num_additional_image_tokens=1, image_token="<image>")
    vlm = VLM.from_loaded(model, full)
    inputs = _prepare(vlm, [_marked(40, 20)])
    geometry = image_geometries(vlm, inputs, [(WIDTH, HEIGHT)])[0]
    assert geometry.n_tokens == 17 and geometry.token_grid[0] == -1 and np.isnan(geometry.token_boxes()[0]).all()
    assert geometry.grid_tokens().tolist() == np.arange(1, 17).reshape(4, 4).tolist()
