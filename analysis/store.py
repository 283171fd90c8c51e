"""Captured samples on disk: one `.npz` per sample plus one `records.jsonl` line per sample, per configuration.

    <capture dir>/<configuration label>/
        records.jsonl      one line per sample: id, index, image, image_size, question, gold, relation, options,
                           generation, prediction, correct, confidence (first token, at this alpha), alpha,
                           [branch, confidence_rounded], file
        00000.npz ...      the sample's CapturedAttention: image_positions, geometry (JSON), and per captured
                           row s: position_s, image_s (layers, heads, n_image), text_s, image_logits_s,
                           text_positions_s (float32 / int64)
        settings.json      what was collected (model, dataset, split, limit, configuration, ...), written last:
                           a folder whose settings match and which is complete is reused instead of recomputed

Samples go to disk as soon as they are captured, so memory holds one batch at a time (a LLaVA-1.5-7B sample
is ~4.7 MB: 32 layers x 32 heads x 576 image keys x (probabilities + logits) x 4 bytes, plus the text keys).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from common.errors import ToolkitError
from intervention.capture import AttentionRow, CapturedAttention
from model_zoo.geometry_types import ImageGeometry

RECORDS = "records.jsonl"
SETTINGS = "settings.json"


def save_capture(path: Path, captured: CapturedAttention) -> None:
    arrays = {"image_positions": captured.image_positions}
    if captured.geometry is not None:
        arrays["geometry"] = np.array(captured.geometry.to_json())
    for step, row in enumerate(captured.rows):
        arrays.update({f"position_{step}": np.array(row.position), f"image_{step}": row.image,
                       f"text_{step}": row.text, f"image_logits_{step}": row.image_logits,
                       f"text_positions_{step}": row.text_positions})
    np.savez(path, **arrays)


def load_capture(path: Path) -> CapturedAttention:
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise ToolkitError(f"cannot read captured attention {path}: {err}; delete its folder to collect again") \
            from None
    with data:
        rows, step = [], 0
        while f"image_{step}" in data:
            rows.append(AttentionRow(int(data[f"position_{step}"]), data[f"image_{step}"], data[f"text_{step}"],
                                     data[f"image_logits_{step}"], data[f"text_positions_{step}"]))
            step += 1
        geometry = ImageGeometry.from_json(str(data["geometry"])) if "geometry" in data else None
        return CapturedAttention(0, data["image_positions"], rows, geometry)


class CaptureStore:
    """One configuration's folder of captured samples (see the module docstring)."""

    def __init__(self, path: Path, settings: dict):
        self.path = Path(path)
        self.settings = settings
        self._records: Optional[list[dict]] = None

    @property
    def label(self) -> str:
        return self.path.name

    def is_complete(self, n_samples: int) -> bool:
        settings_file = self.path / SETTINGS
        if not settings_file.is_file():
            return False
        try:
            recorded = json.loads(settings_file.read_text())
        except json.JSONDecodeError:
            return False
        return recorded == self.settings and len(self.records()) == n_samples

    def start(self) -> None:
        """Empty the folder for a new collection."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in [self.path / SETTINGS, self.path / RECORDS, *self.path.glob("*.npz")]:
            stale.unlink(missing_ok=True)
        self._records = []

    def add(self, record: dict, captured: CapturedAttention) -> None:
        name = f"{len(self._records):05d}.npz"
        save_capture(self.path / name, captured)
        record = {**record, "file": name}
        with open(self.path / RECORDS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self._records.append(record)

    def finish(self) -> None:
        tmp = self.path / (SETTINGS + ".tmp")
        tmp.write_text(json.dumps(self.settings, indent=1))
        os.replace(tmp, self.path / SETTINGS)

    def records(self) -> list[dict]:
        if self._records is None:
            path = self.path / RECORDS
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            self._records = [json.loads(line) for line in lines if line.strip()]
        return self._records

    def load(self, record: dict) -> CapturedAttention:
        return load_capture(self.path / record["file"])

    def __iter__(self) -> Iterator[tuple[dict, CapturedAttention]]:
        """(record, capture) of every sample, read one at a time."""
        for record in self.records():
            yield record, self.load(record)
