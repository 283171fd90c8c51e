"""The paper's 20/80 split: exact indices, complement, TEST_MODE precedence, no global RNG side effects."""
import random

import pytest

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from dataset_zoo.splits import resolve_split, select, split_indices, val_indices
from tests.fixtures_data import write_controlled_fixture

PAPER_SIZES = {412: (82, 330), 408: (81, 327), 2247: (449, 1798), 440: (88, 352), 1160: (232, 928),
               291: (58, 233), 1222: (244, 978)}


def test_val_indices_match_the_paper_for_controlled_a():
    assert val_indices(412, seed=1)[:10] == [1, 4, 11, 13, 14, 15, 17, 32, 48, 51]


def test_val_indices_equal_the_original_global_seed_recipe():
    state = random.getstate()
    random.seed(1)
    original = sorted(random.sample(range(412), int(0.2 * 412)))
    random.setstate(state)
    assert val_indices(412, seed=1) == original


def test_global_random_state_is_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    val_indices(1000, seed=7)
    assert random.random() == expected


@pytest.mark.parametrize("n", sorted(PAPER_SIZES))
def test_split_sizes_and_complement(n):
    val, test = split_indices(n, "val"), split_indices(n, "test")
    assert (len(val), len(test)) == PAPER_SIZES[n]
    assert sorted(val + test) == list(range(n))
    assert test == sorted(test)
    assert split_indices(n, "all") == list(range(n))


def test_other_seed_gives_other_split():
    assert val_indices(412, seed=2) != val_indices(412, seed=1)


def test_select_keeps_order():
    items = [f"row{i}" for i in range(10)]
    assert select(items, "val", seed=1) == [items[i] for i in val_indices(10, 1)]


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ToolkitError, match="valid splits: val, test, all"):
        resolve_split("train")


@pytest.mark.parametrize("env, explicit, expected", [
    (None, None, "all"), ("True", None, "test"), ("true", None, "test"), ("False", None, "all"),
    ("True", "val", "val"), ("True", "all", "all"), (None, "test", "test")])
def test_test_mode_precedence(monkeypatch, env, explicit, expected):
    if env is None:
        monkeypatch.delenv("TEST_MODE", raising=False)
    else:
        monkeypatch.setenv("TEST_MODE", env)
    assert resolve_split(explicit) == expected


def test_get_dataset_applies_split_and_test_mode(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_controlled_fixture(root, "A")
    monkeypatch.delenv("TEST_MODE", raising=False)
    full = get_dataset("Controlled_Images_A", root=root)
    val = get_dataset("Controlled_Images_A", root=root, split="val")
    assert len(full) == 8 and full.info["split"] == "all"
    assert [s.index for s in val] == val_indices(8, 1) and len(val) == 1
    assert val[0] == full[val[0].index]  # same sample (same id) whatever the split
    monkeypatch.setenv("TEST_MODE", "True")
    test = get_dataset("Controlled_Images_A", root=root)
    assert test.info["split"] == "test" and len(test) == 7
    assert {s.id for s in test} | {s.id for s in val} == {s.id for s in full}
