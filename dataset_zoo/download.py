"""Fetching the benchmark files from where they are published (`--download` / `download=True`).

Sources (the ones the original code and the dataset authors use):
- WhatsUp annotation JSONs and image archives: the authors' Google Drive file ids, via `gdown` (optional
  dependency: `pip install gdown`);
- COCO val2017 images (COCO_QA_*): the official zip, http://images.cocodataset.org/zips/val2017.zip;
- VSR split files: the Hugging Face dataset repos cambridgeltl/vsr_{random,zeroshot}, via huggingface_hub;
- VSR images: each referenced COCO image from its own `image_link` (a few hundred files instead of the
  18 GB train2017 zip the original fetched);
- general benchmarks (POPE, GQA, TextVQA, VQAv2): the parquet shards of their lmms-lab hub repositories,
  listed and fetched with huggingface_hub (`fetch_table`; layout in dataset_zoo.hub_tables).

Every file is written under a temporary name (".<name>.part") and renamed only when complete, and an
archive is extracted into a temporary folder that is renamed when extraction finished, so an interrupted
download never leaves a file or folder that later looks complete. Files and image folders that exist are
skipped. When a source cannot be reached (offline, gdown missing), one ToolkitError lists exactly which
file to place where.

`mirror`: a local folder or URL laid out like the data root (annotation files at their data-root paths,
image folders as their archives, e.g. `controlled_images.tar.gz`, VSR images at `train2017/<file>`);
every file is then fetched from there instead. Used by the tests, and useful for a lab-wide copy.
"""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

from tqdm import tqdm

from common.errors import ToolkitError
from dataset_zoo.base import Sample
from dataset_zoo.catalog import VSR, DatasetSpec, vsr_annotation
from dataset_zoo.hub_tables import HubTable, local_files, missing_shards, placement_hint

logger = logging.getLogger(__name__)

GDRIVE, HF, URL = "gdrive", "hf", "url"
COCO_IMAGES = "http://images.cocodataset.org"


@dataclass(frozen=True)
class Remote:
    """A published file. target: what it provides under the data root (a file, or for an archive the
    folder it extracts to); ref: Drive id, "owner/repo/path/in/repo" for HF datasets, or URL."""

    filename: str
    kind: str
    ref: str
    target: str
    archive: bool = False

    @property
    def mirror_path(self) -> str:
        return self.filename if self.archive else self.target

    def describe(self) -> str:
        if self.kind == GDRIVE:
            return f"Google Drive file {self.filename} (https://drive.google.com/uc?id={self.ref})"
        if self.kind == HF:
            repo, name = split_hf_ref(self.ref)
            return f"https://huggingface.co/datasets/{repo}/resolve/main/{name}"
        return self.ref


def split_hf_ref(ref: str) -> tuple[str, str]:
    """"owner/repo/path/in/repo" -> ("owner/repo", "path/in/repo")."""
    owner, repo, name = ref.split("/", 2)
    return f"{owner}/{repo}", name


def _drive(filename: str, file_id: str, target: Optional[str] = None) -> Remote:
    archive = target is not None
    return Remote(filename, GDRIVE, file_id, target or filename, archive)


_CONTROLLED_A_IMAGES = _drive("controlled_images.tar.gz", "19KGYVQjrV3syb00GgcavB2nZTW5NXX0H", "controlled_images")
_CONTROLLED_B_IMAGES = _drive("controlled_clevr.tar.gz", "13jdBpg8t3NqW3jrL6FK8HO93vwsUjDxG", "controlled_clevr")
_COCO_VAL = Remote("val2017.zip", URL, f"{COCO_IMAGES}/zips/val2017.zip", "val2017", archive=True)
_VG_IMAGES = _drive("vg_images.tar.gz", "1idW7Buoz7fQm4-670n-oERw9U-2JLJvE", "vg_images")

ANNOTATIONS = {
    "Controlled_Images_A": _drive("controlled_images_dataset.json", "1ap8mmmpQjLIjPGuplkpBgc1hoEHCj4hm"),
    "Controlled_Images_B": _drive("controlled_clevr_dataset.json", "1unNNosLbdy9NDjgj4l8fsQP3WiAAGA6z"),
    "COCO_QA_one_obj": _drive("coco_qa_one_obj.json", "1RsMdpE9mmwnK4zzMPpC1-wTU_hNis-dq"),
    "COCO_QA_two_obj": _drive("coco_qa_two_obj.json", "1TCEoM0mgFmz8T4cF7PQ3XJmO6JjtiQ-s"),
    "VG_QA_one_obj": _drive("vg_qa_one_obj.json", "1ARMRzRdohs9QTr1gpIfzyUzvW20wYp_p"),
    "VG_QA_two_obj": _drive("vg_qa_two_obj.json", "1sjVG5O3QMY8s118k7kQM8zzDZH12i_95"),
}
IMAGE_ARCHIVES = {
    "Controlled_Images_A": _CONTROLLED_A_IMAGES, "Controlled_Images_B": _CONTROLLED_B_IMAGES,
    "COCO_QA_one_obj": _COCO_VAL, "COCO_QA_two_obj": _COCO_VAL,
    "VG_QA_one_obj": _VG_IMAGES, "VG_QA_two_obj": _VG_IMAGES,
}


