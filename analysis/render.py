"""Writing a figure: the PNG, the numbers behind it (CSV or JSON) and a one-line caption, in one folder.

    <out>/<figure>/<figure>.png       (per-sample figures: <figure>__<sample id>.png)
    <out>/<figure>/<figure>.csv|json  the numbers plotted
    <out>/<figure>/caption.txt        what was measured on what, one line
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, also on machines without a display
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from common.errors import ToolkitError  # noqa: E402

DPI = 100


def figure_dir(out: Path, name: str) -> Path:
    folder = Path(out) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ToolkitError(f"cannot create {folder}: {err.strerror}; choose another --out") from None
    return folder


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text)


def save_png(fig, path: Path, dpi: int = DPI) -> Path:
    fig.savefig(path, dpi=dpi)  # every figure uses the constrained layout, which already fits the labels
    plt.close(fig)
    return path


def write_rows(path: Path, rows: Sequence[dict]) -> Path:
    """A CSV with the union of the rows' keys as columns (first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: _plain(value) for key, value in row.items()} for row in rows)
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1, default=_plain) + "\n", encoding="utf-8")
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def write_caption(folder: Path, caption: str) -> Path:
    path = folder / "caption.txt"
    path.write_text(caption.strip().replace("\n", " ") + "\n", encoding="utf-8")
    return path


def finish(out: Path, name: str, fig, caption: str, *, rows: Optional[Sequence[dict]] = None, data=None,
           dpi: int = DPI) -> list[Path]:
    """Save a one-PNG figure with its numbers (`rows` -> CSV, `data` -> JSON) and caption."""
    folder = figure_dir(out, name)
    written = [save_png(fig, folder / f"{name}.png", dpi)]
    if rows is not None:
        written.append(write_rows(folder / f"{name}.csv", rows))
    if data is not None:
        written.append(write_json(folder / f"{name}.json", data))
    written.append(write_caption(folder, caption))
    return written


def line_plot(ax, xs, series: dict, *, xlabel: str, ylabel: str, title: str = "", integer_x: bool = True) -> None:
    """One line per named series (mean, with a band when given as (mean, spread)); layers are integers."""
    for label, values in series.items():
        if isinstance(values, tuple):
            mean, spread = (np.asarray(v, dtype=float) for v in values)
            line, = ax.plot(xs, mean, marker="o", ms=3, label=label)
            ax.fill_between(xs, mean - spread, mean + spread, color=line.get_color(), alpha=0.15)
        else:
            ax.plot(xs, values, marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def overlay(ax, image, heat: np.ndarray, title: str = "", boxes: Sequence = (), vmax: Optional[float] = None) -> None:
    """`heat` (H, W over the original image, NaN = not seen) drawn over the image, with boxes outlined."""
    ax.imshow(image, interpolation="nearest")
    ax.imshow(np.ma.masked_invalid(heat), cmap="jet", alpha=0.5, vmin=0.0, interpolation="nearest",
              vmax=vmax if vmax is not None else np.nanmax(heat) if np.isfinite(heat).any() else 1.0)
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", lw=1))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
