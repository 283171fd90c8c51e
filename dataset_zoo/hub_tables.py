"""Reading the Hugging Face hub's parquet copies of a benchmark, and local parquet/JSON copies of them.

The general benchmarks (POPE, GQA, TextVQA, VQAv2) are read from the evaluation-ready copies the field uses,
the lmms-lab dataset repositories. Their files keep the repository's layout under the data root:
`<root>/<owner>/<repo>/<path in the repo>`, e.g. `data/lmms-lab/POPE/data/test-00000-of-00003.parquet`, the
same files `datasets.load_dataset("lmms-lab/POPE")` reads. A table (one split of one config) is the parquet
shards `<stem>-NNNNN-of-MMMMM.parquet`; when there are none, a single-file copy in the same schema is read
instead: `<stem>.parquet`, `<stem>.jsonl` (one row object per line) or `<stem>.json` (an array of rows).

Reading goes through pyarrow rather than `datasets.load_dataset`: only the question columns are read
(`load_dataset` would first convert every shard, for VQAv2 7 GB of embedded images, into its Arrow cache),
and images are extracted from the row groups of the selected rows only.

Images: the hub copies embed them as `datasets.Image` values, a struct of `bytes` (the original file) and
`path`. `ensure_images` writes the bytes unchanged, once, to `<root>/<owner>/<repo>/images/<key>.<ext>`
(ext from the image format; written as ".<name>.part" and renamed, so an interrupted extraction never
leaves a half image) and skips images already there. In a JSON copy the image is a path (a string or
{"path": ...}), relative to the JSON file's folder, and is used where it is.
"""
from __future__ import annotations

import io
import logging
import os
import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

from PIL import Image
from tqdm import tqdm

from common.errors import ToolkitError
from common.jsonio import iter_jsonl, read_json

logger = logging.getLogger(__name__)

_SHARD = re.compile(r"-(\d+)-of-(\d+)\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
COPY_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass(frozen=True)
class HubTable:
    """One split of one config of a hub dataset repository.

    repo: "lmms-lab/POPE". stem: the shards' path in the repo without "-NNNNN-of-MMMMM.parquet", e.g.
    "data/test". columns: the columns the loader needs (checked in every file); optional: columns read when
    present. image: the column holding the embedded image, None for a table without images.
    """

    repo: str
    stem: str
    columns: tuple[str, ...]
    optional: tuple[str, ...] = ()
    image: Optional[str] = None

    @property
    def pattern(self) -> str:
        return f"{self.stem}-*.parquet"

    def folder(self, root: Path) -> Path:
        return root / self.repo / PurePosixPath(self.stem).parent

    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo}/tree/main/{PurePosixPath(self.stem).parent}"

    @property
    def required(self) -> tuple[str, ...]:
        return self.columns + ((self.image,) if self.image else ())


@dataclass(frozen=True)
class Row:
    """The values of one table row (only the columns read) and where it is: file and row within it."""

    values: dict[str, Any]
    file: Path
    position: int


# ------------------------------------------------------------------ which files

def local_files(root: Path, table: HubTable) -> list[Path]:
    """The hub shards present, or else the first single-file copy present (`<stem>.parquet|jsonl|json`)."""
    folder = table.folder(root)
    name = PurePosixPath(table.stem).name
    shards = sorted(folder.glob(f"{name}-*.parquet"))
    if shards:
        return shards
    for suffix in COPY_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return [folder / f"{name}{suffix}"]
    return []


def missing_shards(files: Sequence[Path]) -> list[str]:
    """Names of the shards a "-NNNNN-of-MMMMM" series lacks (an interrupted download leaves such gaps)."""
    numbered = [(_SHARD.search(path.name), path) for path in files]
    numbered = [(match, path) for match, path in numbered if match]
    if not numbered:
        return []
    match, path = numbered[0]
    total, width = int(match.group(2)), len(match.group(1))
    prefix = path.name[: match.start()]
    present = {int(m.group(1)) for m, _ in numbered}
    return [f"{prefix}-{i:0{width}d}-of-{match.group(2)}.parquet" for i in range(total) if i not in present]


def placement_hint(root: Path, table: HubTable) -> str:
    """Which files to place where, for error messages."""
    folder = table.folder(root)
    name = PurePosixPath(table.stem).name
    return (f"the parquet files {table.pattern} of the Hugging Face dataset {table.repo} ({table.url()}) "
            f"in {folder}/ (or one copy in the same schema as {folder / name}.parquet, .jsonl or .json)")


def require_files(root: Path, table: HubTable, dataset: str) -> list[Path]:
    """The table's files; a ToolkitError naming what to place where if none, or shards, are missing."""
    files = local_files(root, table)
    if not files:
        raise ToolkitError(f"{dataset} data not found: place {placement_hint(root, table)}, or download them "
                           f"with --download (download=True)")
    gaps = missing_shards(files)
    if gaps:
        raise ToolkitError(f"{dataset}: {len(gaps)} shard(s) of {table.repo}/{table.pattern} are missing in "
                           f"{table.folder(root)}/ (e.g. {gaps[0]}); rerun with --download or place them there")
    return files


# ------------------------------------------------------------------ rows

def read_rows(root: Path, table: HubTable, dataset: str) -> list[Row]:
    """Every row of the table (its columns and the optional ones present), in file order."""
    rows: list[Row] = []
    for path in require_files(root, table, dataset):
        records = _parquet_records(path, table) if path.suffix == ".parquet" else _json_records(path, table)
        rows.extend(Row(values, path, position) for position, values in enumerate(records))
    return rows