def annotation_remote(spec: DatasetSpec, vsr_split: str = "test") -> Optional[Remote]:
    """The published annotation file of a dataset (None for the generated synthetic sets)."""
    if spec.family == VSR:
        relative = vsr_annotation(spec, vsr_split)
        return Remote(f"{vsr_split}.jsonl", HF, f"cambridgeltl/vsr_{spec.vsr_kind}/{vsr_split}.jsonl", relative)
    return ANNOTATIONS.get(spec.name)


class SourceUnavailable(Exception):
    """A source could not be reached; the message says why (used to build the one ToolkitError)."""


# ---------------------------------------------------------------- fetching one file to a temporary path

def _copy_stream(response, tmp: Path, label: str) -> None:
    total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
    with open(tmp, "wb") as out, tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                                      desc=label, disable=None, leave=False) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))


def fetch_url(url: str, tmp: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        _copy_stream(response, tmp, Path(url).name)


def _import_gdown():
    try:
        import gdown
    except ImportError:
        return None
    return gdown


def fetch_gdrive(file_id: str, tmp: Path) -> None:
    gdown = _import_gdown()
    if gdown is None:
        raise SourceUnavailable("gdown is not installed (pip install gdown)")
    if gdown.download(id=file_id, output=str(tmp), quiet=False) is None:
        raise SourceUnavailable("Google Drive refused or could not be reached")


def fetch_hf(ref: str, tmp: Path) -> None:
    from huggingface_hub import hf_hub_download

    repo, name = split_hf_ref(ref)
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".hf-") as scratch:
        shutil.move(hf_hub_download(repo, name, repo_type="dataset", local_dir=scratch), tmp)


def _mirror_url(mirror: str, relative: str) -> str:
    base = mirror if "://" in mirror else Path(mirror).resolve().as_uri()
    return f"{base.rstrip('/')}/{relative}"


def _fetch_to(remote: Remote, tmp: Path, mirror: Optional[str]) -> None:
    try:
        if mirror is not None:
            fetch_url(_mirror_url(mirror, remote.mirror_path), tmp)
        elif remote.kind == GDRIVE:
            fetch_gdrive(remote.ref, tmp)
        elif remote.kind == HF:
            fetch_hf(remote.ref, tmp)
        else:
            fetch_url(remote.ref, tmp)
    except SourceUnavailable:
        raise
    except Exception as err:  # network stacks raise many types; all mean "not reachable from here"
        raise SourceUnavailable(f"{type(err).__name__}: {err}") from err


def download_file(remote: Remote, dest: Path, mirror: Optional[str] = None) -> Path:
    """Fetch `remote` to `dest` via ".<name>.part"; the temporary file is removed on any failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        _fetch_to(remote, tmp, mirror)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------- archives

def _extract(archive: Path, into: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")  # "data" refuses absolute paths and links out of `into`


def install_archive(remote: Remote, root: Path, mirror: Optional[str] = None) -> Path:
    """Download an image archive and extract it to root/<target> (atomically: temp folder, then rename)."""
    target = root / remote.target
    archive = root / remote.filename
    if not archive.is_file():  # a complete archive from an earlier, interrupted extraction is reused
        download_file(remote, archive, mirror)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{remote.target}-extract-"))
    try:
        _extract(archive, scratch)
        inner = scratch / remote.target
        # Archives normally hold the folder itself; one holding bare files is accepted too.
        os.replace(inner if inner.is_dir() else scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    archive.unlink()
    return target


# ---------------------------------------------------------------- what get_dataset calls

def _raise_unavailable(failures: Sequence[tuple[Remote, str]], root: Path, spec: DatasetSpec) -> None:
    lines = [f"could not download {len(failures)} file(s) for {spec.name}; place them by hand:"]
    for remote, reason in failures[:10]:
        action = f"extract it into {root}/ so that {root / remote.target}/ exists" if remote.archive \
            else f"save it as {root / remote.target}"
        lines.append(f"  - {remote.describe()}: {action}   [{reason}]")
    if len(failures) > 10:
        lines.append(f"  ... and {len(failures) - 10} more of the same kind")
    raise ToolkitError("\n".join(lines))


GIVE_UP_AFTER = 3  # failures in a row with no success: the source is down, do not try hundreds of images


def fetch_remotes(remotes: Sequence[Remote], root: Path, spec: DatasetSpec, mirror: Optional[str]) -> None:
    failures = []
    for tried, remote in enumerate(tqdm(remotes, desc=f"{spec.name} files", unit="file",
                                        disable=None if len(remotes) > 1 else True), start=1):
        try:
            if remote.archive:
                install_archive(remote, root, mirror)
            else:
                download_file(remote, root / remote.target, mirror)
        except SourceUnavailable as err:
            failures.append((remote, str(err)))
            if len(failures) == tried == GIVE_UP_AFTER:
                failures += [(rest, "not tried: the source failed every time") for rest in remotes[tried:]]
                break
    if failures:
        _raise_unavailable(failures, root, spec)


def fetch_annotations(spec: DatasetSpec, root: Path, vsr_split: str = "test", mirror: Optional[str] = None) -> None:
    """Download the annotation file of `spec` unless present."""
    remote = annotation_remote(spec, vsr_split)
    if remote is not None and not (root / remote.target).is_file():
        logger.info("downloading %s to %s", remote.describe(), root / remote.target)
        fetch_remotes([remote], root, spec, mirror)


def _image_remotes(spec: DatasetSpec, root: Path, samples: Sequence[Sample]) -> list[Remote]:
    if spec.family == VSR:
        missing = sorted({s.image_path for s in samples if not s.image_path.is_file()})
        relative = [p.relative_to(root).as_posix() for p in missing]
        return [Remote(Path(r).name, URL, f"{COCO_IMAGES}/{r}", r) for r in relative]
    archive = IMAGE_ARCHIVES.get(spec.name)
    if archive is None or _non_empty_dir(root / archive.target):
        return []
    return [archive]


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def fetch_images(spec: DatasetSpec, root: Path, samples: Sequence[Sample], mirror: Optional[str] = None) -> None:
    """Download what the samples' images need: the image archive, or (VSR) each missing image."""
    remotes = _image_remotes(spec, root, samples)
    if remotes:
        logger.info("downloading %d image source(s) for %s", len(remotes), spec.name)
        fetch_remotes(remotes, root, spec, mirror)


