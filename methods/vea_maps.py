"""VEA's evidence map (Liu et al. 2025, Eqs. 2-4) as plain array operations, and its placement on the
pixels of every view the model sees.

    grid = denoise(grid, lam=10.0)                  # Eq. 2 on a token grid (None: no denoising)
    blurred = blurred_painting(h, s, rows, r) @ grid @ blurred_painting(w, s, cols, c).T   # Eq. 3, painted grid
    e = normalise(blurred)                          # min-max to [0, 1]
    factor = highlight_factor(e, alpha=0.5)         # Eq. 4: brightness factor alpha + (1 - alpha) e
    e = evidence_map(scores, geometry, lam=10.0, sigma=0.5)   # all of it from token scores, on the canvas
    factors = view_factors(e, geometry, alpha=0.5)            # Eq. 4's factor drawn into every view

The canvas is the model-input image the primary token grid covers (`model_zoo.geometry`): LLaVA-1.5's
336 x 336 crop, Qwen's smart-resized image, LLaVA-NeXT's anyres tile canvas without its padding rows or
columns. Each token's score is painted onto the canvas pixels its cell covers ("nearest", as the official
code paints patches), divided by the cell's area in original pixels. With one grid that division is a
constant, which the min-max normalisation removes, so LLaVA-1.5 and Qwen get exactly the official map;
LLaVA-NeXT's base view (the whole image squashed to 336 x 336) and its tile grid both look at the image,
and the division makes their tokens comparable (attention per original pixel) before they are summed.
The finished factor map is then drawn into every view through original-image coordinates, so both of
NeXT's views brighten the same part of the image.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from model_zoo.geometry_types import Grid, ImageGeometry

# The eight neighbours of a cell (Eq. 2's N8), the centre excluded.
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
# scipy.ndimage.gaussian_filter's default truncation (the official code's blur): the kernel reaches
# int(4 sigma + 0.5) pixels; the weights beyond it (< 4e-4 of the peak) are dropped and the rest renormalised.
TRUNCATE = 4.0


def denoise(grid: np.ndarray, lam: Optional[float]) -> np.ndarray:
    """Eq. 2: a cell greater than lam times the largest of its 8 neighbours takes their mean.

    Neighbours come from the edge-padded grid, so a border cell counts copies of itself among them and can
    never be a spike (for lam >= 1): only interior cells are denoised, as in the official code (which skips
    grids narrower than 3 cells, where every cell is a border cell). lam None: the grid unchanged.
    """
    grid = np.asarray(grid, dtype=np.float64)
    if lam is None:
        return grid.copy()
    height, width = grid.shape
    padded = np.pad(grid, 1, mode="edge")
    neighbours = np.stack([padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width] for dy, dx in _NEIGHBOURS])
    spikes = grid > lam * neighbours.max(axis=0)
    return np.where(spikes, neighbours.mean(axis=0), grid)


def sigma_pixels(sigma: float, height: int, width: int) -> float:
    """The blur's standard deviation in pixels: sigma x the short side for sigma <= 1, else sigma pixels
    (the official convention; 0 disables the blur)."""
    return sigma * min(height, width) if sigma <= 1 else float(sigma)


def normalise(canvas: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map (no evidence contrast) becomes all zeros, as in the official code."""
    low, high = float(canvas.min()), float(canvas.max())
    if high <= low:
        return np.zeros_like(canvas, dtype=np.float64)
    return (canvas - low) / (high - low)


