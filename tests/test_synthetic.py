"""Synthetic Controlled scenes: determinism, the exact Controlled format, exact boxes, true relations,
the spread curriculum knob, and atomic writing."""
from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from common.errors import ToolkitError
from dataset_zoo import synthetic
from dataset_zoo.synthetic import (ANCHORS, RELATIONS, SMALL_OBJECTS, annotation_path, boxes_path, caption,
                                   ensure_synthetic_controlled, file_name, image_dir, load_boxes, render_scene,
                                   sample_scene, write_controlled_dataset)
from dataset_zoo.synthetic_scene import draw_scene, plan_scene

# Fixed, far-apart colours for the pixel-exact tests: every shade of the object differs from every shade of the
# anchor and from the background, so a shape's pixels are exactly those that change when it is removed.
FIXED = {"object": (200, 30, 30), "anchor": (30, 60, 200), "background": (240, 240, 240)}
SLOT_TO_RELATION = {"left": "left", "right": "right", "on": "on", "under": "under", "in-front": "front",
                    "behind": "behind"}
CAPTION_PHRASE = {"left": "to the left of", "right": "to the right of", "on": "on", "under": "under",
                  "front": "in front of", "behind": "behind"}


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def _changed_bbox(a: Image.Image, b: Image.Image):
    """(x0, y0, x1, y1) of the pixels that differ between two images (x1/y1 exclusive), and their count."""
    ys, xs = np.nonzero(np.any(_pixels(a) != _pixels(b), axis=2))
    if len(xs) == 0:
        return None, 0
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), len(xs)


def _without(plan, *roles):
    return dataclasses.replace(plan, layers=tuple(layer for layer in plan.layers if layer[0] not in roles))


def _plan(obj, relation, anchor, seed, variant, spread=1.0, colours=None):
    return plan_scene(obj, relation, anchor, random.Random(seed), variant=variant, spread=spread, colours=colours)


def _all_scenes(variant, seeds=(0, 1)):
    """Every object, every anchor and relation of a variant, objects cycled so the set stays small."""
    objects = list(SMALL_OBJECTS)
    k = 0
    for seed in seeds:
        for anchor in ANCHORS[variant]:
            for relation in RELATIONS[variant]:
                yield objects[k % len(objects)], relation, anchor, seed
                k += 1


# ---------------------------------------------------------------- renderer
def test_render_is_deterministic_and_seed_dependent():
    img1, boxes1 = render_scene("mug", "on", "table", random.Random(7))
    img2, boxes2 = render_scene("mug", "on", "table", random.Random(7))
    img3, boxes3 = render_scene("mug", "on", "table", random.Random(8))
    assert img1.size == (96, 96) and img1.mode == "RGB"
    assert np.array_equal(_pixels(img1), _pixels(img2)) and boxes1 == boxes2
    assert not np.array_equal(_pixels(img1), _pixels(img3))


@pytest.mark.parametrize("variant", ["A", "B"])
def test_boxes_are_exactly_the_drawn_pixels(variant):
    """Removing a shape from the scene changes exactly the pixels inside its box, and its box is tight
    (for an unoccluded shape, the changed pixels span the whole box), on a textured background."""
    for obj, relation, anchor, seed in _all_scenes(variant):
        plan = _plan(obj, relation, anchor, seed, variant, colours=FIXED)
        full, boxes = draw_scene(plan)
        for role in ("object", "anchor"):
            without, _ = draw_scene(_without(plan, role))
            changed, _ = _changed_bbox(full, without)
            box = boxes[role]
            occluded = (role == "object" and relation == "behind") or (role == "anchor" and relation == "front")
            x0, y0, x1, y1 = changed
            assert box[0] <= x0 and box[1] <= y0 and x1 <= box[2] and y1 <= box[3], (obj, relation, anchor, role)
            if not occluded:
                assert changed == box, (obj, relation, anchor, role)


def test_boxes_hold_with_random_colours():
    """With the random palette, every pixel that differs from a flat background lies in a box, and the
    changed pixels span the union of the two boxes (object and anchor stay visible against the background)."""
    for seed in range(40):
        variant = "AB"[seed % 2]
        rng = random.Random(seed)
        obj = rng.choice(list(SMALL_OBJECTS))
        relation, anchor = rng.choice(RELATIONS[variant]), rng.choice(list(ANCHORS[variant]))
        plan = _plan(obj, relation, anchor, seed, variant, colours={"background": (238, 236, 230)})
        full, boxes = draw_scene(plan, texture=False)
        empty, _ = draw_scene(_without(plan, "object", "anchor"), texture=False)
        changed, _ = _changed_bbox(full, empty)
        union = tuple(f(boxes["object"][i], boxes["anchor"][i]) for i, f in enumerate((min, min, max, max)))
        assert changed == union, (obj, relation, anchor)