def list_hub_files(table: HubTable, mirror: Optional[str] = None) -> list[str]:
    """Repository paths of the table's shards: listed on the hub, or found in a local mirror folder."""
    if mirror is not None:
        if "://" in mirror:
            raise SourceUnavailable("a URL mirror cannot be listed; use a local folder mirror for hub datasets")
        base = Path(mirror) / table.repo
        return sorted(path.relative_to(base).as_posix() for path in base.glob(table.pattern))
    from huggingface_hub import HfApi

    try:
        names = HfApi().list_repo_files(table.repo, repo_type="dataset")
    except Exception as err:  # offline mode, network and HTTP errors all mean "not reachable from here"
        raise SourceUnavailable(f"{type(err).__name__}: {err}") from err
    return sorted(name for name in names if fnmatch(name, table.pattern))


def fetch_table(spec: DatasetSpec, root: Path, table: HubTable, mirror: Optional[str] = None) -> None:
    """Download the table's missing shards; nothing when a complete set or a single-file copy is present."""
    present = local_files(root, table)
    if present and not missing_shards(present):
        return
    try:
        names = list_hub_files(table, mirror)
    except SourceUnavailable as err:
        raise ToolkitError(f"could not list the files of {table.repo} [{err}]; place "
                           f"{placement_hint(root, table)}") from None
    if not names:
        raise ToolkitError(f"no file of {table.repo} matches {table.pattern} (the repository changed?); place "
                           f"{placement_hint(root, table)}")
    remotes = [Remote(PurePosixPath(name).name, HF, f"{table.repo}/{name}", f"{table.repo}/{name}")
               for name in names if not (root / table.repo / name).is_file()]
    logger.info("downloading %d file(s) of %s to %s", len(remotes), table.repo, root / table.repo)
    fetch_remotes(remotes, root, spec, mirror)


def _how_to_get(spec: DatasetSpec, vsr_split: str) -> str:
    remote = annotation_remote(spec, vsr_split)
    if remote is None:
        return "the synthetic generator writes it (dataset_zoo/synthetic.py)"
    return f"download it with --download (download=True), or save {remote.describe()} there"


def require_annotation(spec: DatasetSpec, path: Path, vsr_split: str = "test") -> None:
    """ToolkitError naming the expected path and the fix when the annotation file is missing."""
    if not path.is_file():
        raise ToolkitError(f"annotation file for {spec.name} not found: {path}; "
                           f"{_how_to_get(spec, vsr_split)}")


def _images_hint(spec: DatasetSpec, root: Path) -> str:
    if spec.family == VSR:
        return (f"COCO 2017 images: {root}/train2017/ and {root}/val2017/ "
                f"({COCO_IMAGES}/zips/train2017.zip and val2017.zip, or each image from its image_link)")
    archive = IMAGE_ARCHIVES.get(spec.name)
    if archive is None:
        return f"delete {root / spec.annotation} so that the generator writes the scenes again"
    return f"{archive.describe()}, extracted into {root}/ (gives {root / archive.target}/)"


def require_images(spec: DatasetSpec, root: Path, samples: Sequence[Sample]) -> None:
    """ToolkitError listing missing images (first few) and where to get them."""
    missing = [s.image_path for s in samples if not s.image_path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise ToolkitError(f"{len(missing)} of {len(samples)} images of {spec.name} are missing (e.g. {shown}); "
                           f"download them with --download (download=True) or place them: "
                           f"{_images_hint(spec, root)}")

