"""Fixture copies of the lmms-lab hub benchmarks (POPE, GQA, TextVQA, VQAv2) in their real schemas.

Written with the `datasets` API, as the hub copies were: every column of the published features (see
docs/data.md) with its dtype, images as `datasets.Image` values holding JPEG bytes (a struct of bytes and
path in the parquet file), shards named `<split>-NNNNN-of-MMMMM.parquet` under `<root>/lmms-lab/<repo>/`.
Rows are synthetic. `write_general_fixture(root, name)` writes any of the four; the module constants hold
what the tests check against.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import datasets
from PIL import Image

datasets.disable_progress_bars()  # fixture writing needs no "Creating parquet" bars in test logs

STRING, INT32, INT64, BOOL = (datasets.Value(kind) for kind in ("string", "int32", "int64", "bool"))

# POPE: (category, question_id, object, answer, image_source); two rows per subset, images shared across subsets.
POPE_ROWS = [
    ("adversarial", "1", "dog", "yes", "COCO_val2014_000000000101"),
    ("adversarial", "2", "fork", "no", "COCO_val2014_000000000102"),
    ("popular", "1", "dog", "yes", "COCO_val2014_000000000101"),
    ("popular", "2", "chair", "no", "COCO_val2014_000000000103"),
    ("random", "1", "cat", "yes", "COCO_val2014_000000000103"),
    ("random", "2", "kite", "no", "COCO_val2014_000000000102"),
]
# GQA: (id, imageId, question, answer, structural type)
GQA_ROWS = [
    ("20968379", "n288870", "Is the cup to the left of the plate?", "yes", "verify"),
    ("20968380", "n288870", "Which color is the cup?", "white", "query"),
    ("201640614", "n161313", "What is the animal on the grass?", "dog", "query"),
]
# TextVQA: (question_id, image_id, question, ten answers)
TEXTVQA_ROWS = [
    (34602, "0054c91397f2fe05", "what is the brand of this camera?", ["dakota"] * 6 + ["dakota digital"] * 4),
    (34603, "005635e119b9f32f", "what does the small white text say?", ["copenhagen"] * 3 + ["thursday"] * 7),
]
# VQAv2: (question_id, image_id, question, ten answers, multiple_choice_answer, answer_type)
VQAV2_ROWS = [
    (262148000, 262148, "How many dogs are there?", ["2"] * 2 + ["3"] * 8, "3", "number"),
    (262148001, 262148, "Is the dog asleep?", ["yes"] * 10, "yes", "yes/no"),
    (393225000, 393225, "What is on the table?", ["a bowl"] * 4 + ["soup"] * 6, "soup", "other"),
]


def jpeg_bytes(index: int, size: tuple[int, int] = (40, 30)) -> bytes:
    colour = ((53 * index) % 256, (97 * index + 40) % 256, (31 * index + 90) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _image(key: str) -> dict:
    return {"bytes": jpeg_bytes(sum(map(ord, key))), "path": None}


def write_shards(folder: Path, split: str, columns: dict, features: dict, shards: int = 1) -> list[Path]:
    """Write `columns` as `split-NNNNN-of-MMMMM.parquet` shards (rows dealt out in order) with `features`."""
    folder.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    n = len(table)
    bounds = [round(i * n / shards) for i in range(shards + 1)]
    paths = []
    for shard in range(shards):
        path = folder / f"{split}-{shard:05d}-of-{shards:05d}.parquet"
        table.select(range(bounds[shard], bounds[shard + 1])).to_parquet(str(path))
        paths.append(path)
    return paths


def write_pope(root: Path, rows: Sequence[tuple] = POPE_ROWS, shards: int = 2) -> list[Path]:
    columns = {"id": [str(i) for i in range(len(rows))], "question_id": [r[1] for r in rows],
               "question": [f"Is there a {r[2]} in the image?" for r in rows], "answer": [r[3] for r in rows],
               "image_source": [r[4] for r in rows], "image": [_image(r[4]) for r in rows],
               "category": [r[0] for r in rows]}
    features = {"id": STRING, "question_id": STRING, "question": STRING, "answer": STRING, "image_source": STRING,
                "image": datasets.Image(), "category": STRING}
    return write_shards(Path(root) / "lmms-lab/POPE/data", "test", columns, features, shards)


def write_gqa(root: Path, rows: Sequence[tuple] = GQA_ROWS) -> list[Path]:
    base = Path(root) / "lmms-lab/GQA"
    columns = {"id": [r[0] for r in rows], "imageId": [r[1] for r in rows], "question": [r[2] for r in rows],
               "answer": [r[3] for r in rows], "fullAnswer": [f"The answer is {r[3]}." for r in rows],
               "isBalanced": [True] * len(rows),
               "groups": [{"global": None, "local": f"10c-{r[3]}"} for r in rows],
               "types": [{"structural": r[4], "semantic": "attr", "detailed": "existThatC"} for r in rows],
               "semanticStr": ["select: cup (1) ->verify rel: plate" for _ in rows]}
    features = {"id": STRING, "imageId": STRING, "question": STRING, "answer": STRING, "fullAnswer": STRING,
                "isBalanced": BOOL, "groups": {"global": STRING, "local": STRING},
                "types": {"structural": STRING, "semantic": STRING, "detailed": STRING}, "semanticStr": STRING}
    paths = write_shards(base / "testdev_balanced_instructions", "testdev", columns, features)
    image_ids = sorted({r[1] for r in rows})
    paths += write_shards(base / "testdev_balanced_images", "testdev",
                          {"id": image_ids, "image": [_image(i) for i in image_ids]},
                          {"id": STRING, "image": datasets.Image()})
    return paths


def write_textvqa(root: Path, rows: Sequence[tuple] = TEXTVQA_ROWS) -> list[Path]:
    columns = {"image_id": [r[1] for r in rows], "question_id": [r[0] for r in rows],
               "question": [r[2] for r in rows], "question_tokens": [r[2].rstrip("?").split() for r in rows],
               "image": [_image(r[1]) for r in rows], "image_width": [40] * len(rows),
               "image_height": [30] * len(rows),
               "flickr_original_url": [f"https://farm.example/{r[1]}_o.jpg" for r in rows],
               "flickr_300k_url": [f"https://farm.example/{r[1]}_z.jpg" for r in rows],
               "answers": [r[3] for r in rows], "image_classes": [["Camera"] for _ in rows],
               "set_name": ["val"] * len(rows), "ocr_tokens": [["dakota", "digital"] for _ in rows]}
    features = {"image_id": STRING, "question_id": INT32, "question": STRING, "question_tokens": [STRING],
                "image": datasets.Image(), "image_width": INT32, "image_height": INT32,
                "flickr_original_url": STRING, "flickr_300k_url": STRING, "answers": [STRING],
                "image_classes": [STRING], "set_name": STRING, "ocr_tokens": [STRING]}
    return write_shards(Path(root) / "lmms-lab/textvqa/data", "validation", columns, features)


def write_vqav2(root: Path, rows: Sequence[tuple] = VQAV2_ROWS) -> list[Path]:
    columns = {"question_type": [" ".join(r[2].split()[:2]).lower() for r in rows],
               "multiple_choice_answer": [r[4] for r in rows],
               "answers": [[{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(r[3])]
                           for r in rows],
               "image_id": [r[1] for r in rows], "answer_type": [r[5] for r in rows],
               "question_id": [r[0] for r in rows], "question": [r[2] for r in rows],
               "image": [_image(str(r[1])) for r in rows]}
    features = {"question_type": STRING, "multiple_choice_answer": STRING,
                "answers": [{"answer": STRING, "answer_confidence": STRING, "answer_id": INT64}],
                "image_id": INT64, "answer_type": STRING, "question_id": INT64, "question": STRING,
                "image": datasets.Image()}
    return write_shards(Path(root) / "lmms-lab/VQAv2/data", "validation", columns, features, shards=2)


WRITERS = {"POPE": write_pope, "GQA": write_gqa, "TextVQA": write_textvqa, "VQAv2": write_vqav2}


def write_general_fixture(root: Path, name: str) -> list[Path]:
    """Write the fixture copy of `name` (POPE, GQA, TextVQA or VQAv2) under `root`; return its files."""
    return WRITERS[name](Path(root))
