"""Shared fixtures: tiny random VLMs of every family (built once per session) and small test images."""
from __future__ import annotations

import os

# Tests never download: fail fast instead of retrying the hub when something tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from model_zoo.tiny import FAMILIES, build_tiny_vlm  # noqa: E402

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


@pytest.fixture
def tiny_vlm(tiny):
    """The default tiny model of the parametrised family, wrapped as a `VLM`."""
    from model_zoo.vlm import VLM

    model, processor = tiny
    return VLM.from_loaded(model, processor)


def two_sample_inputs(vlm, sizes=((80, 30), (30, 60))):
    """A left-padded batch of two samples with different questions (lengths) and image sizes."""
    images = [noise_image(w, h, seed) for seed, (w, h) in enumerate(sizes)]
    prompts = [vlm.build_prompt("Where is the mug?"), vlm.build_prompt(QUESTION)]
    return vlm.prepare(images, prompts)


def one_sample_inputs(vlm, index: int, sizes=((80, 30), (30, 60))):
    """Row `index` of `two_sample_inputs`, prepared alone (no padding)."""
    questions = ["Where is the mug?", QUESTION]
    width, height = sizes[index]
    return vlm.prepare([noise_image(width, height, index)], [vlm.build_prompt(questions[index])])
