"""In-memory rendering of one synthetic two-object scene: layout, colours, background and exact boxes.

`render_scene` is what a training loop calls: no files, deterministic given the `random.Random` it is
handed, and it consumes the same number of random draws whatever `spread` is, so one seed gives the
same scene (same shapes, sizes, colours) at every curriculum stage, only placed closer to or farther
from the canonical layout.

Layout, in pixels with y pointing down. The anchor stands on a floor line; the object is placed
relative to it by the relation:
  left / right  object on the floor beside the anchor, boxes disjoint, a gap between them;
  on            object resting on the anchor's support surface (table top, chair seat);
  under         object on the floor inside the anchor's clearance (between the legs, below the top);
  front (B)     object drawn over the anchor, 20% larger, its bottom below the anchor's bottom;
  behind (B)    object drawn first, 15% smaller, its bottom above the anchor's bottom and 30-60% of
                it hidden behind the anchor.
The group (object plus anchor) is then shifted by `spread` times a random fraction of the free room
on each side: spread 0 keeps the anchor centred with its bottom at 82% of the height, spread 1 lets
the group go anywhere that keeps it inside the image.

Boxes are (x0, y0, x1, y1) in pixels with x1/y1 exclusive (`array[y0:y1, x0:x1]` is the box), measured
from the drawn pixels of each shape on its own layer. They are amodal: a partly hidden object's box
covers the whole object, including the part behind the anchor.
"""
from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
from PIL import Image, ImageDraw

from common.errors import ToolkitError
from dataset_zoo.synthetic_shapes import ANCHORS_A, ANCHORS_B, RGB, SMALL_OBJECTS, Frame, Palette, ShapeSpec

Box = tuple[int, int, int, int]

RELATIONS = {"A": ("left", "right", "on", "under"), "B": ("left", "right", "front", "behind")}
ANCHORS = {"A": ANCHORS_A, "B": ANCHORS_B}
# Colour words that may prefix an object name ("red-mug"): they fix the object's colour.
COLOUR_WORDS: dict[str, RGB] = {
    "red": (200, 35, 35), "blue": (35, 75, 200), "green": (35, 140, 55), "yellow": (225, 185, 20),
    "purple": (125, 55, 165), "orange": (235, 115, 20), "black": (30, 30, 30), "pink": (220, 80, 150),
    "brown": (115, 70, 35),
}
_RELATION_ALIASES = {"in-front": "front", "in front of": "front", "left_of": "left", "right_of": "right"}

_SUPERSAMPLE = 2          # shapes are drawn at 2x and box-filtered down, for smooth edges
_MARGIN = 2               # px kept free at the image border
_CANONICAL_FLOOR = 0.82   # anchor bottom at spread 0, as a fraction of the image height
_GAP_MIN = 2.0            # px between object and anchor for left/right
_GAP_MAX = 0.1            # extra gap at spread 1, fraction of the image side
_MIN_CONTRAST = 120.0     # RGB distance of object/anchor colours from the background
_MIN_SEPARATION = 110.0   # RGB distance between object and anchor colours


@dataclass(frozen=True)
class PlacedShape:
    """A shape, the frame (x0, y0, x1, y1 in output pixels) it is drawn into, and how it is drawn."""

    spec: ShapeSpec
    frame: tuple[float, float, float, float]
    colour: RGB
    mirrored: bool


@dataclass(frozen=True)
class ScenePlan:
    """Everything needed to draw a scene; `layers` are (role, shape) in drawing order (back first)."""

    size: int
    wall: RGB
    floor: RGB
    horizon: int
    noise_seed: int
    layers: tuple[tuple[str, PlacedShape], ...]


def normalise_variant(variant: str) -> str:
    """'a'/'A' -> 'A', 'b'/'B' -> 'B'; anything else is a user error."""
    key = str(variant).upper()
    if key not in RELATIONS:
        raise ToolkitError(f"unknown synthetic variant {variant!r}; use 'A' (left/right/on/under) or "
                           f"'B' (left/right/front/behind)")
    return key


def normalise_relation(relation: str, variant: str) -> str:
    """Accept the relation word or its file-name slot ('in-front') and check it belongs to the variant."""
    rel = _RELATION_ALIASES.get(relation, relation)
    if rel not in RELATIONS[variant]:
        raise ToolkitError(f"relation {relation!r} is not a Controlled-{variant} relation; use one of "
                           f"{', '.join(RELATIONS[variant])}")
    return rel


