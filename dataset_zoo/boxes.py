"""Boxes of the objects a sample refers to, from any of four sources; shared by visual prompting and analyses.

    source = box_source_for("Synthetic_Controlled_A", root="data")           # the generator's sidecar
    source = CocoBoxes("annotations/instances_val2017.json")                 # COCO instances, by name
    source = JsonBoxes("my_boxes.json")                                      # a boxes JSON (schema below)
    source = DetectorBoxes(my_detector)                                      # a user-supplied detector
    source = DetectorBoxes(load_detector("my_detectors:detect"))             # ... named MODULE:FUNCTION
    source.boxes(sample, image)   # -> [NamedBox(name, (x0, y0, x1, y1)), ...] in `image`'s pixels

Boxes are (x0, y0, x1, y1) in pixels of the image as stored on disk, x1/y1 exclusive (`array[y0:y1, x0:x1]` is
the box), as in the synthetic sidecar. For a flipped sample (`dataset_zoo.flip`) the file-based sources
mirror their boxes (x -> width - x), since its image is the mirror of the stored one; a detector sees the
mirrored image itself.

Which objects a sample refers to (`referenced_objects`): Controlled-style samples name them in `group`
(obj1, obj2); WhatsUp QA questions in "Where is the {obj1} in relation to the {obj2}?" / "Where is the
{obj} in the photo?"; VSR captions "The {subj} {is} {relation} the {obj}.".

Boxes JSON schema (`JsonBoxes`): one object mapping a sample id or an image file name to the boxes of that
image, each named:

    {"mug_left_of_table": {"mug": [10, 40, 30, 70], "table": [35, 20, 90, 80]},
     "000000397133.jpg":  {"dining table": [0, 210, 640, 427]}}

A sample's entry is looked up by its id first, then by its image file name; every box of the entry is used
(list the objects the question refers to).

COCO instances (`CocoBoxes`): the instances_val2017.json schema (`images[].file_name`, `annotations[]` with
`image_id`, `category_id`, `bbox` = [x, y, width, height], `iscrowd`, `area`; `categories[]` with `id`,
`name`). Referenced objects are matched to category names (case-insensitive); when an image holds several
instances of a category, the largest non-crowd one is taken.
"""
from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence

from PIL import Image

from common.errors import ToolkitError
from common.jsonio import read_json
from dataset_zoo.base import Sample
from dataset_zoo.flip import is_flipped, original_id

Box = tuple[int, int, int, int]
# detector(image, object names) -> {name: box} for the names it found
Detector = Callable[[Image.Image, Sequence[str]], Mapping[str, Sequence[float]]]

_TWO_OBJECTS = re.compile(r"Where (?:is|are) the (?P<a>.+?) in relation to (?:the )?(?P<b>.+?)\?", re.IGNORECASE)
_ONE_OBJECT = re.compile(r"Where (?:is|are) the (?P<a>.+?) in the photo\?", re.IGNORECASE)
_CAPTION_SUBJECT = re.compile(r"^(?:the|a|an)\s+(?P<subj>.+?)(?:\s+(?:is|are))?$", re.IGNORECASE)
_CAPTION_OBJECT = re.compile(r"^(?:the|a|an)\s+(?P<obj>.+?)\.?$", re.IGNORECASE)
# MODULE:FUNCTION, as the command lines' --box-detector takes a detector (dotted module, plain function name)
_DETECTOR_SPEC = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")


@dataclass(frozen=True)
class NamedBox:
    name: str
    box: Box


class BoxSource(Protocol):
    def boxes(self, sample: Sample, image: Image.Image) -> list[NamedBox]:
        """The boxes of the objects `sample` refers to, in `image`'s pixels ([] if the source has none)."""

    def describe(self) -> dict:
        """What a run folder should record about the source."""


def referenced_objects(sample: Sample) -> tuple[str, ...]:
    """The object names a sample's question or caption refers to (hyphens read as spaces); () if unknown."""
    if sample.group is not None:
        return tuple(name.replace("-", " ") for name in sample.group)
    if sample.caption is not None:
        return _caption_objects(sample.caption, sample.relation)
    match = _TWO_OBJECTS.search(sample.question) or _ONE_OBJECT.search(sample.question)
    return tuple(name.strip() for name in match.groupdict().values()) if match else ()


def _caption_objects(caption: str, relation: str) -> tuple[str, ...]:
    head, separator, tail = caption.partition(f" {relation} ")
    subject = _CAPTION_SUBJECT.match(head.strip())
    obj = _CAPTION_OBJECT.match(tail.strip())
    if not separator or subject is None or obj is None:
        return ()
    return subject.group("subj"), obj.group("obj")