def _surface_y(plan):
    shape = dict(plan.layers)["anchor"]
    return shape.frame[1] + shape.spec.surface[2] * (shape.frame[3] - shape.frame[1])


@pytest.mark.parametrize("spread", [0.0, 0.5, 1.0])
def test_controlled_a_relations_are_geometrically_true(spread):
    for seed in range(12):
        for obj, relation, anchor, _ in _all_scenes("A", seeds=(seed,)):
            plan = _plan(obj, relation, anchor, seed, "A", spread=spread)
            _, boxes = draw_scene(plan, texture=False)
            (ox0, oy0, ox1, oy1), (ax0, ay0, ax1, ay1) = boxes["object"], boxes["anchor"]
            ocx, acx = (ox0 + ox1) / 2, (ax0 + ax1) / 2
            where = (obj, relation, anchor, seed, spread)
            if relation == "left":
                assert ox1 <= ax0 and ocx < acx, where
            elif relation == "right":
                assert ox0 >= ax1 and ocx > acx, where
            elif relation == "on":
                assert abs(oy1 - _surface_y(plan)) <= 1.5 and ax0 <= ocx <= ax1, where
                assert oy1 <= ay0 + 0.5 * (ay1 - ay0), where     # rests on the upper part of the anchor
            else:  # under: on the floor beneath the anchor's top, between its sides
                assert abs(oy1 - ay1) <= 1 and oy0 > _surface_y(plan) and ax0 < ox0 and ox1 < ax1, where


def _visible_pixels(plan, role):
    """How many pixels of `role` are visible in the scene, and how many it has when drawn alone."""
    empty = draw_scene(_without(plan, "object", "anchor"))[0]
    other = "anchor" if role == "object" else "object"
    visible = _changed_bbox(draw_scene(plan)[0], draw_scene(_without(plan, role))[0])[1]
    alone = _changed_bbox(draw_scene(_without(plan, other))[0], empty)[1]
    return visible, alone


@pytest.mark.parametrize("spread", [0.0, 1.0])
def test_controlled_b_relations_use_occlusion_height_and_size(spread):
    for seed in range(6):
        for obj, relation, anchor, _ in _all_scenes("B", seeds=(seed,)):
            plan = _plan(obj, relation, anchor, seed, "B", spread=spread, colours=FIXED)
            _, boxes = draw_scene(plan)
            (ox0, oy0, ox1, oy1), (ax0, ay0, ax1, ay1) = boxes["object"], boxes["anchor"]
            where = (obj, relation, anchor, seed, spread)
            if relation == "left":
                assert ox1 <= ax0, where
            elif relation == "right":
                assert ox0 >= ax1, where
            else:
                assert ox0 < ax1 and ax0 < ox1 and oy0 < ay1 and ay0 < oy1, where   # the boxes overlap
                visible, alone = _visible_pixels(plan, "object")
                if relation == "front":
                    assert oy1 > ay1 and visible == alone, where                     # lower, fully visible
                    assert _visible_pixels(plan, "anchor")[0] < _visible_pixels(plan, "anchor")[1], where
                else:
                    assert oy1 < ay1 and oy0 < ay0, where                            # higher, sticks out on top
                    assert 0.25 * alone < visible < alone, where                     # partly hidden
        # same seed, same object: the front object is drawn larger than the one behind
        front = draw_scene(_plan("mug", "front", "box", seed, "B", spread=spread))[1]["object"]
        behind = draw_scene(_plan("mug", "behind", "box", seed, "B", spread=spread))[1]["object"]
        assert (front[2] - front[0]) * (front[3] - front[1]) > 1.2 * (behind[2] - behind[0]) * (behind[3] - behind[1])


def test_spread_scales_position_jitter():
    def anchor_centres(spread):
        centres = []
        for seed in range(40):
            box = render_scene("cup", "left", "table", random.Random(seed), spread=spread, texture=False)[1]["anchor"]
            centres.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        return np.array(centres)

    canonical, spread = anchor_centres(0.0), anchor_centres(1.0)
    assert canonical.std(axis=0).max() < 1.5                    # only the size jitter moves the centre
    assert abs(canonical[:, 0].mean() - 48) < 1.5               # anchor centred at spread 0
    assert spread.std(axis=0).min() > 6                         # spread 1 moves it around in x and y
    # one seed gives the same shapes, sizes and colours at every spread; only the placement changes
    (img0, b0), (img1, b1) = (render_scene("cup", "left", "table", random.Random(3), spread=s) for s in (0.0, 1.0))
    for role in ("object", "anchor"):     # sub-pixel placement may change the rasterised size by one pixel
        assert all(abs((b0[role][i + 2] - b0[role][i]) - (b1[role][i + 2] - b1[role][i])) <= 1 for i in (0, 1))
    assert b0 != b1