def _check_columns(where: str, table: HubTable, found: Sequence[str]) -> None:
    missing = [column for column in table.required if column not in found]
    if missing:
        raise ToolkitError(f"{where}: column(s) {', '.join(missing)} missing (found: {', '.join(found) or 'none'}); "
                           f"expected the {table.repo} schema ({', '.join(table.required)}): download the file "
                           f"again or fix the copy")


def _parquet_file(path: Path):
    import pyarrow.parquet as pq  # imported here: only the general benchmarks need it

    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError variants for corrupt files
        raise ToolkitError(f"{path}: not a readable parquet file ({err}); delete it and download it "
                           f"again") from None


def _parquet_records(path: Path, table: HubTable) -> list[dict]:
    parquet = _parquet_file(path)
    found = parquet.schema_arrow.names
    _check_columns(str(path), table, found)
    if table.image is not None:
        _check_image_column(path, table, parquet.schema_arrow.field(table.image).type)
    wanted = list(table.columns) + [name for name in table.optional if name in found]
    return parquet.read(columns=wanted).to_pylist()


def _check_image_column(path: Path, table: HubTable, kind) -> None:
    import pyarrow as pa

    if not (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0):
        raise ToolkitError(f"{path}: column {table.image!r} is {kind}, not an embedded image (datasets' Image "
                           f"feature, struct<bytes, path>); download the file again or fix the copy")


def _json_records(path: Path, table: HubTable) -> list[dict]:
    if path.suffix == ".jsonl":
        records = [record for _, record in iter_jsonl(path, what=f"{table.repo} copy")]
    else:
        records = read_json(path, what=f"{table.repo} copy")
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ToolkitError(f"{path}: expected rows as JSON objects ({', '.join(table.required)}); fix the copy")
    for line, record in enumerate(records, start=1):
        _check_columns(f"{path} row {line}", table, list(record))
    return records


# ------------------------------------------------------------------ images

def image_file_name(key: Any) -> str:
    """A file-name-safe form of an image key ("COCO_val2014_000000310196", 42, "n161313")."""
    return _UNSAFE.sub("_", str(key))


def ensure_images(table: HubTable, rows: dict[str, Row], out_dir: Path) -> dict[str, Path]:
    """{image key: image file} for `rows` (key -> the row holding the image): embedded images are written to
    out_dir once; JSON copies point at their files."""
    existing = _existing_images(out_dir)
    paths: dict[str, Path] = {}
    todo: dict[Path, dict[int, str]] = defaultdict(dict)
    for key, row in rows.items():
        if row.file.suffix != ".parquet":
            paths[key] = _copy_image_path(row, table)
        elif image_file_name(key) in existing:
            paths[key] = existing[image_file_name(key)]
        else:
            todo[row.file][row.position] = key
    if todo:
        n_missing = sum(len(keys) for keys in todo.values())
        logger.info("extracting %d images of %s to %s", n_missing, table.repo, out_dir)
        with tqdm(total=n_missing, desc=f"{table.repo} images", unit="image", disable=None) as bar:
            for path, keys in todo.items():
                paths.update(_extract_from(path, keys, table, out_dir, bar))
    return paths


def _existing_images(out_dir: Path) -> dict[str, Path]:
    if not out_dir.is_dir():
        return {}
    return {path.stem: path for path in out_dir.iterdir() if not path.name.startswith(".")}


def _copy_image_path(row: Row, table: HubTable) -> Path:
    value = row.values.get(table.image)
    stored = value.get("path") if isinstance(value, dict) else value
    if not isinstance(stored, str) or not stored:
        raise ToolkitError(f"{row.file} row {row.position + 1}: {table.image!r} must be an image path (a string "
                           f"or {{\"path\": ...}}) in a JSON copy, got {str(value)[:80]}; fix the row")
    return row.file.parent / stored


def _extract_from(path: Path, keys: dict[int, str], table: HubTable, out_dir: Path, bar) -> dict[str, Path]:
    """Write the images of rows `keys` (position -> key) of one parquet file, reading only their row groups."""
    parquet = _parquet_file(path)
    starts = [0]
    for group in range(parquet.metadata.num_row_groups):
        starts.append(starts[-1] + parquet.metadata.row_group(group).num_rows)
    by_group: dict[int, list[int]] = defaultdict(list)
    for position in keys:
        by_group[bisect_right(starts, position) - 1].append(position)
    written = {}
    for group, positions in sorted(by_group.items()):
        values = parquet.read_row_group(group, columns=[table.image]).column(0).to_pylist()
        for position in positions:
            key = keys[position]
            written[key] = _write_image(values[position - starts[group]], path, position, key, out_dir)
            bar.update(1)
    return written


def _write_image(value: Any, path: Path, position: int, key: str, out_dir: Path) -> Path:
    where = f"{path} row {position + 1}"
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise ToolkitError(f"{where}: no embedded image bytes for {key} (expected datasets' Image struct of "
                           f"bytes and path); download the file again")
    try:
        image_format = Image.open(io.BytesIO(data)).format
    except OSError:
        raise ToolkitError(f"{where}: the embedded image of {key} is not a readable image; download the file "
                           f"again") from None
    suffix = ".jpg" if image_format == "JPEG" else f".{(image_format or 'img').lower()}"
    target = out_dir / f"{image_file_name(key)}{suffix}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