def object_spec(name: str) -> tuple[ShapeSpec, Optional[RGB]]:
    """The shape of a small-object name and the colour its colour word fixes (None if it has none)."""
    if name in SMALL_OBJECTS:
        return SMALL_OBJECTS[name], None
    word, _, rest = name.partition("-")
    if word in COLOUR_WORDS and rest in SMALL_OBJECTS:
        return SMALL_OBJECTS[rest], COLOUR_WORDS[word]
    raise ToolkitError(f"unknown synthetic object {name!r}; use one of {', '.join(SMALL_OBJECTS)}, "
                       f"optionally prefixed by a colour ({', '.join(COLOUR_WORDS)}), e.g. 'red-mug'")


def anchor_spec(name: str, variant: str) -> ShapeSpec:
    if name not in ANCHORS[variant]:
        raise ToolkitError(f"unknown Controlled-{variant} anchor {name!r}; use one of "
                           f"{', '.join(ANCHORS[variant])}")
    return ANCHORS[variant][name]


# ---------------------------------------------------------------- colours
def _rgb_from_hsv(h: float, s: float, v: float) -> RGB:
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))


def _distance(a: RGB, b: RGB) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5)


def _background_colours(rng: random.Random) -> tuple[RGB, RGB]:
    hue, sat, val = rng.random(), rng.uniform(0.03, 0.2), rng.uniform(0.88, 0.98)
    wall = _rgb_from_hsv(hue, sat, val)
    floor = _rgb_from_hsv((hue + rng.uniform(-0.1, 0.1)) % 1.0, sat, val - rng.uniform(0.04, 0.1))
    return wall, floor


def _shape_colour(rng: random.Random, avoid: list[RGB], fixed: Optional[RGB], distances: list[float]) -> RGB:
    """A saturated colour far enough from every colour in `avoid`; always draws 30 candidates so the
    number of random draws does not depend on which candidate is accepted."""
    candidates = [_rgb_from_hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.85)) for _ in range(30)]
    if fixed is not None:
        return fixed
    for colour in candidates:
        if all(_distance(colour, a) >= d for a, d in zip(avoid, distances)):
            return colour
    return max(candidates, key=lambda c: min(_distance(c, a) - d for a, d in zip(avoid, distances)))


def _pick_colours(rng: random.Random, fixed_object: Optional[RGB], given: Mapping[str, RGB]):
    wall, floor = _background_colours(rng)
    if "background" in given:
        wall = floor = tuple(given["background"])
    obj = _shape_colour(rng, [wall, floor], given.get("object", fixed_object), [_MIN_CONTRAST] * 2)
    anchor = _shape_colour(rng, [wall, floor, obj], given.get("anchor"),
                           [_MIN_CONTRAST, _MIN_CONTRAST, _MIN_SEPARATION])
    return wall, floor, tuple(obj), tuple(anchor)


# ---------------------------------------------------------------- layout
def _object_frame(relation: str, anchor: tuple[float, float, float, float], spec: ShapeSpec,
                  ow: float, oh: float, size: int, spread: float, u: tuple[float, float]):
    """The object's frame relative to the (canonically placed) anchor frame."""
    ax0, ay0, ax1, ay1 = anchor
    aw, ah = ax1 - ax0, ay1 - ay0
    if relation in ("left", "right"):
        room = size - 2 * _MARGIN - aw - ow - _GAP_MIN
        gap = _GAP_MIN + spread * (u[0] + 1) / 2 * max(0.0, min(_GAP_MAX * size, room))
        bottom = ay1 + spread * u[1] * 0.03 * size
        x0 = ax0 - gap - ow if relation == "left" else ax1 + gap
        return x0, bottom - oh, x0 + ow, bottom
    if relation == "on":
        sx0, sx1, sy = spec.surface
        left, right = ax0 + sx0 * aw, ax0 + sx1 * aw
        cx = (left + right) / 2 + spread * u[0] * max(0.0, (right - left - ow) / 2)
        top = ay0 + sy * ah
        return cx - ow / 2, top - oh, cx + ow / 2, top
    if relation == "under":
        cx0, cy0, cx1, _ = spec.clearance
        left, right, ceiling = ax0 + cx0 * aw, ax0 + cx1 * aw, ay0 + cy0 * ah
        fit = min(1.0, (right - left - 2) / ow, (ay1 - ceiling - 2) / oh)
        ow, oh = ow * fit, oh * fit
        cx = (left + right) / 2 + spread * u[0] * max(0.0, (right - left - ow) / 2 - 1)
        return cx - ow / 2, ay1 - oh, cx + ow / 2, ay1
    acx = (ax0 + ax1) / 2
    cx = acx + spread * u[0] * 0.35 * aw
    if relation == "front":
        ow, oh = ow * 1.2, oh * 1.2
        bottom = ay1 + min(0.5 * oh, (0.06 + 0.03 * spread * u[1]) * size)
    else:  # behind
        ow, oh = ow * 0.85, oh * 0.85
        bottom = ay0 + (0.45 + 0.15 * spread * u[1]) * oh
    return cx - ow / 2, bottom - oh, cx + ow / 2, bottom