def mirror_box(box: Box, width: int) -> Box:
    """The box in the horizontally mirrored image (x1 exclusive, so x0' = width - x1)."""
    x0, y0, x1, y1 = box
    return width - x1, y0, width - x0, y1


def clip_box(box: Sequence[float], size: tuple[int, int]) -> Box:
    """Float coordinates widened to whole pixels (floor/ceil) and clipped to the image."""
    width, height = size
    x0, y0, x1, y1 = box
    return (max(0, math.floor(x0)), max(0, math.floor(y0)), min(width, math.ceil(x1)), min(height, math.ceil(y1)))


def _oriented(boxes: list[NamedBox], sample: Sample, image: Image.Image) -> list[NamedBox]:
    """File boxes refer to the stored image: mirror them for a flipped sample, clip them to the image."""
    if is_flipped(sample):
        boxes = [NamedBox(b.name, mirror_box(b.box, image.width)) for b in boxes]
    return [NamedBox(b.name, clip_box(b.box, image.size)) for b in boxes]


def _check_box(value, where: str) -> Box:
    if not (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ToolkitError(f"{where}: a box is [x0, y0, x1, y1] in pixels, got {value!r}; fix the box file")
    x0, y0, x1, y1 = value
    if x1 <= x0 or y1 <= y0:
        raise ToolkitError(f"{where}: box {list(value)} is empty (x1 <= x0 or y1 <= y0); boxes are "
                           f"[x0, y0, x1, y1], not [x, y, width, height]")
    return tuple(value)


class SyntheticBoxes:
    """The exact boxes the synthetic scene generator wrote next to its images (`*_boxes.json`)."""

    def __init__(self, root: Path | str, variant: str):
        from dataset_zoo.synthetic import boxes_path, load_boxes  # the generator is only needed here
        self.path = boxes_path(Path(root), variant)
        self._boxes = load_boxes(Path(root), variant)

    def boxes(self, sample: Sample, image: Image.Image) -> list[NamedBox]:
        roles = self._boxes.get(Path(sample.image_path).name)
        if roles is None:
            return []
        names = dict(zip(("object", "anchor"), referenced_objects(sample)))
        return _oriented([NamedBox(names.get(role, role), box) for role, box in roles.items()], sample, image)

    def describe(self) -> dict:
        return {"source": "synthetic_sidecar", "file": str(self.path)}


class JsonBoxes:
    """Boxes from a boxes JSON (schema in the module docstring)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        data = read_json(self.path, what="boxes JSON")
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ToolkitError(f"{self.path}: a boxes JSON maps sample ids or image file names to "
                               f'{{"object name": [x0, y0, x1, y1]}}; see dataset_zoo/boxes.py')
        self._entries = {key: [NamedBox(name, _check_box(box, f"{self.path} [{key!r}][{name!r}]"))
                               for name, box in entry.items()] for key, entry in data.items()}

    def boxes(self, sample: Sample, image: Image.Image) -> list[NamedBox]:
        entry = self._entries.get(original_id(sample), self._entries.get(Path(sample.image_path).name))
        return [] if entry is None else _oriented(entry, sample, image)

    def describe(self) -> dict:
        return {"source": "boxes_json", "file": str(self.path)}


class CocoBoxes:
    """Boxes from COCO instance annotations, objects matched to category names."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        data = read_json(self.path, what="COCO instances file")
        try:
            categories = {c["id"]: c["name"].lower() for c in data["categories"]}
            file_ids = {image["file_name"]: image["id"] for image in data["images"]}
            self._by_image: dict = {}
            for ann in sorted(data["annotations"], key=lambda a: (a.get("iscrowd", 0), -a["bbox"][2] * a["bbox"][3])):
                x, y, w, h = ann["bbox"]
                named = self._by_image.setdefault(ann["image_id"], {})
                named.setdefault(categories[ann["category_id"]], (x, y, x + w, y + h))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ToolkitError(f"{self.path}: not a COCO instances file (missing or malformed {err}); use e.g. "
                               f"annotations/instances_val2017.json") from None
        self._file_ids = file_ids

    def boxes(self, sample: Sample, image: Image.Image) -> list[NamedBox]:
        named = self._by_image.get(self._file_ids.get(Path(sample.image_path).name), {})
        found = [NamedBox(name, named[name.lower()]) for name in referenced_objects(sample) if name.lower() in named]
        return _oriented(found, sample, image)

    def describe(self) -> dict:
        return {"source": "coco_instances", "file": str(self.path)}


class DetectorBoxes:
    """Boxes from a user-supplied detector `fn(image, names) -> {name: [x0, y0, x1, y1]}` (not bundled).

    The detector sees the image the model will see (mirrored for a flipped sample), so its boxes are used
    as they are, clipped to the image. Its name defaults to `module:function`, the spelling --box-detector
    takes, so a run folder's record says which function to import again.
    """

    def __init__(self, detector: Detector, name: Optional[str] = None):
        self.detector = detector
        self.name = name or _detector_name(detector)

    def boxes(self, sample: Sample, image: Image.Image) -> list[NamedBox]:
        names = referenced_objects(sample)
        found = self.detector(image, names) if names else {}
        if not isinstance(found, Mapping):
            raise ToolkitError(f"detector {self.name} returned {type(found).__name__}; it must return "
                               f"{{object name: [x0, y0, x1, y1]}} for the names it found")
        return [NamedBox(name, clip_box(_check_box(box, f"detector {self.name} ({name!r})"), image.size))
                for name, box in found.items()]

    def describe(self) -> dict:
        described = {"source": "detector", "detector": self.name}
        file = _source_file(self.detector)
        return described if file is None else {**described, "file": file}


def _detector_name(detector: Detector) -> str:
    name = getattr(detector, "__qualname__", None) or getattr(detector, "__name__", None) or type(detector).__name__
    module = getattr(detector, "__module__", None)
    return f"{module}:{name}" if module else name


def _source_file(detector: Detector) -> Optional[str]:
    """The file the detector was defined in (None for a built-in or a callable without one)."""
    try:
        return inspect.getsourcefile(detector)
    except TypeError:
        return None


def check_detector_spec(spec: str) -> tuple[str, str]:
    """(module, function) of a `MODULE:FUNCTION` detector spec; a ToolkitError showing the form otherwise."""
    match = _DETECTOR_SPEC.match(spec)
    if match is None or match.group("module").endswith(".py"):  # my_det.py:detect would read as package my_det
        raise ToolkitError(f"--box-detector {spec!r} is not MODULE:FUNCTION; write e.g. my_detectors:detect for a "
                           f"function detect(image, names) in my_detectors.py (a module name, not a file path)")
    return match.group("module"), match.group("function")


def load_detector(spec: str) -> Detector:
    """The detector function a `MODULE:FUNCTION` spec names, imported from sys.path or the current directory;
    a ToolkitError naming the problem when the spec is malformed, the module does not import or the
    function is missing or not callable."""
    module_name, function_name = check_detector_spec(spec)
    _make_current_directory_importable()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name + ".").startswith(err.name + "."):  # it is missing itself
            raise ToolkitError(f"--box-detector {spec}: no module {module_name} in the current directory or on "
                               f"sys.path; put {module_name.replace('.', '/')}.py there or add its folder to "
                               f"PYTHONPATH") from None
        raise _import_failure(spec, module_name, err) from None
    except Exception as err:  # the user's module may fail in any way while it runs; report it in one line
        raise _import_failure(spec, module_name, err) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ToolkitError(f"--box-detector {spec}: module {module_name} ({getattr(module, '__file__', '?')}) has "
                           f"no {function_name}; name a function it defines")
    if not callable(function):
        raise ToolkitError(f"--box-detector {spec}: {function_name} in {module_name} is a "
                           f"{type(function).__name__}, not a function fn(image, names)")
    return function


