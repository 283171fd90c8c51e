"""VSR (Visual Spatial Reasoning, Liu et al. 2023) as yes/no questions.

Files: the VSR repository's `data/splits/` layout under the data root, `vsr/{random,zeroshot}/{train,dev,
test}.jsonl` (same files as the Hugging Face repos cambridgeltl/vsr_random and cambridgeltl/vsr_zeroshot).
For the paper's setting (name "VSR" = zero-shot test) the original AdaptVis location `data/test.jsonl` is
used when `vsr/zeroshot/test.jsonl` is absent.

Each line has `image`, `image_link`, `caption`, `label` (0/1) and `relation` (zero-shot rows also `subj`,
`obj`; random rows `reference_frame`). The image is the part of `image_link` after ".org/", under the data
root: `train2017/<image>` or, for some rows, `val2017/<image>` (42 of the 1222 zero-shot test rows).

Sample: id = line index zero-padded to 5 digits ("00000", the row's position in the split file, which is
also the `id` of the original VSR_with_answer.jsonl); question = the yes/no template with the caption;
options ("yes", "no"); answer "yes" iff label == 1; relation = the `relation` field; paper_prompt = the
original's exact string. `vsr_paper_resize=True` makes `Sample.image` stretch every image to (2300, 4096)
(W, H) as the original did; the default keeps the image as it is.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common.errors import ToolkitError
from common.jsonio import iter_jsonl
from dataset_zoo.base import Sample
from dataset_zoo.prompts import PromptTemplates

PAPER_RESIZE = (2300, 4096)
_LINK_PATH = re.compile(r"\.org/(.+)$")
_REQUIRED = {"image_link": str, "caption": str, "relation": str}


def _check_row(row: Any, where: str) -> None:
    if not isinstance(row, dict):
        raise ToolkitError(f"{where}: a VSR line is a JSON object, got {str(row)[:120]}; fix the line")
    for key, kind in _REQUIRED.items():
        if not isinstance(row.get(key), kind):
            raise ToolkitError(f"{where}: VSR field {key!r} is missing or not a string; fix the line or "
                               f"download the split file again")
    if row.get("label") not in (0, 1):
        raise ToolkitError(f"{where}: VSR field 'label' must be 0 or 1, got {row.get('label')!r}; fix the line")


def image_relative_path(image_link: str, where: str) -> str:
    """"http://images.cocodataset.org/train2017/x.jpg" -> "train2017/x.jpg" (the original's rule)."""
    match = _LINK_PATH.search(image_link)
    if match is None:
        raise ToolkitError(f"{where}: cannot read an image path from image_link {image_link!r} (expected "
                           f"http://images.cocodataset.org/<train2017|val2017>/<file>); fix the line")
    return match.group(1)


def load_vsr_samples(path: Path, root: Path, templates: PromptTemplates, paper_resize: bool = False) -> list[Sample]:
    """All rows of one VSR split file as yes/no samples."""
    samples = []
    for index, (line, row) in enumerate(iter_jsonl(path, what="VSR split file")):
        where = f"{path}:{line}"
        _check_row(row, where)
        caption = row["caption"]
        samples.append(Sample(
            id=f"{index:05d}", index=index,
            image_path=root / image_relative_path(row["image_link"], where),
            question=templates.question("vsr_yes_no", caption=caption),
            options=("yes", "no"), answer="yes" if row["label"] == 1 else "no",
            relation=row["relation"], caption=caption, label=int(row["label"]),
            paper_prompt=templates.paper_prompt("vsr_yes_no", caption=caption),
            resize_to=PAPER_RESIZE if paper_resize else None))
    return samples
