"""Where each image token of a prompt sits in the image: grids of cells, and the way back to original pixels.

The types; `model_zoo.geometry.image_geometries` builds them from a model's inputs.

    from model_zoo.geometry import image_geometries
    geometries = image_geometries(vlm, inputs, [image.size for image in images])   # one per batch row
    g = geometries[0]
    g.positions                     # (n,) positions of the row's image tokens in input_ids
    g.to_grid(attention)            # (..., n) values over the image tokens -> (..., rows, cols) of the main grid
    g.token_boxes()                 # (n, 4) each token's cell in ORIGINAL image pixels (NaN: no cell)
    g.paint(attention)              # (H, W) map over the original image (NaN where no token looks)
    g.coverage(mask)                # (n,) share of each token's cell inside a boolean (H, W) mask

Per family (model_zoo.geometry derives each from the processor's real outputs: the image-token
count in input_ids, `pixel_values`' shape, `image_sizes`, `image_grid_thw`, and the image processor's
resize/crop settings; a count that disagrees with input_ids is an error, never a silent misplacement):

* LLaVA-1.5: one view, the image resized (shortest edge) and center-cropped (336 x 336), a row-major grid of
  (336/14)^2 = 24 x 24 tokens. Pixels outside the crop are seen by no token.
* LLaVA-1.6 (NeXT, anyres): a "base" view (the whole image squashed to 336 x 336, 24 x 24 tokens, first)
  and a "tiles" view: the image resized into the best grid resolution, padded to it, cut into 336-px tiles;
  their features form one big grid (tiles x 24 per side), of which the model keeps the rows/cols that are
  not padding ("unpadding") and ends each row with an `image_newline` token (a token with no cell).
* Qwen2-VL / 2.5-VL / 3-VL: one view, the image resized to a multiple of patch x merge (smart_resize, sides
  from `image_grid_thw`), a row-major grid of merged tokens, each covering merge x merge patches.

Coordinates: a view maps original pixels affinely, processed = original * scale + offset, with pixel edges
as coordinates (the original image spans [0, W] x [0, H]).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class View:
    """One image the vision tower sees: `height` x `width` processed pixels, affine in original pixels."""

    name: str
    height: int
    width: int
    scale: tuple[float, float]   # (sx, sy)
    offset: tuple[float, float]  # (ox, oy)

    def to_original(self, x, y):
        """Processed coordinates -> original coordinates (arrays or floats)."""
        return (np.asarray(x, dtype=float) - self.offset[0]) / self.scale[0], \
               (np.asarray(y, dtype=float) - self.offset[1]) / self.scale[1]

    def from_original(self, x, y):
        return np.asarray(x, dtype=float) * self.scale[0] + self.offset[0], \
               np.asarray(y, dtype=float) * self.scale[1] + self.offset[1]


@dataclass(frozen=True)
class Grid:
    """A rectangular grid of tokens over a view: cell (r, c) covers view pixels
    [(col0 + c) * cell, (col0 + c + 1) * cell) x [(row0 + r) * cell, ...)."""

    name: str
    view: int
    rows: int
    cols: int
    cell: int
    row0: int = 0
    col0: int = 0


@dataclass(frozen=True)
class ImageGeometry:
    """The image tokens of one prompt row (see the module docstring).

    token_grid: (n,) index into `grids` per token, -1 for tokens without a cell (CLS, image_newline);
    token_cell: (n, 2) (row, col) within that grid (-1 without a cell); primary: the grid maps are drawn on.
    """

    family: str
    image_size: tuple[int, int]
    positions: np.ndarray
    views: tuple[View, ...]
    grids: tuple[Grid, ...]
    token_grid: np.ndarray
    token_cell: np.ndarray
    primary: int = 0

    @property
    def n_tokens(self) -> int:
        return len(self.positions)

    def grid_tokens(self, grid: int | None = None) -> np.ndarray:
        """(rows, cols) token index per cell of a grid (default: the primary one)."""
        index = self.primary if grid is None else grid
        spec = self.grids[index]
        tokens = np.full((spec.rows, spec.cols), -1, dtype=np.int64)
        chosen = np.nonzero(self.token_grid == index)[0]
        tokens[self.token_cell[chosen, 0], self.token_cell[chosen, 1]] = chosen
        return tokens

    def to_grid(self, values, grid: int | None = None) -> np.ndarray:
        """(..., n) values over the image tokens -> (..., rows, cols); cells without a token are NaN."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != self.n_tokens:
            raise ValueError(f"expected {self.n_tokens} values over the image tokens, got {values.shape[-1]}")
        tokens = self.grid_tokens(grid)
        out = np.take(values, np.maximum(tokens, 0), axis=-1)
        return np.where(tokens >= 0, out, np.nan)

    def token_boxes(self) -> np.ndarray:
        """(n, 4) each token's cell as (x0, y0, x1, y1) in original pixels; NaN rows for tokens without a cell.
        Boxes may reach outside the image (cells over padding) and are not clipped."""
        boxes = np.full((self.n_tokens, 4), np.nan)
        for index, spec in enumerate(self.grids):
            chosen = np.nonzero(self.token_grid == index)[0]
            rows, cols = self.token_cell[chosen, 0] + spec.row0, self.token_cell[chosen, 1] + spec.col0
            view = self.views[spec.view]
            x0, y0 = view.to_original(cols * spec.cell, rows * spec.cell)
            x1, y1 = view.to_original((cols + 1) * spec.cell, (rows + 1) * spec.cell)
            boxes[chosen] = np.stack([x0, y0, x1, y1], axis=1)
        return boxes

    def coverage(self, mask: np.ndarray) -> np.ndarray:
        """(n,) share of each token's cell (its full area, padding included) whose pixels lie in `mask`
        (a boolean (H, W) array over the original image); 0 for tokens without a cell."""
        height, width = mask.shape
        if (width, height) != tuple(self.image_size):
            raise ValueError(f"mask is {width}x{height}, the image {self.image_size[0]}x{self.image_size[1]}")
        integral = np.pad(np.cumsum(np.cumsum(mask.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
        boxes = self.token_boxes()
        valid = ~np.isnan(boxes[:, 0])
        out = np.zeros(self.n_tokens)
        if not valid.any():
            return out
        b = boxes[valid]
        # pixels whose centres lie inside the box (rounding the box edges to pixel boundaries)
        x0, x1 = (np.clip(np.round(b[:, i]), 0, width).astype(int) for i in (0, 2))
        y0, y1 = (np.clip(np.round(b[:, i]), 0, height).astype(int) for i in (1, 3))
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-12)
        out[valid] = np.minimum(inside / area, 1.0)
        return out

    def paint(self, values, grid: int | None = None) -> np.ndarray:
        """(n,) values -> (H, W) over the original image: each pixel takes the value of the cell of `grid`
        (default primary) its centre falls in; NaN where no cell of that grid looks (e.g. cropped away)."""
        index = self.primary if grid is None else grid
        spec, cells = self.grids[index], self.to_grid(values, index)
        view = self.views[spec.view]
        width, height = self.image_size
        px, py = view.from_original(np.arange(width) + 0.5, np.arange(height) + 0.5)
        cols = np.floor(px / spec.cell).astype(int) - spec.col0
        rows = np.floor(py / spec.cell).astype(int) - spec.row0
        inside_c, inside_r = (cols >= 0) & (cols < spec.cols), (rows >= 0) & (rows < spec.rows)
        out = cells[np.clip(rows, 0, spec.rows - 1)][:, np.clip(cols, 0, spec.cols - 1)]
        return np.where(inside_r[:, None] & inside_c[None, :], out, np.nan)

    def paint_view(self, view_values: np.ndarray, view: int) -> np.ndarray:
        """(h, w) values over the pixels of a view -> (H, W) over the original image, nearest processed pixel;
        0 where the view does not reach (an original pixel no processed pixel samples)."""
        spec = self.views[view]
        width, height = self.image_size
        px, py = spec.from_original(np.arange(width) + 0.5, np.arange(height) + 0.5)
        cols, rows = np.floor(px).astype(int), np.floor(py).astype(int)
        inside = ((rows >= 0) & (rows < spec.height))[:, None] & ((cols >= 0) & (cols < spec.width))[None, :]
        out = view_values[np.clip(rows, 0, spec.height - 1)][:, np.clip(cols, 0, spec.width - 1)]
        return np.where(inside, out, 0.0)

    def to_dict(self) -> dict:
        return {"family": self.family, "image_size": list(self.image_size), "positions": self.positions.tolist(),
                "views": [asdict(v) for v in self.views], "grids": [asdict(g) for g in self.grids],
                "token_grid": self.token_grid.tolist(), "token_cell": self.token_cell.tolist(),
                "primary": self.primary}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "ImageGeometry":
        views = tuple(View(v["name"], v["height"], v["width"], tuple(v["scale"]), tuple(v["offset"]))
                      for v in data["views"])
        return cls(data["family"], tuple(data["image_size"]), np.asarray(data["positions"], dtype=np.int64), views,
                   tuple(Grid(**g) for g in data["grids"]), np.asarray(data["token_grid"], dtype=np.int64),
                   np.asarray(data["token_cell"], dtype=np.int64).reshape(-1, 2), data["primary"])

    @classmethod
    def from_json(cls, text: str) -> "ImageGeometry":
        return cls.from_dict(json.loads(text))


def grid_tokens(grid_index: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """token_grid / token_cell of a row-major grid."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.full(rows * cols, grid_index, dtype=np.int64), np.stack([r, c], axis=1)


def cell_less(count: int) -> tuple[np.ndarray, np.ndarray]:
    """token_grid / token_cell of `count` tokens without a cell (CLS, image_newline)."""
    return np.full(count, -1, dtype=np.int64), np.full((count, 2), -1, dtype=np.int64)


def concatenate(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    grids = [p[0] for p in parts]
    cells = [p[1] for p in parts]
    return np.concatenate(grids) if grids else np.zeros(0, np.int64), \
        np.concatenate(cells) if cells else np.zeros((0, 2), np.int64)