def test_colour_prefixed_object_takes_its_colour():
    plan = _plan("red-ball", "left", "table", 0, "A")
    assert dict(plan.layers)["object"].colour == synthetic.COLOUR_WORDS["red"]
    assert dict(plan.layers)["object"].spec.name == "ball"


def test_sample_scene_returns_a_consistent_example():
    image, boxes, obj, relation, anchor = sample_scene(random.Random(5), variant="B", spread=0.3)
    assert image.size == (96, 96) and set(boxes) == {"object", "anchor"}
    assert obj in SMALL_OBJECTS and relation in RELATIONS["B"] and anchor in ANCHORS["B"]


@pytest.mark.parametrize("kwargs", [dict(obj="spaceship"), dict(anchor="box"), dict(relation="front"),
                                    dict(variant="C"), dict(spread=1.5)])
def test_bad_scene_input_raises_toolkit_error(kwargs):
    args = dict(obj="mug", relation="on", anchor="table", variant="A", spread=1.0) | kwargs
    with pytest.raises(ToolkitError):
        render_scene(args.pop("obj"), args.pop("relation"), args.pop("anchor"), random.Random(0), **args)


# ---------------------------------------------------------------- dataset writer
def _group_key(fname):
    return fname.split("_")[0], fname.split("_")[-1][:-5]


@pytest.mark.parametrize("variant", ["A", "B"])
def test_dataset_has_the_exact_controlled_format(tmp_path, variant):
    path = write_controlled_dataset(tmp_path, variant, n_pairs=12, seed=3)
    stem = f"synthetic_controlled_{variant.lower()}"
    assert path == tmp_path / f"{stem}.json"
    rows = json.loads(path.read_text())
    boxes = load_boxes(tmp_path, variant)
    assert len(rows) == 48 and len(boxes) == 48
    groups = defaultdict(dict)
    for row in rows:
        assert set(row) == {"image_path", "caption_options"}
        assert row["image_path"].startswith(f"data/{stem}/") and row["image_path"].endswith(".jpeg")
        fname = row["image_path"].split("/")[-1]
        assert (tmp_path / stem / fname).is_file() and fname in boxes
        obj1, obj2 = _group_key(fname)
        slot = fname.split("_")[1]
        relation = SLOT_TO_RELATION[slot]
        options = row["caption_options"]
        assert len(set(options)) == 4
        assert options[0] == f"A {obj1.replace('-', ' ')} {CAPTION_PHRASE[relation]} a {obj2.replace('-', ' ')}"
        assert sorted(options) == sorted(caption(obj1, r, obj2) for r in RELATIONS[variant])
        groups[(obj1, obj2)][slot] = options[0]
    expected_slots = {"A": {"left", "right", "on", "under"}, "B": {"left", "right", "in-front", "behind"}}[variant]
    assert len(groups) == 12
    assert all(set(slots) == expected_slots for slots in groups.values())
    # rows are shuffled, not written group by group
    assert [_group_key(r["image_path"].split("/")[-1]) for r in rows[:4]].count(_group_key(
        rows[0]["image_path"].split("/")[-1])) < 4
    with Image.open(tmp_path / stem / rows[0]["image_path"].split("/")[-1]) as image:
        assert image.format == "JPEG" and image.size == (96, 96)


def test_multi_word_names_are_hyphenated_in_files_and_spaced_in_captions(tmp_path):
    assert file_name("water-bottle", "front", "side-table") == "water-bottle_in-front_of_side-table.jpeg"
    assert caption("water-bottle", "left", "side-table") == "A water bottle to the left of a side table"
    rows = json.loads(write_controlled_dataset(tmp_path, "A", n_pairs=112, seed=0).read_text())
    names = {r["image_path"].split("/")[-1] for r in rows}
    assert "water-bottle_under_side-table.jpeg" in names
    assert len({_group_key(n) for n in names}) == 112


def test_more_pairs_than_plain_names_uses_colour_prefixes(tmp_path):
    rows = json.loads(write_controlled_dataset(tmp_path, "B", n_pairs=130, seed=0, size=48).read_text())
    keys = {_group_key(r["image_path"].split("/")[-1]) for r in rows}
    assert len(keys) == 130 and sum(k[0].split("-")[0] in synthetic.COLOUR_WORDS for k in keys) == 130 - 112
    with pytest.raises(ToolkitError, match="n_pairs"):
        write_controlled_dataset(tmp_path, "B", n_pairs=100_000, seed=0)


