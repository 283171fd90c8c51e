"""The paper's 20 % validation / 80 % test split, computed on the fly.

The original draws `random.seed(seed); val = sorted(random.sample(range(N), int(0.2 * N)))` and caches it
in `output/sampled_idx_{dataset}.npy`; the cache silently froze the seed. Here the indices are recomputed
on every call from a private `random.Random(seed)`, which yields exactly the same indices as seeding the
global generator (checked: N = 412, seed 1 starts [1, 4, 11, 13, 14, 15, 17, 32, 48, 51]) without
touching the global random state.

Which split a run uses: an explicit `split` argument always wins; when the caller leaves it unset
(None), the environment variable TEST_MODE=True (as in the original `run.sh`) selects "test",
otherwise the full dataset ("all") is used.
"""
from __future__ import annotations

import os
import random
from typing import Optional, Sequence, TypeVar

from common.errors import ToolkitError

SPLITS = ("val", "test", "all")
VAL_FRACTION = 0.2
T = TypeVar("T")


def val_indices(n: int, seed: int = 1) -> list[int]:
    """Sorted indices of the paper's validation subset (int(0.2 * n) of range(n))."""
    return sorted(random.Random(seed).sample(range(n), int(VAL_FRACTION * n)))


def _complement_of_val(n: int, seed: int) -> list[int]:
    # Not named test_*: pytest would collect it from any test module that imports it.
    val = set(val_indices(n, seed))
    return [i for i in range(n) if i not in val]


def split_indices(n: int, split: str, seed: int = 1) -> list[int]:
    """Indices of `split` ("val", "test" or "all") for a dataset of n rows."""
    if split == "val":
        return val_indices(n, seed)
    if split == "test":
        return _complement_of_val(n, seed)
    if split == "all":
        return list(range(n))
    raise ToolkitError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def test_mode_enabled() -> bool:
    """True when TEST_MODE is set to True (also accepted: true, 1), as the original's run.sh exports."""
    return os.environ.get("TEST_MODE", "").strip().lower() in ("true", "1")


def resolve_split(split: Optional[str]) -> str:
    """The split to use: the explicit one, else "test" under TEST_MODE=True, else "all"."""
    if split is None:
        return "test" if test_mode_enabled() else "all"
    if split not in SPLITS:
        raise ToolkitError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def select(items: Sequence[T], split: str, seed: int = 1) -> list[T]:
    """The items of `split`, in their original order."""
    return [items[i] for i in split_indices(len(items), split, seed)]