def _make_current_directory_importable() -> None:
    # `python main_aro.py` puts the script's folder on sys.path, not the current directory (as `python -m`
    # does); appended last, so a detector module never shadows a library of the same name.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _import_failure(spec: str, module_name: str, err: Exception) -> ToolkitError:
    message = (str(err).strip().splitlines() or [""])[0]
    return ToolkitError(f"--box-detector {spec}: importing {module_name} failed ({type(err).__name__}: {message}); "
                        f"fix the module or install what it imports")


def box_source_for(dataset: str, root: Path | str = "data", *, boxes_json: Optional[Path | str] = None,
                   coco_annotations: Optional[Path | str] = None,
                   detector: Optional[Detector] = None) -> BoxSource:
    """The box source a run asked for: an explicit boxes JSON, COCO annotations or detector, else the
    generator's sidecar for the synthetic sets; a ToolkitError naming the options for anything else."""
    given = [source for source in (boxes_json, coco_annotations, detector) if source is not None]
    if len(given) > 1:
        raise ToolkitError("give one box source: a boxes JSON, COCO instance annotations or a detector")
    if boxes_json is not None:
        return JsonBoxes(boxes_json)
    if coco_annotations is not None:
        return CocoBoxes(coco_annotations)
    if detector is not None:
        return DetectorBoxes(detector)
    if dataset.startswith("Synthetic_Controlled_"):
        return SyntheticBoxes(root, dataset[-1])
    raise ToolkitError(f"{dataset} ships no object boxes; give a boxes JSON (schema in dataset_zoo/boxes.py), "
                       f"COCO instance annotations (e.g. annotations/instances_val2017.json for COCO_QA_* and VSR) "
                       f"or a detector function")
