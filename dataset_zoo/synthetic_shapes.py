"""The shape catalogue of the synthetic scenes: small objects and large anchors drawn with PIL primitives.

Every shape is drawn into a *frame* (its planned bounding box) and reaches the frame's edges, so the
planned frame and the drawn pixels agree up to a pixel. The exact box of a rendered shape is still
measured from the drawn pixels (see `synthetic_scene`), never taken from the frame.

Anchors carry two regions, as fractions of their frame, that the scene layout needs:
`surface` (x0, x1, y): where an object rests when it is "on" the anchor;
`clearance` (x0, y0, x1, y1): the free space beneath the anchor's top where an object "under" it stands.
Controlled-B anchors are solid (front/behind is told by occlusion), so they need neither.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from PIL import ImageDraw

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """The colours one shape is drawn with: its main colour, a darker shade for structure, a lighter one."""

    main: RGB
    dark: RGB
    light: RGB

    @classmethod
    def from_colour(cls, colour: RGB) -> "Palette":
        dark = tuple(int(c * 0.55) for c in colour)
        light = tuple(int(c + (255 - c) * 0.55) for c in colour)
        return cls(tuple(colour), dark, light)


class Frame:
    """Maps fractional shape coordinates (0..1 across the frame) to canvas pixels, optionally mirrored."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float, mirrored: bool = False):
        self.x0, self.y0, self.w, self.h = x0, y0, x1 - x0, y1 - y0
        self.mirrored = mirrored

    def x(self, fx: float) -> float:
        return self.x0 + (1.0 - fx if self.mirrored else fx) * self.w

    def y(self, fy: float) -> float:
        return self.y0 + fy * self.h

    def pt(self, fx: float, fy: float) -> tuple[float, float]:
        return self.x(fx), self.y(fy)

    def box(self, fx0: float, fy0: float, fx1: float, fy1: float) -> list[float]:
        xa, xb = sorted((self.x(fx0), self.x(fx1)))
        # PIL boxes include their right/bottom pixel: pull them in by one so the shape ends at the frame edge.
        return [xa, self.y(fy0), max(xa, xb - 1), max(self.y(fy0), self.y(fy1) - 1)]

    def poly(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(self.x(fx), min(self.y(fy), self.y0 + self.h - 1)) for fx, fy in points]

    def line_width(self, fraction_of_width: float) -> int:
        return max(1, round(self.w * fraction_of_width))


DrawFn = Callable[[ImageDraw.ImageDraw, Frame, Palette], None]


@dataclass(frozen=True)
class ShapeSpec:
    """A named shape: its nominal size as fractions of the image side, how to draw it, and its regions."""

    name: str
    width: float
    height: float
    draw: DrawFn
    surface: Optional[tuple[float, float, float]] = None
    clearance: Optional[tuple[float, float, float, float]] = None


# ---------------------------------------------------------------- small objects
def _ball(d, f, p):
    d.ellipse(f.box(0, 0, 1, 1), fill=p.main)
    d.ellipse(f.box(0.2, 0.15, 0.5, 0.45), fill=p.light)
    d.rectangle(f.box(0.08, 0.55, 0.92, 0.62), fill=p.dark)


def _apple(d, f, p):
    d.ellipse(f.box(0, 0.2, 1, 1), fill=p.main)
    d.rectangle(f.box(0.46, 0, 0.56, 0.3), fill=p.dark)
    d.polygon(f.poly([(0.56, 0.12), (0.85, 0.02), (0.72, 0.2)]), fill=p.dark)


def _mug(d, f, p):
    d.ellipse(f.box(0.55, 0.2, 1, 0.75), fill=p.dark)
    d.ellipse(f.box(0.66, 0.33, 0.89, 0.62), fill=(0, 0, 0, 0))
    d.rectangle(f.box(0, 0, 0.72, 1), fill=p.main)
    d.rectangle(f.box(0, 0, 0.72, 0.1), fill=p.light)


def _cup(d, f, p):
    d.polygon(f.poly([(0, 0), (1, 0), (0.8, 1), (0.2, 1)]), fill=p.main)
    d.rectangle(f.box(0, 0, 1, 0.12), fill=p.dark)


def _bottle(d, f, p):
    d.rectangle(f.box(0, 0.45, 1, 1), fill=p.main)
    d.polygon(f.poly([(0, 0.46), (0.3, 0.3), (0.7, 0.3), (1, 0.46)]), fill=p.main)
    d.rectangle(f.box(0.3, 0.08, 0.7, 0.32), fill=p.main)
    d.rectangle(f.box(0.25, 0, 0.75, 0.1), fill=p.dark)