def test_dataset_is_deterministic_given_the_seed(tmp_path):
    paths = [write_controlled_dataset(tmp_path / name, "B", n_pairs=5, seed=seed)
             for name, seed in (("one", 4), ("two", 4), ("other", 5))]
    one, two, other = (p.read_bytes() for p in paths)
    assert one == two and one != other
    assert boxes_path(tmp_path / "one", "B").read_bytes() == boxes_path(tmp_path / "two", "B").read_bytes()
    for fname in load_boxes(tmp_path / "one", "B"):
        pixels = [_pixels(Image.open(image_dir(tmp_path / name, "B") / fname)) for name in ("one", "two")]
        assert np.array_equal(*pixels)


def test_sidecar_boxes_are_the_renderer_boxes(tmp_path):
    write_controlled_dataset(tmp_path, "A", n_pairs=3, seed=9)
    for fname, boxes in load_boxes(tmp_path, "A").items():
        obj, slot, anchor = fname.split("_")[0], fname.split("_")[1], fname.split("_")[-1][:-5]
        _, expected = render_scene(obj, slot, anchor, random.Random(f"synthetic-A-9-{fname}"))
        assert boxes == expected


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = Image.Image.save

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt("simulated interruption")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_controlled_dataset(tmp_path, "A", n_pairs=5, seed=0)
    assert list(tmp_path.iterdir()) == []          # no final files and no leftover temporary folder


def test_interrupted_regeneration_keeps_the_old_set_or_none(tmp_path, monkeypatch):
    ensure_synthetic_controlled(tmp_path, "A", seed=0, n_pairs=3)
    before = annotation_path(tmp_path, "A").read_bytes()
    monkeypatch.setattr(Image.Image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        ensure_synthetic_controlled(tmp_path, "A", seed=1, n_pairs=3)
    monkeypatch.undo()
    assert annotation_path(tmp_path, "A").read_bytes() == before     # failed before publishing: old set intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_controlled_a", "synthetic_controlled_a.json",
                                                         "synthetic_controlled_a_boxes.json"]
    # a failure while moving files into place removes the annotation first, so the set is not "present"
    real_replace = synthetic.os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("synthetic_controlled_a.json"):
            raise OSError("interrupted")
        return real_replace(src, dst)

    monkeypatch.setattr(synthetic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        ensure_synthetic_controlled(tmp_path, "A", seed=1, n_pairs=3)
    monkeypatch.undo()
    assert not annotation_path(tmp_path, "A").exists()
    assert json.loads(ensure_synthetic_controlled(tmp_path, "A", seed=1, n_pairs=3).read_text())


def test_ensure_generates_once_and_regenerates_when_parameters_change(tmp_path, monkeypatch):
    path = ensure_synthetic_controlled(tmp_path, "B", seed=0, n_pairs=4)
    first = path.read_bytes()
    writes = []
    real_write = synthetic.write_controlled_dataset
    monkeypatch.setattr(synthetic, "write_controlled_dataset", lambda *a, **k: writes.append(a) or real_write(*a, **k))
    assert ensure_synthetic_controlled(tmp_path, "b", seed=0, n_pairs=4) == path and writes == []
    ensure_synthetic_controlled(tmp_path, "B", seed=1, n_pairs=4)
    assert len(writes) == 1 and path.read_bytes() != first
    ensure_synthetic_controlled(tmp_path, "B", seed=1, n_pairs=4, size=64)
    fname = next(iter(load_boxes(tmp_path, "B")))
    assert len(writes) == 2 and Image.open(image_dir(tmp_path, "B") / fname).size == (64, 64)
    (image_dir(tmp_path, "B") / fname).unlink()            # an incomplete set is regenerated
    ensure_synthetic_controlled(tmp_path, "B", seed=1, n_pairs=4, size=64)
    assert len(writes) == 3 and (image_dir(tmp_path, "B") / fname).is_file()
    assert json.loads(boxes_path(tmp_path, "B").read_text())["params"]["seed"] == 1


def test_default_set_is_generated_with_four_scenes_per_pair(tmp_path):
    path = ensure_synthetic_controlled(tmp_path, "A")
    assert len(json.loads(path.read_text())) == 4 * synthetic.DEFAULT_N_PAIRS


def test_load_boxes_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ToolkitError, match="ensure_synthetic_controlled"):
        load_boxes(tmp_path, "A")
    boxes_path(tmp_path, "A").write_text("{not json")
    with pytest.raises(ToolkitError, match="synthetic_controlled_a_boxes.json"):
        load_boxes(tmp_path, "A")
    # a broken sidecar is not mistaken for a finished set: ensure regenerates
    annotation_path(tmp_path, "A").write_text("[]")
    ensure_synthetic_controlled(tmp_path, "A", n_pairs=2)
    assert len(load_boxes(tmp_path, "A")) == 8
