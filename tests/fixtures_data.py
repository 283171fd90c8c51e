"""Fixture data in the real on-disk formats, written into a temporary data root.

Every row is synthetic (invented object names and image ids) and follows the verified formats of the
originals: Controlled JSON arrays, COCO/VG `[image_id, correct, wrong]` arrays, VSR JSONL lines, AdaptVis
prompt JSONL files (no trailing newline). Images are tiny generated JPEGs. Any test in the project can use
these, e.g. `write_dataset_fixture(tmp_path / "data", "Controlled_Images_A")`, then
`get_dataset("Controlled_Images_A", root=tmp_path / "data")`.
"""
from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

IMAGE_SIZE = (32, 24)

# ------------------------------------------------------------------ Controlled A / B

CONTROLLED = {
    # variant: (annotation file, image folder, relation slots in file names, rows as (obj1, slot, obj2))
    "A": ("controlled_images_dataset.json", "controlled_images", ("on", "under", "left", "right"),
          [("mug", "under", "table"), ("water-bottle", "left", "stool"), ("mug", "on", "table"),
           ("water-bottle", "on", "stool"), ("mug", "right", "table"), ("water-bottle", "under", "stool"),
           ("mug", "left", "table"), ("water-bottle", "right", "stool")]),
    "B": ("controlled_clevr_dataset.json", "controlled_clevr", ("left", "right", "in-front", "behind"),
          [("teapot", "right", "spoon"), ("toy-car", "behind", "cup"), ("teapot", "in-front", "spoon"),
           ("toy-car", "left", "cup"), ("teapot", "behind", "spoon"), ("toy-car", "right", "cup"),
           ("teapot", "left", "spoon"), ("toy-car", "in-front", "cup")]),
}
_SLOT_FILE = {"left": "left_of", "right": "right_of", "in-front": "in-front_of", "on": "on", "under": "under",
              "behind": "behind"}
_SLOT_CAPTION = {"left": "to the left of", "right": "to the right of", "in-front": "in front of", "on": "on",
                 "under": "under", "behind": "behind"}
CONTROLLED_ANSWER = {"left": "left", "right": "right", "on": "on", "under": "under", "in-front": "front",
                     "behind": "behind"}