def _water_bottle(d, f, p):
    d.rounded_rectangle(f.box(0, 0.12, 1, 1), radius=f.w * 0.3, fill=p.main)
    d.rectangle(f.box(0.15, 0, 0.85, 0.14), fill=p.dark)
    d.rectangle(f.box(0, 0.45, 1, 0.7), fill=p.light)


def _book(d, f, p):
    d.rectangle(f.box(0, 0, 1, 1), fill=p.main)
    d.rectangle(f.box(0, 0, 0.12, 1), fill=p.dark)
    d.rectangle(f.box(0.2, 0.4, 0.95, 0.6), fill=p.light)


def _candle(d, f, p):
    d.rectangle(f.box(0.15, 0.35, 0.85, 1), fill=p.main)
    d.polygon(f.poly([(0.5, 0), (0.95, 0.22), (0.5, 0.34), (0.05, 0.22)]), fill=(250, 180, 40))
    d.rectangle(f.box(0.15, 0.35, 0.85, 0.42), fill=p.dark)


def _can(d, f, p):
    d.rectangle(f.box(0, 0.1, 1, 0.9), fill=p.main)
    d.ellipse(f.box(0, 0.8, 1, 1), fill=p.main)
    d.ellipse(f.box(0, 0, 1, 0.2), fill=p.light)
    d.rectangle(f.box(0, 0.42, 1, 0.58), fill=p.dark)


def _phone(d, f, p):
    d.rounded_rectangle(f.box(0, 0, 1, 1), radius=f.w * 0.2, fill=p.dark)
    d.rectangle(f.box(0.14, 0.1, 0.86, 0.86), fill=p.light)


def _plant(d, f, p):
    d.polygon(f.poly([(0.15, 0.6), (0.85, 0.6), (0.72, 1), (0.28, 1)]), fill=p.main)
    for box in ((0.0, 0.15, 0.45, 0.6), (0.55, 0.15, 1.0, 0.6), (0.3, 0.0, 0.7, 0.55)):
        d.ellipse(f.box(*box), fill=p.dark)


def _clock(d, f, p):
    d.ellipse(f.box(0, 0, 1, 1), fill=p.main)
    d.ellipse(f.box(0.15, 0.15, 0.85, 0.85), fill=p.light)
    width = f.line_width(0.08)
    d.line([f.pt(0.5, 0.5), f.pt(0.5, 0.22)], fill=p.dark, width=width)
    d.line([f.pt(0.5, 0.5), f.pt(0.74, 0.6)], fill=p.dark, width=width)


def _vase(d, f, p):
    d.polygon(f.poly([(0.3, 0), (0.7, 0), (0.62, 0.3), (1, 0.6), (0.75, 1), (0.25, 1), (0, 0.6),
                      (0.38, 0.3)]), fill=p.main)
    d.rectangle(f.box(0.28, 0, 0.72, 0.08), fill=p.dark)


def _banana(d, f, p):
    upper = [(i / 8, 0.75 - 0.75 * (1 - (2 * i / 8 - 1) ** 2)) for i in range(9)]
    lower = [(1 - i / 8, 1.0 - 0.55 * (1 - (1 - 2 * i / 8) ** 2)) for i in range(9)]
    d.polygon(f.poly(upper + lower), fill=p.main)
    d.rectangle(f.box(0, 0.55, 0.08, 0.8), fill=p.dark)


def _bowl(d, f, p):
    d.chord(f.box(0, -1, 1, 1), 0, 180, fill=p.main)
    d.rectangle(f.box(0, 0, 1, 0.15), fill=p.dark)


def _toy_car(d, f, p):
    d.polygon(f.poly([(0.22, 0.35), (0.3, 0), (0.68, 0), (0.8, 0.35)]), fill=p.light)
    d.rectangle(f.box(0, 0.3, 1, 0.75), fill=p.main)
    for x0 in (0.1, 0.66):
        d.ellipse(f.box(x0, 0.5, x0 + 0.24, 1), fill=p.dark)