def highlight_factor(evidence: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 4's brightness factor: 1 on full evidence, alpha on none."""
    return alpha + (1.0 - alpha) * evidence


def canvas_extent(geometry: ImageGeometry) -> tuple[int, int, int, int]:
    """The canvas: (y0, x0, height, width) of the primary grid's cells in the pixels of that grid's view
    (`geometry.grids[geometry.primary].view`)."""
    grid = geometry.grids[geometry.primary]
    return grid.row0 * grid.cell, grid.col0 * grid.cell, grid.rows * grid.cell, grid.cols * grid.cell


def _canvas_centres(geometry: ImageGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Original-image coordinates (x (W,), y (H,)) of the canvas pixel centres."""
    y0, x0, height, width = canvas_extent(geometry)
    view = geometry.views[geometry.grids[geometry.primary].view]
    return view.to_original(x0 + np.arange(width) + 0.5, y0 + np.arange(height) + 0.5)


def _cell_indices(geometry: ImageGeometry, grid: Grid, x: np.ndarray, y: np.ndarray):
    """Column and row of `grid` under original coordinates x, y (-1 where the grid does not reach)."""
    gx, gy = geometry.views[grid.view].from_original(x, y)
    cols = np.floor(gx / grid.cell).astype(int) - grid.col0
    rows = np.floor(gy / grid.cell).astype(int) - grid.row0
    return np.where((cols >= 0) & (cols < grid.cols), cols, -1), np.where((rows >= 0) & (rows < grid.rows), rows, -1)


def blurred_painting(n: int, sigma_px: float, index: np.ndarray, cells: int) -> np.ndarray:
    """(n, cells): one canvas axis of a painted grid, blurred. Column c is the 1-D Gaussian blur of the
    indicator of cell c's pixels (`index[j]`: the cell of canvas pixel j, -1 outside the grid), so the
    painted and blurred canvas is blurred_painting(H) @ values @ blurred_painting(W).T (Eq. 3 is separable).

    The blur is scipy's `gaussian_filter` (the official code's): the Gaussian sampled at integer offsets,
    truncated at `TRUNCATE` sigma, normalised; edges mirrored as its 'reflect' mode (d c b a | a b c d |
    d c b a, repeated when the kernel is wider than the canvas: pixel p reads j where p = j or p = 2n-1-j
    modulo 2n). A cell's pixels form one run [start, end) (cells follow the canvas monotonically), so each
    entry is a few differences of the kernel's running sum, one per mirrored copy of the run in reach: no
    n x n matrix, whatever the canvas size. sigma 0: the plain painting."""
    ordered = np.where(index >= 0, index, np.where(np.arange(n) < np.argmax(index >= 0), -1, cells))
    starts = np.searchsorted(ordered, np.arange(cells), side="left")[None, :]
    ends = np.searchsorted(ordered, np.arange(cells), side="right")[None, :]
    pixel = np.arange(n)[:, None]
    if sigma_px <= 0:
        return ((pixel >= starts) & (pixel < ends)).astype(np.float64)
    radius = int(TRUNCATE * sigma_px + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    running = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])

    def mass(low, high):  # kernel weight on offsets [low, high)
        return running[np.clip(high + radius, 0, 2 * radius + 1)] - running[np.clip(low + radius, 0, 2 * radius + 1)]

    blurred = np.zeros((n, cells))
    for period in range(-(radius // (2 * n)) - 1, radius // (2 * n) + 2):
        shift = 2 * n * period - pixel
        blurred += mass(starts + shift, ends + shift) + mass(2 * n - ends + shift, 2 * n - starts + shift)
    return blurred


def evidence_map(scores: np.ndarray, geometry: ImageGeometry, lam: Optional[float], sigma: float) -> np.ndarray:
    """Steps C-D: (n_image,) token scores -> (H, W) evidence in [0, 1] on the canvas: denoise each token grid,
    paint it (each canvas pixel takes the cell its centre lies in) as attention per original pixel of the
    cell, sum the grids, blur, normalise. Tokens without a cell (CLS, image_newline) take no part. Painting
    and blurring are separable and linear, so each axis is painted and blurred at once (`blurred_painting`)
    and only the finished (H, W) map is dense."""
    x, y = _canvas_centres(geometry)
    sigma_px = sigma_pixels(sigma, len(y), len(x))
    canvas = np.zeros((len(y), len(x)))
    for index, grid in enumerate(geometry.grids):
        view = geometry.views[grid.view]
        cols, rows = _cell_indices(geometry, grid, x, y)
        values = denoise(np.nan_to_num(geometry.to_grid(scores, index), nan=0.0), lam)
        per_pixel = view.scale[0] * view.scale[1] / grid.cell ** 2   # 1 / the cell's area in original pixels
        canvas += blurred_painting(len(y), sigma_px, rows, grid.rows) @ (values * per_pixel) @ \
            blurred_painting(len(x), sigma_px, cols, grid.cols).T
    return normalise(canvas)


def render_view(canvas_map: np.ndarray, geometry: ImageGeometry, view: int) -> np.ndarray:
    """(h, w) over the pixels of `view`: each pixel takes the canvas pixel at the same point of the original
    image (nearest); points beyond the canvas (NeXT's padding strips) take the nearest canvas edge."""
    spec = geometry.views[view]
    x, y = spec.to_original(np.arange(spec.width) + 0.5, np.arange(spec.height) + 0.5)
    y0, x0, height, width = canvas_extent(geometry)
    primary = geometry.views[geometry.grids[geometry.primary].view]
    cx, cy = primary.from_original(x, y)
    cols = np.clip(np.floor(cx - x0).astype(int), 0, width - 1)
    rows = np.clip(np.floor(cy - y0).astype(int), 0, height - 1)
    return canvas_map[rows][:, cols]


def view_factors(evidence: np.ndarray, geometry: ImageGeometry, alpha: float) -> list[np.ndarray]:
    """Eq. 4's brightness factor from the canvas's evidence map, on every view of the image."""
    factor = highlight_factor(evidence, alpha)
    return [render_view(factor, geometry, view) for view in range(len(geometry.views))]
