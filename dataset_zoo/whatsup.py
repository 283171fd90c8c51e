"""WhatsUp loaders: Controlled A/B (and their synthetic twins) and the COCO/VG QA subsets.

On-disk formats (the originals, unchanged):
- Controlled: a JSON array of {"image_path": "data/controlled_images/<obj1>_<rel>_<obj2>.jpeg",
  "caption_options": [4 captions, correct first]}. `image_path` is relative to the original repository
  root, so a leading "data/" is replaced by the data root; other relative paths are taken relative to the
  data root. Relation, gold answer, objects and group all come from the file name, as in the original
  evaluation: slot = stem.split('_')[1], group = (stem.split('_')[0], stem.split('_')[-1]) (the original's
  `[:-5]` slice, written extension-independently); hyphens in object names become spaces in questions
  ("beer-bottle" -> "beer bottle"). Sample id = the file stem (unique in the real files; duplicates are
  rejected because ids key resumed runs).
- COCO/VG QA: a JSON array of [image_id, correct_caption, wrong_caption]; images at
  `val2017/{id:012d}.jpg` (COCO) or `vg_images/{id}.jpg` (VG). Relation = the original label rule,
  objects and option words parsed from the captions. Sample id = the row index, zero-padded to 5 digits
  ("00042"); image ids repeat across rows, so they cannot serve as ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import ToolkitError
from common.jsonio import read_json
from dataset_zoo.catalog import DatasetSpec
from dataset_zoo.questions import Item
from dataset_zoo.relations import (CONTROLLED_SLOTS, INVERSE, LABEL_RULES, require_one_obj,
                                   require_two_obj)


def resolve_image_path(root: Path, stored: str) -> Path:
    """Map a stored image path to disk: "data/x/y.jpeg" -> root/x/y.jpeg; absolute paths stay as they are."""
    path = Path(stored)
    if path.is_absolute():
        return path
    if path.parts and path.parts[0] == "data":
        return root.joinpath(*path.parts[1:])
    return root / path


def _read_array(path: Path) -> list:
    records = read_json(path, what="annotation file")
    if not isinstance(records, list):
        raise ToolkitError(f"{path}: expected a JSON array of records, got {type(records).__name__}; is this "
                           f"the right file? Delete it and download it again")
    return records


def _controlled_item(record: Any, index: int, root: Path, spec: DatasetSpec, where: str) -> Item:
    if not (isinstance(record, dict) and isinstance(record.get("image_path"), str)
            and isinstance(record.get("caption_options"), list)):
        raise ToolkitError(f"{where}: a Controlled record is {{\"image_path\": str, \"caption_options\": [...]}}, "
                           f"got {str(record)[:120]}; fix the row or download the file again")
    stem = Path(record["image_path"]).stem
    parts = stem.split("_")
    slots = CONTROLLED_SLOTS[spec.variant]
    if len(parts) < 3 or parts[1] not in slots:
        raise ToolkitError(f"{where}: image file name {record['image_path']!r} must look like "
                           f"<obj1>_<relation>_<obj2>.jpeg with relation one of {', '.join(slots)} "
                           f"(Controlled {spec.variant}); fix the row")
    obj1, slot, obj2 = parts[0], parts[1], parts[-1]
    answer = slots[slot]
    return Item(index=index, id=stem, image_path=resolve_image_path(root, record["image_path"]),
                objects=(obj1.replace("-", " "), obj2.replace("-", " ")), answer=answer, relation=slot,
                two_options=(answer, INVERSE[answer]), where=where, group=(obj1, obj2))


def load_controlled_items(spec: DatasetSpec, root: Path, path: Path) -> list[Item]:
    """Parse a Controlled annotation file (real or synthetic) into items."""
    items = []
    seen: dict[str, int] = {}
    for index, record in enumerate(_read_array(path)):
        item = _controlled_item(record, index, root, spec, f"{path} row {index}")
        if item.id in seen:
            raise ToolkitError(f"{path}: rows {seen[item.id]} and {index} name the same image {item.id!r}; "
                               f"sample ids must be unique, remove the duplicate")
        seen[item.id] = index
        items.append(item)
    return items


def _image_file(spec: DatasetSpec, image_id: Any) -> str:
    # The original: COCO 'str(id).zfill(12) + ".jpg"', VG 'f"{id}.jpg"'; ids may be int or str.
    return f"{str(image_id).zfill(12)}.jpg" if spec.images == "val2017" else f"{image_id}.jpg"


def _qa_item(record: Any, index: int, root: Path, spec: DatasetSpec, where: str) -> Item:
    if not (isinstance(record, list) and len(record) >= 3 and isinstance(record[0], (int, str))
            and isinstance(record[1], str) and isinstance(record[2], str)):
        raise ToolkitError(f"{where}: a {spec.name} record is [image_id, correct_caption, wrong_caption], "
                           f"got {str(record)[:120]}; fix the row or download the file again")
    image_id, correct, wrong = record[0], record[1], record[2]
    if spec.objects == 1:
        obj, answer = require_one_obj(correct, where)
        objects, wrong_answer = (obj,), require_one_obj(wrong, where)[1]
    else:
        obj1, answer, obj2 = require_two_obj(correct, where)
        objects, wrong_answer = (obj1, obj2), require_two_obj(wrong, where)[1]
    if wrong_answer == answer:
        raise ToolkitError(f"{where}: the correct and the wrong caption name the same relation {answer!r}; "
                           f"fix the row")
    return Item(index=index, id=f"{index:05d}", image_path=root / spec.images / _image_file(spec, image_id),
                objects=objects, answer=answer, relation=LABEL_RULES[spec.label_rule](correct),
                two_options=(answer, wrong_answer), where=where)


def load_qa_items(spec: DatasetSpec, root: Path, path: Path) -> list[Item]:
    """Parse a COCO/VG QA annotation file into items."""
    return [_qa_item(record, index, root, spec, f"{path} row {index}")
            for index, record in enumerate(_read_array(path))]
