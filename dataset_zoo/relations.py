"""Relation words: the original label rules, option words, inverses, and object names from captions.

Two notions are kept apart on purpose:
- the *label* is what the original WhatsUp/AdaptVis code derives from a caption (`Sample.relation`), bugs
  included, so per-relation breakdowns match the original (e.g. VG two-object "above" falls through to
  "top");
- the *answer word* is the option the question offers for that caption ("above"), the gold answer.
"""
from __future__ import annotations

import re
from typing import Optional

from common.errors import ToolkitError

# Inverse relations: the answer of the reversed-object-order question, and the partner of a relation in
# two-option mode for Controlled data (the WhatsUp "pair").
INVERSE = {
    "left": "right", "right": "left",
    "on": "under", "under": "on",
    "front": "behind", "behind": "front",
    "above": "below", "below": "above",
    "top": "bottom", "bottom": "top",
}

# Controlled file-name relation slot (stem.split('_')[1]) -> option word, per variant.
CONTROLLED_SLOTS = {
    "A": {"left": "left", "right": "right", "on": "on", "under": "under"},
    "B": {"left": "left", "right": "right", "in-front": "front", "behind": "behind"},
}

# Relation phrases of two-object captions, longest first so "to the left of" wins over "left of".
_TWO_OBJ_PHRASES = {
    "to the left of": "left", "to the right of": "right",
    "to the front of": "front", "in front of": "front", "to the behind of": "behind",
    "left of": "left", "right of": "right", "front of": "front",
    "behind": "behind", "above": "above", "below": "below",
}
_TWO_OBJ_PATTERN = re.compile(
    r"\s(" + "|".join(re.escape(p) for p in sorted(_TWO_OBJ_PHRASES, key=len, reverse=True)) + r")\s")
_PHOTO_PREFIX = re.compile(r"^\s*(?:a\s+photo\s+of\s+)?(?:(?:a|an|the)\s+)?", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_ONE_OBJ_PATTERN = re.compile(r"^(?P<obj>.+?)\s+(?:on|in|at)\s+the\s+(?P<side>[A-Za-z]+)$", re.IGNORECASE)


def _clean(caption: str) -> str:
    return caption.strip().rstrip(".").strip()


def last_word_label(caption: str) -> str:
    """One-object label rule of the original: the caption's last word ("... on the bottom" -> bottom)."""
    words = _clean(caption).split()
    return words[-1].lower() if words else ""


def coco_two_obj_label(caption: str) -> str:
    """Original COCO two-object rule: 'left of' -> left, 'right of' -> right, 'above' -> above, else below."""
    if "left of" in caption:
        return "left"
    if "right of" in caption:
        return "right"
    if "above" in caption:
        return "above"
    return "below"


def vg_two_obj_label(caption: str) -> str:
    """Original VG two-object rule; anything else (e.g. "above", "below") falls through to 'top'."""
    for needle, label in (("left of", "left"), ("right of", "right"), ("front of", "front"), ("behind", "behind")):
        if needle in caption:
            return label
    return "top"


LABEL_RULES = {"last_word": last_word_label, "coco_two": coco_two_obj_label, "vg_two": vg_two_obj_label}


def parse_two_obj_caption(caption: str) -> Optional[tuple[str, str, str]]:
    """(obj1, answer word, obj2) of "A photo of a X to the left of a Y", or None if no relation phrase."""
    body = _PHOTO_PREFIX.sub("", _clean(caption), count=1)
    match = _TWO_OBJ_PATTERN.search(f" {body} ")
    if match is None:
        return None
    # match offsets refer to the padded string " {body} "
    obj1 = body[:match.start()].strip()
    obj2 = _ARTICLE.sub("", body[match.end() - 1:].strip(), count=1)
    if not obj1 or not obj2:
        return None
    return obj1, _TWO_OBJ_PHRASES[match.group(1).lower()], obj2


def parse_one_obj_caption(caption: str) -> Optional[tuple[str, str]]:
    """(obj, side) of "A photo of a X on the left", or None if the caption has another shape."""
    body = _PHOTO_PREFIX.sub("", _clean(caption), count=1)
    match = _ONE_OBJ_PATTERN.match(body)
    if match is None:
        return None
    return match.group("obj").strip(), match.group("side").lower()


def require_two_obj(caption: str, where: str) -> tuple[str, str, str]:
    parsed = parse_two_obj_caption(caption)
    if parsed is None:
        raise ToolkitError(
            f"{where}: cannot read two objects and a relation from caption {caption!r} (expected e.g. "
            f"'A photo of a cup to the left of a plate'); fix the row, or use the original prompt files "
            f"with prompt_dir=... / --prompt-dir")
    return parsed


def require_one_obj(caption: str, where: str) -> tuple[str, str]:
    parsed = parse_one_obj_caption(caption)
    if parsed is None:
        raise ToolkitError(
            f"{where}: cannot read the object and its side from caption {caption!r} (expected e.g. "
            f"'A photo of a cat on the left'); fix the row, or use the original prompt files with "
            f"prompt_dir=... / --prompt-dir")
    return parsed
