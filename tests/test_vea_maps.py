"""VEA's map operations (methods.vea_maps) against explicit reference computations on hand-made grids."""
import math

import numpy as np
import pytest

from methods.vea_maps import (blurred_painting, denoise, evidence_map, highlight_factor, normalise, render_view,
                              sigma_pixels, view_factors)
from model_zoo.geometry_types import Grid, ImageGeometry, View, grid_tokens

GRID = np.array([[1, 1, 1, 1, 1],
                 [1, 50, 1, 1, 1],
                 [1, 1, 2, 9, 1],
                 [1, 1, 1, 1, 1],
                 [1, 1, 1, 1, 100]], dtype=float)


def test_denoise_replaces_interior_spikes_by_their_neighbours_mean():
    # (1, 1) = 50 exceeds 10 x its largest neighbour (2): it takes the mean of its 8 neighbours, (7 x 1 + 2) / 8.
    # (2, 3) = 9 is below 10 x 2. (4, 4) = 100 is a border cell: edge padding makes it its own neighbour.
    expected = GRID.copy()
    expected[1, 1] = 9 / 8
    np.testing.assert_array_equal(denoise(GRID, 10.0), expected)
    # lambda 4: 9 > 4 x 2 too; its neighbours are seven 1s and the 2 -> 9 / 8; 50's neighbours are unchanged inputs
    expected[2, 3] = 9 / 8
    np.testing.assert_array_equal(denoise(GRID, 4.0), expected)
    np.testing.assert_array_equal(denoise(GRID, None), GRID)
    # strictly greater: a cell exactly lambda x its largest neighbour stays
    assert denoise(np.array([[1, 1, 1], [1, 10, 1], [1, 1, 1.0]]), 10.0)[1, 1] == 10


def reference_blur(canvas: np.ndarray, sigma: float) -> np.ndarray:
    """Direct 2-D convolution with the product Gaussian, on a canvas mirrored by numpy's 'symmetric' padding
    (scipy.ndimage's 'reflect': d c b a | a b c d | d c b a), truncated at int(4 sigma + 0.5)."""
    radius = int(4 * sigma + 0.5)
    padded = np.pad(canvas, radius, mode="symmetric")
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    weights /= weights.sum()
    out = np.zeros_like(canvas)
    for i in range(canvas.shape[0]):
        for j in range(canvas.shape[1]):
            out[i, j] = (padded[i:i + 2 * radius + 1, j:j + 2 * radius + 1] * weights).sum()
    return out


def blur_matrix(n: int, sigma: float) -> np.ndarray:
    """The (n, n) blur of one axis: every pixel its own cell."""
    return blurred_painting(n, sigma, np.arange(n), n)


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.5])
def test_blur_equals_a_direct_convolution_with_mirrored_edges(sigma):
    canvas = np.zeros((4, 6))
    canvas[0, 1], canvas[2, 5], canvas[3, 3] = 1.0, 3.0, 0.5
    blurred = blur_matrix(4, sigma) @ canvas @ blur_matrix(6, sigma).T
    # sigma 2.5 reaches 10 pixels: wider than the canvas (twice over), the mirror repeats
    np.testing.assert_allclose(blurred, reference_blur(canvas, sigma), rtol=1e-12, atol=1e-15)
    assert blurred.sum() == pytest.approx(canvas.sum())                   # mirrored edges lose no mass
    np.testing.assert_array_equal(blur_matrix(4, 0.0) @ canvas @ blur_matrix(6, 0.0).T, canvas)


def test_a_painted_axis_is_blurred_as_a_whole():
    # cells as runs of pixels: -1 outside the grid, cell 2 covers no pixel
    index = np.array([-1, 0, 0, 1, 1, 1, 3, -1])
    one_hot = (index[:, None] == np.arange(4)[None, :]).astype(float)
    for sigma in (0.0, 0.8, 1.5, 6.0):
        np.testing.assert_allclose(blurred_painting(8, sigma, index, 4), blur_matrix(8, sigma) @ one_hot, atol=1e-15)


def test_sigma_conventions():
    assert sigma_pixels(0.5, 336, 500) == 168.0          # relative to the short side
    assert sigma_pixels(1.0, 20, 30) == 20.0
    assert sigma_pixels(3.0, 20, 30) == 3.0              # > 1: pixels
    assert sigma_pixels(0.0, 20, 30) == 0.0


def test_normalise_and_highlight_factor():
    canvas = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_array_equal(normalise(canvas), [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(normalise(np.full((2, 3), 7.0)), np.zeros((2, 3)))   # no contrast: no evidence
    np.testing.assert_array_equal(highlight_factor(np.array([0.0, 0.5, 1.0]), 0.5), [0.5, 0.75, 1.0])
    np.testing.assert_array_equal(highlight_factor(np.array([0.0, 1.0]), 1.0), [1.0, 1.0])


def hand_geometry() -> ImageGeometry:
    """One view, a 5 x 5 grid of 2-pixel cells over a 10 x 10 model input of a 20 x 20 original image."""
    token_grid, token_cell = grid_tokens(0, 5, 5)
    return ImageGeometry("llava", (20, 20), np.arange(25), (View("image", 10, 10, (0.5, 0.5), (0.0, 0.0)),),
                         (Grid("image", 0, 5, 5, 2),), token_grid, token_cell)


def test_evidence_map_is_denoise_paint_blur_normalise():
    geometry, sigma = hand_geometry(), 0.2   # 0.2 x the short side (10) = 2 pixels
    denoised = GRID.copy()
    denoised[1, 1] = 9 / 8
    painted = np.kron(denoised, np.ones((2, 2)))          # nearest: each cell's score on its 2 x 2 pixels
    blurred = reference_blur(painted, 2.0)
    expected = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    np.testing.assert_allclose(evidence_map(GRID.ravel(), geometry, 10.0, sigma), expected, atol=1e-12)


def test_factors_render_into_a_view_through_original_coordinates():
    geometry = hand_geometry()
    scores = np.zeros(25)
    scores[7] = 1.0                                        # cell (1, 2): view pixels x 4-5, y 2-3
    evidence = evidence_map(scores, geometry, lam=None, sigma=0.0)
    [factor] = view_factors(evidence, geometry, alpha=0.5)
    expected = np.full((10, 10), 0.5)
    expected[2:4, 4:6] = 1.0
    np.testing.assert_array_equal(factor, expected)
    np.testing.assert_array_equal(render_view(expected, geometry, 0), expected)
    assert math.isclose(float(view_factors(evidence, geometry, alpha=1.0)[0].min()), 1.0)
