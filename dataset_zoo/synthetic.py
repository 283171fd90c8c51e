"""Synthetic Controlled-A/B scenes: an in-memory renderer and a writer of datasets in the exact Controlled format.

Two uses:
* a training loop calls `render_scene` / `sample_scene` (see `synthetic_scene`) and never touches files;
* the data layer registers `Synthetic_Controlled_A` / `Synthetic_Controlled_B` and calls
  `ensure_synthetic_controlled`, which writes, under the data root,
      synthetic_controlled_{a,b}.json        [{"image_path": "data/synthetic_controlled_a/<o1>_<rel>_<o2>.jpeg",
                                               "caption_options": [correct, 3 distractors]}, ...] (rows shuffled)
      synthetic_controlled_{a,b}/            the JPEG images
      synthetic_controlled_{a,b}_boxes.json  {"params": {...generation parameters...},
                                              "boxes": {"<file name>": {"object": [x0, y0, x1, y1], "anchor": [...]}}}
  and regenerates when the recorded parameters (seed, pair count, size, generator version) differ.

File names follow the WhatsUp rule: relations joined with underscores (`left_of`, `right_of`, `on`, `under`,
`in-front_of`, `behind`), multi-word object names with hyphens, so `(f.split('_')[0], f.split('_')[-1][:-5])` is
the (obj1, obj2) group and `f.split('_')[1]` the relation slot. Captions use the original templates with
spaces ("A water bottle to the left of a side table"), always with the article "a", as in WhatsUp.

Every (obj1, obj2) pair gets all four relations of its variant; pairs are drawn from the 16 small objects x
7 anchors of the variant (112 pairs), then from colour-prefixed objects ("red-mug", 1,008 more) when more
are asked for. Each image's random stream is seeded by (seed, variant, file name), so an image does not
depend on which other images are generated.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

from common.errors import ToolkitError
from dataset_zoo.synthetic_scene import (ANCHORS, COLOUR_WORDS, RELATIONS, normalise_variant, plan_scene,
                                         render_scene, sample_scene)
from dataset_zoo.synthetic_shapes import SMALL_OBJECTS

__all__ = ["render_scene", "sample_scene", "plan_scene", "write_controlled_dataset", "ensure_synthetic_controlled",
           "load_boxes", "annotation_path", "boxes_path", "image_dir", "candidate_pairs", "caption",
           "file_name", "DEFAULT_N_PAIRS", "RELATIONS", "ANCHORS", "SMALL_OBJECTS",
           "COLOUR_WORDS"]

logger = logging.getLogger(__name__)

# Bump when the drawing or layout changes: datasets on disk made by an older version are regenerated.
GENERATOR_VERSION = 2
# 100 pairs = 400 images, the size of the real Controlled sets (412 / 408); about 1 s to generate.
DEFAULT_N_PAIRS = 100
BOX_FORMAT = "pixels (x0, y0, x1, y1), x1/y1 exclusive; amodal (includes hidden parts)"

# relation -> (file-name slot, caption template): the original WhatsUp wording.
_RELATION_TEXT = {
    "left": ("left_of", "A {o1} to the left of a {o2}"),
    "right": ("right_of", "A {o1} to the right of a {o2}"),
    "on": ("on", "A {o1} on a {o2}"),
    "under": ("under", "A {o1} under a {o2}"),
    "front": ("in-front_of", "A {o1} in front of a {o2}"),
    "behind": ("behind", "A {o1} behind a {o2}"),
}
_JPEG_OPTIONS = {"quality": 95, "subsampling": 0}  # 4:4:4 keeps thin coloured parts crisp at 96 px


def _stem(variant: str) -> str:
    return f"synthetic_controlled_{variant.lower()}"


def annotation_path(root: Path, variant: str) -> Path:
    return Path(root) / f"{_stem(normalise_variant(variant))}.json"


def boxes_path(root: Path, variant: str) -> Path:
    return Path(root) / f"{_stem(normalise_variant(variant))}_boxes.json"


def image_dir(root: Path, variant: str) -> Path:
    return Path(root) / _stem(normalise_variant(variant))


def caption(obj1: str, relation: str, obj2: str) -> str:
    """The WhatsUp caption, with hyphenated names spelled as words."""
    return _RELATION_TEXT[relation][1].format(o1=obj1.replace("-", " "), o2=obj2.replace("-", " "))


def file_name(obj1: str, relation: str, obj2: str) -> str:
    return f"{obj1}_{_RELATION_TEXT[relation][0]}_{obj2}.jpeg"


def candidate_pairs(variant: str) -> list[tuple[str, str]]:
    """All (object, anchor) pairs of a variant: plain names first, then colour-prefixed ones."""
    anchors = list(ANCHORS[normalise_variant(variant)])
    plain = [(o, a) for o in SMALL_OBJECTS for a in anchors]
    coloured = [(f"{c}-{o}", a) for c in COLOUR_WORDS for o in SMALL_OBJECTS for a in anchors]
    return plain + coloured


def _choose_pairs(variant: str, n_pairs: int, seed: int) -> list[tuple[str, str]]:
    pool = candidate_pairs(variant)
    if not 1 <= n_pairs <= len(pool):
        raise ToolkitError(f"n_pairs must be between 1 and {len(pool)} for Controlled-{variant}, got {n_pairs}")
    n_plain = len(SMALL_OBJECTS) * len(ANCHORS[variant])
    rng = random.Random(f"synthetic-pairs-{variant}-{seed}")
    plain, coloured = pool[:n_plain], pool[n_plain:]
    rng.shuffle(plain)
    rng.shuffle(coloured)
    return (plain + coloured)[:n_pairs]


def _params(variant: str, n_pairs: int, seed: int, size: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "variant": variant, "seed": seed, "n_pairs": n_pairs,
            "size": size, "spread": 1.0, "box_format": BOX_FORMAT}


def _render_group(obj1: str, obj2: str, variant: str, seed: int, size: int, rng: random.Random, out_dir: Path):
    """Render and save the four images of one pair; return (rows, {file name: boxes})."""
    relations = RELATIONS[variant]
    rows, boxes = [], {}
    for relation in relations:
        fname = file_name(obj1, relation, obj2)
        scene_rng = random.Random(f"synthetic-{variant}-{seed}-{fname}")
        image, scene_boxes = render_scene(obj1, relation, obj2, scene_rng, variant=variant, size=size, spread=1.0)
        image.save(out_dir / fname, format="JPEG", **_JPEG_OPTIONS)
        distractors = [caption(obj1, r, obj2) for r in relations if r != relation]
        rng.shuffle(distractors)
        rows.append({"image_path": f"data/{_stem(variant)}/{fname}",
                     "caption_options": [caption(obj1, relation, obj2)] + distractors})
        boxes[fname] = {role: list(box) for role, box in scene_boxes.items()}
    return rows, boxes


def _json_lines_list(rows: list) -> str:
    """A JSON list with one row per line: valid JSON that stays readable and diffable."""
    return "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n"


def _sidecar_text(params: dict, boxes: dict) -> str:
    entries = ",\n".join(f"  {json.dumps(fname)}: {json.dumps(boxes[fname])}" for fname in sorted(boxes))
    return f'{{"params": {json.dumps(params)},\n "boxes": {{\n{entries}\n }}\n}}\n'


def _publish(staging: Path, root: Path, variant: str) -> None:
    """Move a finished dataset from `staging` into `root`. The annotation JSON, the file that makes the
    dataset look present, is removed first and put back last, so a crash in between leaves no dataset."""
    annotation, sidecar, images = annotation_path(root, variant), boxes_path(root, variant), image_dir(root, variant)
    annotation.unlink(missing_ok=True)
    if images.exists():
        images.rename(staging / "previous_images")
    (staging / images.name).rename(images)
    os.replace(staging / sidecar.name, sidecar)
    os.replace(staging / annotation.name, annotation)


def write_controlled_dataset(root: Path, variant: str, n_pairs: int, seed: int, size: int = 96) -> Path:
    """Write a synthetic Controlled-`variant` dataset of `n_pairs` x 4 images under `root`; return the
    annotation JSON path. Written into a temporary folder first, then moved into place."""
    variant = normalise_variant(variant)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pairs = _choose_pairs(variant, n_pairs, seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{_stem(variant)}.tmp-", dir=root))
    try:
        out_dir = staging / _stem(variant)
        out_dir.mkdir()
        caption_rng = random.Random(f"synthetic-captions-{variant}-{seed}")
        rows, boxes = [], {}
        for obj1, obj2 in pairs:
            group_rows, group_boxes = _render_group(obj1, obj2, variant, seed, size, caption_rng, out_dir)
            rows += group_rows
            boxes.update(group_boxes)
        random.Random(f"synthetic-rows-{variant}-{seed}").shuffle(rows)
        (staging / boxes_path(root, variant).name).write_text(_sidecar_text(_params(variant, n_pairs, seed, size),
                                                                            boxes))
        (staging / annotation_path(root, variant).name).write_text(_json_lines_list(rows))
        _publish(staging, root, variant)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %d synthetic Controlled-%s images to %s", len(rows), variant, image_dir(root, variant))
    return annotation_path(root, variant)


def _read_sidecar(root: Path, variant: str) -> dict:
    path = boxes_path(root, variant)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ToolkitError(f"box file not found: {path}; generate the synthetic Controlled-{variant} set with "
                           f"ensure_synthetic_controlled(root, {variant!r}) or by running any command on "
                           f"Synthetic_Controlled_{variant}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ToolkitError(f"malformed box file {path}: {err}; delete it to regenerate the set") from None
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), dict):
        raise ToolkitError(f"malformed box file {path}: no 'boxes' mapping; delete it to regenerate the set")
    return data


def load_boxes(root: Path, variant: str) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    """{image file name: {"object": (x0, y0, x1, y1), "anchor": (...)}} for a generated synthetic set
    (pixels, x1/y1 exclusive, amodal boxes)."""
    boxes = _read_sidecar(root, normalise_variant(variant))["boxes"]
    return {fname: {role: tuple(box) for role, box in roles.items()} for fname, roles in boxes.items()}


def _is_current(root: Path, variant: str, params: dict) -> bool:
    """True when a complete dataset made with exactly these parameters is on disk."""
    if not annotation_path(root, variant).is_file() or not boxes_path(root, variant).is_file():
        return False
    try:
        sidecar = _read_sidecar(root, variant)
    except ToolkitError:
        return False
    if sidecar.get("params") != params:
        return False
    images = image_dir(root, variant)
    return all((images / fname).is_file() for fname in sidecar["boxes"])


def ensure_synthetic_controlled(root: Path, variant: str, seed: int = 0, n_pairs: int = DEFAULT_N_PAIRS,
                                size: int = 96, force: bool = False) -> Path:
    """Return the annotation JSON of the synthetic Controlled-`variant` set under `root`, generating it
    first if it is absent, incomplete, or was made with other parameters (or `force` is set)."""
    variant = normalise_variant(variant)
    if not force and _is_current(Path(root), variant, _params(variant, n_pairs, seed, size)):
        return annotation_path(root, variant)
    logger.info("generating synthetic Controlled-%s (%d pairs, seed %d) under %s", variant, n_pairs, seed, root)
    return write_controlled_dataset(Path(root), variant, n_pairs, seed, size)
