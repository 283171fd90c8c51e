"""The analyses' numbers on constructed cases: overlap AUROC, error types, fixed/broken cases, and saliency of a
pixel the model cannot see."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.fig_overlap import layer_aurocs, sample_overlap
from analysis.saliency import answer_logit, saliency_map
from analysis.stats import auroc, confusion, dispersion, error_counts, error_type, fixed_and_broken
from intervention.capture import AttentionRow, CapturedAttention
from model_zoo.geometry import image_geometries
from model_zoo.geometry_types import Grid, ImageGeometry, View, grid_tokens
from model_zoo.vlm import VLM

SIZE = 40                      # a 40 x 40 image, a 4 x 4 grid of 10-px cells
BOX = (0, 0, 20, 20)           # the top-left 2 x 2 cells
ON_BOX = [0, 1, 4, 5]          # their tokens (row-major)
OFF_BOX = [10, 11, 14, 15]


def _geometry() -> ImageGeometry:
    token_grid, token_cell = grid_tokens(0, 4, 4)
    return ImageGeometry("qwen2_vl", (SIZE, SIZE), np.arange(16), (View("image", SIZE, SIZE, (1.0, 1.0), (0.0, 0.0)),),
                         (Grid("image", 0, 4, 4, 10),), token_grid, token_cell)


def _captured(weights: np.ndarray, layers: int = 3, heads: int = 2) -> CapturedAttention:
    image = np.broadcast_to(weights, (layers, heads, 16)).astype(np.float32)
    row = AttentionRow(20, image, np.zeros((layers, heads, 4), np.float32), image.copy(), np.arange(16, 20))
    return CapturedAttention(0, np.arange(16), [row], _geometry())


def _on(tokens) -> np.ndarray:
    weights = np.zeros(16)
    weights[tokens] = 1.0 / len(tokens)
    return weights


def test_overlap_auroc_is_1_when_right_answers_look_at_the_box_and_wrong_ones_elsewhere():
    correct = [True, True, True, False, False]
    overlaps = [sample_overlap(_captured(_on(ON_BOX if c else OFF_BOX)), [BOX], (SIZE, SIZE)) for c in correct]
    assert np.allclose(overlaps[0], 1.0) and np.allclose(overlaps[-1], 0.0)
    assert np.allclose(layer_aurocs(overlaps, correct), 1.0)
    assert np.allclose(layer_aurocs(overlaps, [not c for c in correct]), 0.0)


def test_overlap_auroc_is_half_for_uniform_attention():
    correct = [True, False, True, False, False, True]
    overlaps = [sample_overlap(_captured(np.full(16, 1 / 16)), [BOX], (SIZE, SIZE)) for _ in correct]
    assert np.allclose(overlaps[0], 0.5)  # cosine of uniform with a 4-of-16 mask
    assert np.allclose(layer_aurocs(overlaps, correct), 0.5)
    assert sample_overlap(_captured(np.full(16, 1 / 16)), [], (SIZE, SIZE)) is None


def test_auroc_counts_ties_as_half_and_needs_both_classes():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.5, 0.5, 0.5, 0.1], [True, False, True, False]) == pytest.approx(0.75)
    assert np.isnan(auroc([0.1, 0.2], [True, True]))


def test_dispersion_is_zero_for_uniform_and_grows_with_concentration():
    assert np.allclose(dispersion(_captured(np.full(16, 1 / 16)).rows[0]), 0.0)
    assert (dispersion(_captured(_on([3])).rows[0]) > dispersion(_captured(_on(ON_BOX)).rows[0])).all()


def test_error_types_on_a_hand_made_confusion():
    cases = {("left", "right"): "horizontal flip", ("right", "left"): "horizontal flip",
             ("on", "under"): "vertical flip", ("below", "above"): "vertical flip", ("top", "bottom"): "vertical flip",
             ("front", "behind"): "depth flip", ("behind", "front"): "depth flip",
             ("on", "left"): "orthogonal", ("front", "right"): "orthogonal", ("left", "under"): "orthogonal",
             ("right", "behind"): "orthogonal", ("on", None): "unparsed", ("front", "on"): "other",
             ("yes", "no"): "other", ("left", "left"): None}
    for (gold, prediction), expected in cases.items():
        assert error_type(gold, prediction) == expected, (gold, prediction)
    records = [{"gold": g, "prediction": p} for g, p in
               [("left", "right")] * 3 + [("on", "under")] * 2 + [("on", "left"), ("under", None), ("left", "left")]]
    assert error_counts(records) == {"horizontal flip": 3, "vertical flip": 2, "depth flip": 0, "orthogonal": 1,
                                     "unparsed": 1, "other": 0}
    golds, predictions, counts = confusion(records)
    assert golds == ["left", "on", "under"] and predictions == ["left", "on", "right", "under", "unparsed"]
    assert counts.tolist() == [[1, 0, 3, 0, 0], [1, 0, 0, 2, 0], [0, 0, 0, 0, 1]]


def test_fixed_and_broken_pair_samples_by_id():
    before = [{"id": "a", "correct": False}, {"id": "b", "correct": True}, {"id": "c", "correct": True}]
    after = [{"id": "c", "correct": True}, {"id": "b", "correct": False}, {"id": "a", "correct": True},
             {"id": "d", "correct": True}]
    fixed, broken = fixed_and_broken(before, after)
    assert [a["id"] for a, _ in fixed] == ["a"] and [a["id"] for a, _ in broken] == ["b"]


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_saliency_of_a_pixel_the_center_crop_removes_is_zero(tiny_factory, alpha):
    vlm = VLM.from_loaded(*tiny_factory("llava", image_size=56))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(50, 90, 3), dtype=np.uint8)       # 90 x 50: the crop keeps x in ~20-70
    inputs = vlm.prepare([Image.fromarray(pixels)], [vlm.build_prompt("Where is the mug?")])
    geometry = image_geometries(vlm, inputs, [(90, 50)])[0]
    heat, _, _ = saliency_map(vlm, inputs, geometry, alpha)
    assert heat.shape == (50, 90)
    assert (heat[:, :15] == 0).all() and (heat[:, 75:] == 0).all()
    assert heat[:, 25:65].max() > 0
    changed = pixels.copy()
    changed[20, 5] = 255 - changed[20, 5]                                 # the model cannot see this pixel ...
    other = vlm.prepare([Image.fromarray(changed)], [vlm.build_prompt("Where is the mug?")])
    with torch.no_grad():                                                 # ... so its answer logits do not move
        assert torch.equal(answer_logit(vlm, inputs, inputs["pixel_values"], alpha),
                           answer_logit(vlm, other, other["pixel_values"], alpha))