SMALL_OBJECTS: dict[str, ShapeSpec] = {s.name: s for s in (
    ShapeSpec("ball", 0.13, 0.13, _ball),
    ShapeSpec("apple", 0.13, 0.15, _apple),
    ShapeSpec("mug", 0.16, 0.14, _mug),
    ShapeSpec("cup", 0.12, 0.13, _cup),
    ShapeSpec("bottle", 0.07, 0.19, _bottle),
    ShapeSpec("water-bottle", 0.08, 0.19, _water_bottle),
    ShapeSpec("book", 0.17, 0.08, _book),
    ShapeSpec("candle", 0.06, 0.17, _candle),
    ShapeSpec("can", 0.09, 0.13, _can),
    ShapeSpec("phone", 0.08, 0.15, _phone),
    ShapeSpec("plant", 0.14, 0.18, _plant),
    ShapeSpec("clock", 0.14, 0.14, _clock),
    ShapeSpec("vase", 0.1, 0.17, _vase),
    ShapeSpec("banana", 0.17, 0.08, _banana),
    ShapeSpec("bowl", 0.17, 0.08, _bowl),
    ShapeSpec("toy-car", 0.18, 0.1, _toy_car),
)}


# ---------------------------------------------------------------- Controlled-A anchors (with space beneath)
def _legs(d, f, p, top: float, positions: tuple[float, ...], width: float, splay: float = 0.0):
    for x in positions:
        outward = -splay if x < 0.5 else splay if x > 0.5 else 0.0
        foot = min(max(x + outward, 0.0), 1.0 - width)
        d.polygon(f.poly([(x, top), (x + width, top), (foot + width, 1), (foot, 1)]), fill=p.main)


def _table(d, f, p):
    _legs(d, f, p, 0.1, (0.05, 0.87), 0.08)
    d.rectangle(f.box(0, 0, 1, 0.12), fill=p.main)
    d.rectangle(f.box(0, 0.1, 1, 0.14), fill=p.dark)


def _desk(d, f, p):
    _legs(d, f, p, 0.1, (0.03, 0.9), 0.07)
    d.rectangle(f.box(0.6, 0.1, 0.97, 0.55), fill=p.main)
    for y in (0.25, 0.4):
        d.rectangle(f.box(0.6, y, 0.97, y + 0.03), fill=p.dark)
    d.rectangle(f.box(0, 0, 1, 0.11), fill=p.dark)


def _side_table(d, f, p):
    _legs(d, f, p, 0.25, (0.12, 0.8), 0.08, splay=0.1)
    d.rectangle(f.box(0.08, 0.07, 0.92, 0.27), fill=p.main)
    d.rectangle(f.box(0.42, 0.15, 0.58, 0.19), fill=p.dark)
    d.ellipse(f.box(0, 0, 1, 0.12), fill=p.dark)


def _chair(d, f, p):
    _legs(d, f, p, 0.5, (0.0, 0.88), 0.12)
    d.rectangle(f.box(0, 0, 0.14, 0.5), fill=p.main)
    d.rectangle(f.box(0, 0, 0.4, 0.08), fill=p.dark)
    d.rectangle(f.box(0, 0.42, 1, 0.54), fill=p.main)


def _stool(d, f, p):
    _legs(d, f, p, 0.1, (0.1, 0.78), 0.12, splay=0.1)
    d.rectangle(f.box(0, 0, 1, 0.12), fill=p.main)
    d.rectangle(f.box(0, 0.1, 1, 0.14), fill=p.dark)


def _bench(d, f, p):
    for x in (0.04, 0.82):   # trestle legs, wider at the foot: reads as a bench, not a table
        d.polygon(f.poly([(x + 0.04, 0.15), (x + 0.1, 0.15), (x + 0.14, 1), (x, 1)]), fill=p.dark)
    d.rectangle(f.box(0, 0, 1, 0.2), fill=p.main)
    for y in (0.05, 0.12):
        d.rectangle(f.box(0, y, 1, y + 0.03), fill=p.light)


def _shelf(d, f, p):
    for x in (0.0, 0.9):
        d.rectangle(f.box(x, 0, x + 0.1, 1), fill=p.main)
    for y in (0.0, 0.36):
        d.rectangle(f.box(0, y, 1, y + 0.07), fill=p.dark)
    d.rectangle(f.box(0.1, 0.07, 0.9, 0.36), fill=p.light)


