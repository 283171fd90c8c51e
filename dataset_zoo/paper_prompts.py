"""Fetching the paper's QA prompts from the Hugging Face dataset AdaptVis/all_datasets.

The AdaptVis code reads `prompts/{dataset}_with_answer_{option}_options.jsonl`; the authors later published
the same rows as one parquet file per subset (`{config}/test-00000-of-00001.parquet`). This module
downloads that parquet and writes it as the JSONL file the paper-exact mode (`prompt_dir`) reads.

The parquet schema was not verified against a real copy; rows are expected to carry `question` and
`answer` (and usually `id`). Anything else stops with a ToolkitError naming the columns found. Reading
parquet needs `pyarrow` (`pip install pyarrow`), an optional dependency.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from common.errors import ToolkitError
from dataset_zoo.catalog import get_spec
from dataset_zoo.download import HF, Remote, SourceUnavailable, download_file
from dataset_zoo.prompts import paper_prompt_path

REPO = "AdaptVis/all_datasets"
CONFIGS = {"Controlled_Images_A": "Controlled_A", "Controlled_Images_B": "Controlled_B",
           "COCO_QA_one_obj": "COCO_one_obj", "COCO_QA_two_obj": "COCO_two_obj",
           "VG_QA_one_obj": "VG_one_obj", "VG_QA_two_obj": "VG_two_obj"}


def prompt_remote(dataset: str) -> Remote:
    if dataset not in CONFIGS:
        raise ToolkitError(f"AdaptVis/all_datasets has prompts for {', '.join(CONFIGS)} only, not {dataset}")
    name = f"{CONFIGS[dataset]}/test-00000-of-00001.parquet"
    return Remote(name, HF, f"{REPO}/{name}", name)


def read_parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ToolkitError(f"reading {path} needs pyarrow (pip install pyarrow); or place the original "
                           f"prompt .jsonl files in the prompt folder yourself") from None
    return pq.read_table(path).to_pylist()


def _jsonl_rows(rows: list[dict], source: Path) -> list[dict]:
    if not rows or not {"question", "answer"} <= set(rows[0]):
        found = ", ".join(rows[0]) if rows else "no rows"
        raise ToolkitError(f"{source}: expected columns question and answer, found {found}; the published "
                           f"schema changed, place the original prompt .jsonl files by hand")
    return [{"id": row.get("id", i), "question": row["question"], "answer": row["answer"]}
            for i, row in enumerate(rows)]


def download_paper_prompts(prompt_dir: Path | str, dataset: str, option: Optional[str] = None,
                           mirror: Optional[str] = None) -> Path:
    """Write `{dataset}_with_answer_{option}_options.jsonl` into `prompt_dir` unless it exists; return it."""
    paper_option = get_spec(dataset).paper_option
    option = option or paper_option
    target = paper_prompt_path(prompt_dir, dataset, option)
    if target.is_file():
        return target
    if option != paper_option:
        raise ToolkitError(f"the published prompts of {dataset} are the {paper_option}-option ones; write "
                           f"{target} yourself for option {option!r}")
    remote = prompt_remote(dataset)
    parquet = Path(prompt_dir) / ".parquet" / remote.target
    try:
        download_file(remote, parquet, mirror)
    except SourceUnavailable as err:
        raise ToolkitError(f"could not download {remote.describe()} [{err}]; place the original prompt file "
                           f"at {target}") from None
    rows = _jsonl_rows(read_parquet_rows(parquet), parquet)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_text("\n".join(json.dumps(row) for row in rows))
    tmp.replace(target)
    return target
