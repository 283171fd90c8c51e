"""A run folder's identity beyond its name: the data, the prompt source and the model it was computed from.

The folder name holds the method, its hyper-parameters and the result-affecting settings
(`runner.config.run_path`), but not what the flags point at: two runs with different `--data-root`
(a good and a corrupted copy of a dataset), an edited annotation file or retrained weights in the same
`--model-path` would share a folder, and the second would be skipped as "already finished" and print
the first's numbers. So config.json records `identity`:

* `data_root`: the data root, resolved to an absolute path;
* `annotation`: size and SHA-256 of each annotation file (the general benchmarks' question files);
* `prompt`: where the questions' text came from (template name, version and hash, or the paper file's hash);
* `model`: the name or path given and the revision; for a local folder also size and SHA-256 of each
  weights file (`*.safetensors`, `*.bin`), and of a LoRA adapter folder's own weights besides its base's;
* `boxes` (with `--visual-prompt box`): the box source and the size and SHA-256 of the file it reads (a
  boxes JSON, COCO annotations, the synthetic scenes' sidecar, or a detector's module), so edited boxes
  or detector code make a different run.

An existing folder whose recorded identity differs is an error naming what differs (`--overwrite`
redoes it). Hashing a 14 GB checkpoint takes a while, so hashes are cached per (path, size, mtime) in
`<output root>/.fingerprints.json`: a file is hashed again only when it changes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from common.errors import ToolkitError
from runner.records import directory_lock

logger = logging.getLogger(__name__)

CACHE_FILE = ".fingerprints.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# prompt_info keys that change the questions; its "file" is where the template file happens to live.
PROMPT_KEYS = ("source", "name", "version", "sha256", "template", "variant", "option")
_CHUNK = 1 << 20


class FingerprintCache:
    """SHA-256 of files, remembered per (resolved path, size, mtime) in a JSON file shared by the runs of
    one output root (updated under a lock, merged with what other processes added meanwhile)."""

    def __init__(self, path: Path):
        self.path = path
        self._known = self._read()
        self._added: dict[str, str] = {}

    def _read(self) -> dict[str, str]:
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or damaged: a cache, so start again
            return {}
        return payload if isinstance(payload, dict) else {}

    def fingerprint(self, file: Path, name: str) -> dict:
        """{"file": name, "size": bytes, "sha256": hex} of `file`."""
        stat = file.stat()
        key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = self._known.get(key) or self._added.get(key)
        if digest is None:
            if stat.st_size > 100 * _CHUNK:
                logger.info("fingerprinting %s (%.1f GB; once per version of the file)", file, stat.st_size / 1e9)
            digest = sha256_of(file)
            self._added[key] = digest
        return {"file": name, "size": stat.st_size, "sha256": digest}

    def save(self) -> None:
        """Add this process's new hashes to the cache file (atomically, under an exclusive lock)."""
        if not self._added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with directory_lock(self.path.parent):
            merged = {**self._read(), **self._added}
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(merged, indent=0, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        self._known, self._added = merged, {}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_identity(config, dataset, checkpoint, cache: FingerprintCache, box_source: Optional[dict] = None) -> dict:
    """The identity of what `config` evaluates: data root, annotation files, prompt source, model, and the
    box source of a visual prompt (`BoxPrompt.settings()["source"]`, None without one)."""
    root = Path(config.data_root).expanduser().resolve()
    identity = {"data_root": str(root),
                "annotation": [cache.fingerprint(path, _relative(path, root)) for path in annotation_files(dataset)],
                "prompt": {key: dataset.prompt_info.get(key) for key in PROMPT_KEYS},
                "model": model_identity(config, checkpoint, cache)}
    if box_source is not None:
        identity["boxes"] = box_identity(box_source, cache)
    cache.save()
    return identity


def box_identity(source: dict, cache: FingerprintCache) -> dict:
    """A box source's description with its file (if it reads one) as size and hash."""
    identity = dict(source)
    file = Path(source["file"]) if source.get("file") else None
    if file is not None and file.is_file():
        identity["file"] = cache.fingerprint(file, str(file.resolve()))
    return identity


def annotation_files(dataset) -> list[Path]:
    """The files the samples were read from: the annotation file, or a general benchmark's question files."""
    names = dataset.info.get("files") or [dataset.info.get("annotation")]
    return sorted({Path(name).resolve() for name in names if name and Path(name).is_file()})


def model_identity(config, checkpoint, cache: FingerprintCache) -> dict:
    """The model as given (a local --model-path made absolute) and its revision; a local folder's weights
    files by size and hash. A registry name stays a name, so moving the repository keeps `toy` the same."""
    given = config.model_path or config.model_name
    if config.model_path and Path(config.model_path).expanduser().is_dir():
        given = str(Path(config.model_path).expanduser().resolve())
    identity: dict[str, Any] = {"model": given, "revision": checkpoint.revision}
    if Path(checkpoint.model_id).is_dir():
        identity["weights"] = weights_fingerprints(Path(checkpoint.model_id), cache)
    if checkpoint.adapter is not None:  # a LoRA adapter folder: its base model's weights, then its own
        identity["adapter_weights"] = weights_fingerprints(Path(checkpoint.adapter), cache)
    return identity


def weights_fingerprints(folder: Path, cache: FingerprintCache) -> list[dict]:
    files = sorted({path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)})
    return [cache.fingerprint(path, path.name) for path in files]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def differences(recorded: dict, current: dict) -> list[str]:
    """What differs between two identities, one phrase per part: "data root: /a (folder) vs /b (now)"."""
    found = []
    # "boxes" joined the identity later: a folder recorded without it is compared on the rest.
    keys = ("data_root", "annotation", "prompt", "model") + (("boxes",) if "boxes" in recorded else ())
    for key in keys:
        before, now = recorded.get(key), current.get(key)
        if before != now:
            found.append(f"{key.replace('_', ' ')}: {_describe(before)} (in the folder) vs {_describe(now)} (now)")
    return found


def _describe(value: Any) -> str:
    """A short text of an identity part: files as "name (size bytes, sha256 <12 digits>)"."""
    if isinstance(value, list):
        return "; ".join(_describe(item) for item in value) or "no file"
    if isinstance(value, dict) and "sha256" in value and "file" in value:
        return f"{value['file']} ({value['size']} bytes, sha256 {value['sha256'][:12]})"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_describe(item)}" for key, item in value.items() if item is not None)
    return str(value)


def check_identity(folder_path: Path, recorded: Optional[dict], current: dict) -> None:
    """Refuse to continue or reuse a folder whose results were computed from other inputs."""
    if recorded is None:
        return
    found = differences(recorded, current)
    if found:
        raise ToolkitError(f"{folder_path} holds a run of the same configuration on different inputs "
                           f"({'; '.join(found)}); its results do not describe this command. Rerun with "
                           f"--overwrite to redo it, or choose another --output-dir")