def _mirror_region_x(spec: ShapeSpec, mirrored: bool) -> ShapeSpec:
    """Mirror the anchor's surface/clearance x-fractions when the anchor is drawn mirrored."""
    if not mirrored or spec.surface is None:
        return spec
    sx0, sx1, sy = spec.surface
    cx0, cy0, cx1, cy1 = spec.clearance
    return ShapeSpec(spec.name, spec.width, spec.height, spec.draw, (1 - sx1, 1 - sx0, sy),
                     (1 - cx1, cy0, 1 - cx0, cy1))


def _shift(frame, dx: float, dy: float):
    x0, y0, x1, y1 = frame
    return x0 + dx, y0 + dy, x1 + dx, y1 + dy


def _group_offset(frames, size: int, spread: float, u: tuple[float, float]) -> tuple[float, float]:
    """Move the group into the image (canonical position), then by spread x a random share of the room."""
    lo_x, lo_y = min(f[0] for f in frames), min(f[1] for f in frames)
    hi_x, hi_y = max(f[2] for f in frames), max(f[3] for f in frames)
    offsets = []
    for lo, hi, r in ((lo_x, hi_x, u[0]), (lo_y, hi_y, u[1])):
        low_room, high_room = lo - _MARGIN, size - _MARGIN - hi
        base = max(-low_room, 0.0) - max(-high_room, 0.0)   # pull back inside if the canonical layout spills
        low_room, high_room = low_room + base, high_room - base
        offsets.append(base + spread * r * (high_room if r > 0 else low_room))
    return offsets[0], offsets[1]


def plan_scene(obj: str, relation: str, anchor: str, rng: random.Random, *, variant: str = "A",
               size: int = 96, spread: float = 1.0, colours: Optional[Mapping[str, RGB]] = None) -> ScenePlan:
    """Decide shapes, colours and frames of a scene (see the module docstring for the layout rules)."""
    variant = normalise_variant(variant)
    relation = normalise_relation(relation, variant)
    if not 0.0 <= spread <= 1.0:
        raise ToolkitError(f"spread must be in [0, 1], got {spread}")
    if size < 48:
        raise ToolkitError(f"image size must be at least 48 px, got {size}")
    o_spec, fixed_colour = object_spec(obj)
    a_spec = anchor_spec(anchor, variant)
    wall, floor, o_colour, a_colour = _pick_colours(rng, fixed_colour, colours or {})
    horizon = round(size * rng.uniform(0.45, 0.7))
    noise_seed = rng.getrandbits(32)
    a_mirror, o_mirror = rng.random() < 0.5, rng.random() < 0.5
    a_scale, o_scale = rng.uniform(0.9, 1.1), rng.uniform(0.88, 1.12)
    u = [rng.uniform(-1.0, 1.0) for _ in range(4)]

    a_spec_placed = _mirror_region_x(a_spec, a_mirror)
    aw, ah = a_spec.width * size * a_scale, a_spec.height * size * a_scale
    a_frame = (size / 2 - aw / 2, _CANONICAL_FLOOR * size - ah, size / 2 + aw / 2, _CANONICAL_FLOOR * size)
    o_frame = _object_frame(relation, a_frame, a_spec_placed, o_spec.width * size * o_scale,
                            o_spec.height * size * o_scale, size, spread, (u[2], u[3]))
    dx, dy = _group_offset([a_frame, o_frame], size, spread, (u[0], u[1]))
    anchor_shape = PlacedShape(a_spec, _shift(a_frame, dx, dy), a_colour, a_mirror)
    object_shape = PlacedShape(o_spec, _shift(o_frame, dx, dy), o_colour, o_mirror)
    layers = ((("object", object_shape), ("anchor", anchor_shape)) if relation == "behind"
              else (("anchor", anchor_shape), ("object", object_shape)))
    return ScenePlan(size, wall, floor, horizon, noise_seed, layers)