def write_jpeg(path: Path, index: int = 0, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """A tiny solid-colour JPEG (colour varies with `index`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((37 * index) % 256, (91 * index + 50) % 256, (53 * index + 120) % 256)
    Image.new("RGB", size, colour).save(path, format="JPEG")
    return path


def controlled_file_name(obj1: str, slot: str, obj2: str) -> str:
    return f"{obj1}_{_SLOT_FILE[slot]}_{obj2}.jpeg"


def _controlled_captions(obj1: str, slot: str, obj2: str, slots: Sequence[str]) -> list[str]:
    words1, words2 = obj1.replace("-", " "), obj2.replace("-", " ")
    ordered = [slot] + [s for s in slots if s != slot]  # correct caption first, as in WhatsUp
    return [f"A {words1} {_SLOT_CAPTION[s]} a {words2}" for s in ordered]


def controlled_records(variant: str = "A", folder: Optional[str] = None) -> list[dict]:
    """The 8 Controlled records of `variant` (2 object pairs x 4 relations, shuffled order)."""
    _, default_folder, slots, rows = CONTROLLED[variant]
    folder = folder or default_folder
    return [{"image_path": f"data/{folder}/{controlled_file_name(o1, slot, o2)}",
             "caption_options": _controlled_captions(o1, slot, o2, slots)} for o1, slot, o2 in rows]


def write_controlled_fixture(root: Path, variant: str = "A", annotation: Optional[str] = None,
                             folder: Optional[str] = None) -> Path:
    """Write the Controlled-`variant` annotation JSON and its 8 images under `root`; return the JSON path.

    annotation / folder override the file and image-folder names (e.g. "synthetic_controlled_a.json").
    """
    default_annotation, default_folder, _, _ = CONTROLLED[variant]
    folder = folder or default_folder
    records = controlled_records(variant, folder)
    for i, record in enumerate(records):
        write_jpeg(Path(root) / folder / Path(record["image_path"]).name, i)
    path = Path(root) / (annotation or default_annotation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


# ------------------------------------------------------------------ COCO / VG QA

QA = {
    # name: (annotation file, image folder, rows, expected (objects, answer, relation) per row)
    "COCO_QA_one_obj": ("coco_qa_one_obj.json", "val2017", [
        [900001, "A photo of a dining table on the bottom", "A photo of a dining table on the top"],
        [900002, "A photo of a cat on the left", "A photo of a cat on the right"],
        [900003, "A photo of a kite on the top", "A photo of a kite on the bottom"],
        [900004, "A photo of a refrigerator on the right", "A photo of a refrigerator on the left"]],
        [(("dining table",), "bottom", "bottom"), (("cat",), "left", "left"), (("kite",), "top", "top"),
         (("refrigerator",), "right", "right")]),
    "COCO_QA_two_obj": ("coco_qa_two_obj.json", "val2017", [
        [900011, "A photo of a dining table to the left of a refrigerator",
         "A photo of a dining table to the right of a refrigerator"],
        [900012, "A photo of a cup to the right of a laptop", "A photo of a cup to the left of a laptop"],
        [900013, "A photo of a clock above a sink", "A photo of a clock below a sink"],
        [900014, "A photo of a toilet below a sink", "A photo of a toilet above a sink"]],
        [(("dining table", "refrigerator"), "left", "left"), (("cup", "laptop"), "right", "right"),
         (("clock", "sink"), "above", "above"), (("toilet", "sink"), "below", "below")]),
    "VG_QA_one_obj": ("vg_qa_one_obj.json", "vg_images", [
        [800001, "A photo of a purse on the right", "A photo of a purse on the left"],
        [800002, "A photo of a toddler on the left", "A photo of a toddler on the right"],
        [800003, "A photo of a fence on the top", "A photo of a fence on the bottom"],
        [800004, "A photo of a rug on the bottom", "A photo of a rug on the top"]],
        [(("purse",), "right", "right"), (("toddler",), "left", "left"), (("fence",), "top", "top"),
         (("rug",), "bottom", "bottom")]),
    "VG_QA_two_obj": ("vg_qa_two_obj.json", "vg_images", [
        [800011, "A photo of a cart in front of a tree", "A photo of a cart behind a tree"],
        [800012, "A photo of a fence behind a dog", "A photo of a fence in front of a dog"],
        [800013, "A photo of a lamp to the left of a bed", "A photo of a lamp to the right of a bed"],
        # "above" falls through to the original label 'top'; the gold option word stays "above"
        [800014, "A photo of a shelf above a desk", "A photo of a shelf below a desk"]],
        [(("cart", "tree"), "front", "front"), (("fence", "dog"), "behind", "behind"),
         (("lamp", "bed"), "left", "left"), (("shelf", "desk"), "above", "top")]),
}


def qa_image_name(name: str, image_id: int) -> str:
    return f"{image_id:012d}.jpg" if QA[name][1] == "val2017" else f"{image_id}.jpg"


def write_whatsup_qa_fixture(root: Path, name: str) -> Path:
    """Write the 4-row COCO/VG annotation JSON `name` and its images under `root`; return the JSON path."""
    annotation, folder, rows, _ = QA[name]
    for i, row in enumerate(rows):
        write_jpeg(Path(root) / folder / qa_image_name(name, row[0]), i)
    path = Path(root) / annotation
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


# ------------------------------------------------------------------ VSR

def _vsr_row(image: int, split: str, caption: str, label: int, relation: str, subj: str, obj: str) -> dict:
    return {"image": f"{image:012d}.jpg",
            "image_link": f"http://images.cocodataset.org/{split}/{image:012d}.jpg", "caption": caption,
            "label": label, "relation": relation, "subj": subj, "obj": obj, "annotator_id": 1,
            "vote_true_validator_id": "[2]" if label else "[]", "vote_false_validator_id": "[]" if label else "[1]"}


VSR_ZEROSHOT_ROWS = [
    _vsr_row(900101, "train2017", "The cat is under the table.", 1, "under", "cat", "table"),
    _vsr_row(900102, "train2017", "The dog is left of the bench.", 0, "left of", "dog", "bench"),
    _vsr_row(900103, "val2017", "The cup is on top of the book.", 1, "on top of", "cup", "book"),
    _vsr_row(900104, "train2017", "The handbag contains the phone.", 1, "contains", "andbag", "phone"),
    _vsr_row(900105, "train2017", "The bird is facing away from the car.", 0, "facing away from", "bird", "car"),
    _vsr_row(900106, "train2017", "The vase is behind the cat.", 0, "behind", "vase", "cat"),
]


def _random_kind(row: dict, frame: Optional[float]) -> dict:
    # Random-split rows have no subj/obj but a reference_frame.
    out = {k: v for k, v in row.items() if k not in ("subj", "obj")}
    out["reference_frame"] = frame
    return out


VSR_RANDOM_ROWS = [_random_kind(r, f) for r, f in zip(VSR_ZEROSHOT_ROWS[:4], (None, 1.0, None, 0.0))]


def write_vsr_fixture(root: Path, split_kind: str = "zeroshot", split: str = "test",
                      rows: Optional[Sequence[dict]] = None) -> Path:
    """Write vsr/{split_kind}/{split}.jsonl (6 zero-shot or 4 random rows) and its COCO images."""
    rows = list(rows if rows is not None else (VSR_ZEROSHOT_ROWS if split_kind == "zeroshot" else VSR_RANDOM_ROWS))
    for i, row in enumerate(rows):
        write_jpeg(Path(root) / row["image_link"].split(".org/", 1)[1], i)
    path = Path(root) / "vsr" / split_kind / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # the real split files end with a newline
    return path


# ------------------------------------------------------------------ dispatch and prompt files

def write_dataset_fixture(root: Path, name: str) -> Path:
    """Write the fixture of any real dataset name (Synthetic_* are generated by the data layer itself)."""
    if name.startswith("Controlled_Images_"):
        return write_controlled_fixture(root, name[-1])
    if name in QA:
        return write_whatsup_qa_fixture(root, name)
    kind = "random" if name == "VSR_random" else "zeroshot"
    return write_vsr_fixture(root, kind, "test")


PAPER_OPTION_TEXT = {
    "Controlled_Images_A": ("four", "left, right, on or under"),
    "Controlled_Images_B": ("four", "left, right, front or behind"),
    "COCO_QA_one_obj": ("four", "left, right, top or bottom"),
    "COCO_QA_two_obj": ("four", "left, right, above, or below"),
    "VG_QA_one_obj": ("six", "left, right, front, behind, top or bottom"),
    "VG_QA_two_obj": ("six", "left, right, front, behind, above or below"),
}


def _fixture_questions(dataset: str) -> list[tuple[str, str]]:
    """(user question, gold word) per fixture row, in the paper's wording."""
    option_text = PAPER_OPTION_TEXT[dataset][1]
    if dataset.startswith("Controlled_Images_"):
        rows = CONTROLLED[dataset[-1]][3]
        return [(f"Where is the {o1.replace('-', ' ')} in relation to the {o2.replace('-', ' ')}? "
                 f"Answer with {option_text}.", CONTROLLED_ANSWER[slot]) for o1, slot, o2 in rows]
    out = []
    for objects, answer, _ in QA[dataset][3]:
        where = f"in relation to the {objects[1]}" if len(objects) == 2 else "in the photo"
        out.append((f"Where is the {objects[0]} {where}? Answer with {option_text}.", answer))
    return out


def paper_prompt_rows(dataset: str, quirks: bool = True) -> list[dict]:
    """Rows of an original-style prompt file for the fixture of `dataset`.

    With quirks (as in the real files): row 1 has a double space after "USER:", row 2 says "Where are",
    row 3 has an extra newline before "ASSISTANT:".
    """
    rows = []
    for i, (question, answer) in enumerate(_fixture_questions(dataset)):
        user, end = "USER: ", "\nASSISTANT:"
        if quirks and i == 1:
            user = "USER:  "
        if quirks and i == 2:
            question = question.replace("Where is", "Where are", 1)
        if quirks and i == 3:
            end = "\n\nASSISTANT:"
        rows.append({"id": i, "question": f"<image>\n{user}{question}{end}", "answer": [answer.capitalize()]})
    return rows


def write_prompt_file(prompt_dir: Path, dataset: str, option: Optional[str] = None,
                      rows: Optional[Sequence[dict]] = None, quirks: bool = True) -> Path:
    """Write `{dataset}_with_answer_{option}_options.jsonl` (no trailing newline, like the originals)."""
    option = option or PAPER_OPTION_TEXT[dataset][0]
    rows = list(rows if rows is not None else paper_prompt_rows(dataset, quirks))
    path = Path(prompt_dir) / f"{dataset}_with_answer_{option}_options.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def write_download_mirror(mirror: Path, name: str) -> Path:
    """A fake download source for `name`: a folder laid out like the data root, image folders as archives.

    Controlled/COCO/VG: annotation file + `<image folder>.tar.gz` (or `val2017.zip` for COCO); VSR: the
    split file + the images at train2017/..., val2017/....
    """
    staging = Path(mirror) / ".staging"
    write_dataset_fixture(staging, name)
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            _move(path, Path(mirror) / path.relative_to(staging))
    for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
        if name.startswith("VSR"):
            for image in folder.rglob("*.jpg"):
                _move(image, Path(mirror) / image.relative_to(staging))
        elif folder.name == "val2017":
            _zip_folder(folder, Path(mirror) / "val2017.zip")
        else:
            with tarfile.open(Path(mirror) / f"{folder.name}.tar.gz", "w:gz") as tf:
                tf.add(folder, arcname=folder.name)
    shutil.rmtree(staging)
    return Path(mirror)


def _move(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dest)


def _zip_folder(folder: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, arcname=f"{folder.name}/{path.relative_to(folder).as_posix()}")
