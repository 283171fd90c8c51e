"""What the page answers about: a sample of the loaded dataset, or an uploaded image with a typed question.

An upload is checked before the model sees it (a file PIL cannot read, a file or an image too large) and any
problem becomes one `ToolkitError` sentence for the page.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

from PIL import Image, UnidentifiedImageError

from common.errors import ToolkitError
from dataset_zoo.base import Sample

MAX_UPLOAD_BYTES = 50 * 2 ** 20
# 40 MP holds any phone photo of today; above it the processor's resize would first need ~0.5 GB per copy.
MAX_UPLOAD_PIXELS = 40_000_000
MAX_QUESTION_CHARS = 1000


@dataclass(frozen=True)
class DatasetSource:
    """Sample `index` (0-based position) of the demo's dataset."""

    index: int

    @property
    def key(self) -> tuple:
        """What identifies the answered input in the result cache."""
        return ("sample", self.index)


@dataclass(frozen=True)
class UploadSource:
    """An uploaded image and a question; equal (one cache entry) for the same file content and question."""

    digest: str
    question: str
    name: str = field(compare=False)
    image: Image.Image = field(compare=False, repr=False)

    @property
    def key(self) -> tuple:
        """The cache's key holds no pixels, so cached results never keep uploaded images alive."""
        return ("upload", self.digest, self.question)

    def sample(self) -> Sample:
        """A `Sample` for the toolkit's batch API; there is no gold answer, so nothing is judged."""
        return Sample(id=f"upload-{self.digest[:12]}", index=-1, image_path=Path(self.name), question=self.question,
                      options=(), answer="", relation="")


Source = Union[DatasetSource, UploadSource]


def load_upload(path: Optional[str], question: Optional[str], *, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> UploadSource:
    """The uploaded file at `path` as an RGB image with its question, or a ToolkitError saying what is wrong."""
    if not path:
        raise ToolkitError("choose an image file to upload first")
    question = (question or "").strip()
    if not question:
        raise ToolkitError("type a question about the image, e.g. 'Where is the mug in relation to the table?'")
    if len(question) > MAX_QUESTION_CHARS:
        raise ToolkitError(f"the question has {len(question)} characters; keep it under {MAX_QUESTION_CHARS}")
    stat = Path(path).stat()
    if stat.st_size > max_bytes:
        raise ToolkitError(f"{Path(path).name} is {stat.st_size / 2 ** 20:.1f} MB; the demo takes image files up "
                           f"to {max_bytes / 2 ** 20:.0f} MB")
    return _read(str(path), stat.st_size, stat.st_mtime_ns, question, max_pixels)


# Every change on the page re-reads its inputs, the uploaded file included: decode each file version once.
@lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int, question: str, max_pixels: int) -> UploadSource:
    file = Path(path)
    image = _decode(file, file.name, max_pixels)
    return UploadSource(hashlib.sha1(file.read_bytes()).hexdigest(), question, file.name, image)


def _decode(file: Path, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # PIL only warns up to twice its own pixel limit; here any "decompression bomb" is refused.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise ToolkitError(_too_large(name, width, height, max_pixels))
                return opened.convert("RGB")
    except (UnidentifiedImageError, ValueError):
        raise ToolkitError(f"{name} is not an image PIL can read; upload a PNG, JPEG, WebP, BMP or GIF file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ToolkitError(f"{name} declares more pixels than images may have here (at most "
                           f"{max_pixels / 1e6:.0f} megapixels); downscale it") from None
    except OSError as err:
        raise ToolkitError(f"{name} could not be decoded ({err}); the file may be truncated or corrupt") from None


def _too_large(name: str, width: int, height: int, max_pixels: int) -> str:
    return (f"{name} is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); the demo takes at most "
            f"{max_pixels / 1e6:.0f} megapixels, downscale it")