# ---------------------------------------------------------------- drawing
def _background(plan: ScenePlan, texture: bool) -> Image.Image:
    pixels = np.empty((plan.size, plan.size, 3), dtype=np.int16)
    pixels[:plan.horizon] = plan.wall
    pixels[plan.horizon:] = plan.floor
    if texture:
        noise = np.random.default_rng(plan.noise_seed)
        pixels += noise.integers(-5, 6, size=(plan.size, plan.size, 1), dtype=np.int16)
        # faint floor boards: every few rows a slightly darker line, a light cue for "floor" without clutter
        pixels[plan.horizon::max(4, plan.size // 12)] -= 8
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _shape_layer(shape: PlacedShape, size: int) -> Image.Image:
    big = Image.new("RGBA", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), (0, 0, 0, 0))
    x0, y0, x1, y1 = (c * _SUPERSAMPLE for c in shape.frame)
    shape.spec.draw(ImageDraw.Draw(big), Frame(x0, y0, x1, y1, shape.mirrored), Palette.from_colour(shape.colour))
    return big.reduce(_SUPERSAMPLE)


def draw_scene(plan: ScenePlan, *, texture: bool = True) -> tuple[Image.Image, dict[str, Box]]:
    """Composite the planned shapes over the background; return the RGB image and each shape's box
    (a plan with a layer removed draws the scene without that shape, which the tests use)."""
    canvas = _background(plan, texture).convert("RGBA")
    boxes: dict[str, Box] = {}
    for role, shape in plan.layers:
        layer = _shape_layer(shape, plan.size)
        box = layer.getchannel("A").getbbox()
        if box is None:
            raise ValueError(f"{shape.spec.name} was planned outside the image: {shape.frame}")
        boxes[role] = tuple(int(c) for c in box)
        canvas.alpha_composite(layer)
    return canvas.convert("RGB"), {role: boxes[role] for role in ("object", "anchor") if role in boxes}


def render_scene(obj: str, relation: str, anchor: str, rng: random.Random, *, variant: str = "A",
                 size: int = 96, spread: float = 1.0, colours: Optional[Mapping[str, RGB]] = None,
                 texture: bool = True) -> tuple[Image.Image, dict[str, Box]]:
    """Render `obj` in `relation` to `anchor` and return (RGB image, {"object": box, "anchor": box}).

    obj: a small-object name ("mug", "water-bottle", optionally colour-prefixed: "red-mug").
    relation: left/right/on/under (variant A) or left/right/front/behind (variant B); "in-front" works too.
    anchor: a name from ANCHORS[variant]. spread: 0 = canonical layout, 1 = full random placement.
    colours: optional fixed {"object", "anchor", "background"} RGB colours (others stay random).
    texture: False draws a flat background (wall/floor tones only), for tests and figures.
    """
    plan = plan_scene(obj, relation, anchor, rng, variant=variant, size=size, spread=spread, colours=colours)
    return draw_scene(plan, texture=texture)


def sample_scene(rng: random.Random, *, variant: str = "A", size: int = 96, spread: float = 1.0,
                 base_names_only: bool = True):
    """Draw a random (object, relation, anchor) and render it: one training example.

    Returns (image, boxes, obj, relation, anchor). Colour-prefixed object names are used only when
    `base_names_only` is False.
    """
    variant = normalise_variant(variant)
    names = list(SMALL_OBJECTS)
    if not base_names_only:
        names += [f"{c}-{n}" for c in COLOUR_WORDS for n in SMALL_OBJECTS]
    obj, relation, anchor = rng.choice(names), rng.choice(RELATIONS[variant]), rng.choice(list(ANCHORS[variant]))
    image, boxes = render_scene(obj, relation, anchor, rng, variant=variant, size=size, spread=spread)
    return image, boxes, obj, relation, anchor
