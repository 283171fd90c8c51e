"""Shared fixtures: tiny random VLMs of every family (built once per session) and small test images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_zoo.tiny import FAMILIES, build_tiny_vlm

QUESTION = "Where is the mug in relation to the table? Answer with left, right, on or under."


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """A deterministic RGB noise image (random weights need varied pixels to give varied features)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def tiny_factory():
    """`get(family, **kwargs) -> (model, processor)`, cached per argument set for the whole session."""
    cache: dict = {}

    def get(family: str, **kwargs):
        key = (family, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build_tiny_vlm(family, **kwargs)
        return cache[key]

    return get


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny(tiny_factory, family):
    """The default tiny (model, processor) of the parametrised family."""
    return tiny_factory(family)