ANCHORS_A: dict[str, ShapeSpec] = {s.name: s for s in (
    ShapeSpec("table", 0.46, 0.3, _table, surface=(0.0, 1.0, 0.0), clearance=(0.13, 0.14, 0.87, 1.0)),
    ShapeSpec("desk", 0.48, 0.32, _desk, surface=(0.0, 1.0, 0.0), clearance=(0.1, 0.11, 0.6, 1.0)),
    ShapeSpec("side-table", 0.3, 0.38, _side_table, surface=(0.0, 1.0, 0.0), clearance=(0.2, 0.27, 0.8, 1.0)),
    ShapeSpec("chair", 0.34, 0.5, _chair, surface=(0.14, 1.0, 0.42), clearance=(0.12, 0.54, 0.88, 1.0)),
    ShapeSpec("stool", 0.3, 0.4, _stool, surface=(0.0, 1.0, 0.0), clearance=(0.22, 0.14, 0.78, 1.0)),
    ShapeSpec("bench", 0.54, 0.22, _bench, surface=(0.0, 1.0, 0.0), clearance=(0.18, 0.2, 0.82, 1.0)),
    ShapeSpec("shelf", 0.36, 0.56, _shelf, surface=(0.0, 1.0, 0.0), clearance=(0.1, 0.43, 0.9, 1.0)),
)}


# ---------------------------------------------------------------- Controlled-B anchors (solid, to occlude)
def _box(d, f, p):
    d.rectangle(f.box(0, 0, 1, 1), fill=p.main)
    d.rectangle(f.box(0, 0, 1, 0.14), fill=p.dark)
    d.rectangle(f.box(0.44, 0, 0.56, 1), fill=p.light)


def _crate(d, f, p):
    d.rectangle(f.box(0, 0, 1, 1), fill=p.main)
    for y in (0.3, 0.62):
        d.rectangle(f.box(0, y, 1, y + 0.06), fill=p.dark)
    for x in (0.0, 0.9):
        d.rectangle(f.box(x, 0, x + 0.1, 1), fill=p.dark)


def _cabinet(d, f, p):
    for x in (0.04, 0.86):
        d.rectangle(f.box(x, 0.9, x + 0.1, 1), fill=p.dark)
    d.rectangle(f.box(0, 0, 1, 0.92), fill=p.main)
    d.rectangle(f.box(0.48, 0.04, 0.52, 0.88), fill=p.dark)
    for x in (0.38, 0.58):
        d.ellipse(f.box(x, 0.45, x + 0.06, 0.5), fill=p.light)


def _dresser(d, f, p):
    d.rectangle(f.box(0, 0, 1, 1), fill=p.main)
    for y in (0.33, 0.66):
        d.rectangle(f.box(0.03, y, 0.97, y + 0.04), fill=p.dark)
    for y in (0.14, 0.47, 0.8):
        d.rectangle(f.box(0.44, y, 0.56, y + 0.06), fill=p.light)


def _bin(d, f, p):
    d.polygon(f.poly([(0, 0), (1, 0), (0.85, 1), (0.15, 1)]), fill=p.main)
    d.rectangle(f.box(0, 0, 1, 0.1), fill=p.dark)


def _barrel(d, f, p):
    d.ellipse(f.box(0, 0, 1, 1), fill=p.main)
    d.rectangle(f.box(0.1, 0, 0.9, 1), fill=p.main)
    for y in (0.2, 0.75):
        d.rectangle(f.box(0.02, y, 0.98, y + 0.06), fill=p.dark)


def _sofa(d, f, p):
    d.rectangle(f.box(0.08, 0, 0.92, 0.6), fill=p.main)
    d.rectangle(f.box(0, 0.45, 1, 0.9), fill=p.main)
    for x in (0.0, 0.84):
        d.rectangle(f.box(x, 0.3, x + 0.16, 0.9), fill=p.dark)
    for x in (0.06, 0.88):
        d.rectangle(f.box(x, 0.88, x + 0.06, 1), fill=p.dark)
    d.rectangle(f.box(0.16, 0.5, 0.84, 0.6), fill=p.light)


ANCHORS_B: dict[str, ShapeSpec] = {s.name: s for s in (
    ShapeSpec("box", 0.36, 0.3, _box),
    ShapeSpec("crate", 0.38, 0.3, _crate),
    ShapeSpec("cabinet", 0.3, 0.42, _cabinet),
    ShapeSpec("dresser", 0.42, 0.34, _dresser),
    ShapeSpec("bin", 0.26, 0.32, _bin),
    ShapeSpec("barrel", 0.28, 0.34, _barrel),
    ShapeSpec("sofa", 0.5, 0.28, _sofa),
)}
