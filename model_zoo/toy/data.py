"""Examples for the toy model: freshly rendered synthetic scenes with the toolkit's exact question text.

The model must answer at evaluation what the toolkit asks, so questions are built from the same template
file and option sets as `dataset_zoo` (`prompt/templates.json`): "Where is the water bottle in relation to
the side table? Answer with left, right, on or under.", object names with hyphens spelled as words, and
the prompt comes from the processor's chat template exactly as `VLM.build_prompt` makes it. A share of the
examples uses the two-option wording (`--option two`) or the original code's literal LLaVA prompt
(`prompt_format="paper"`), so those toolkit settings work on the toy model too.

Every example is drawn from a `random.Random` the caller seeds, so a seed fixes the whole stream.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from PIL import Image

from dataset_zoo.catalog import get_spec
from dataset_zoo.prompts import PromptTemplates, load_templates
from dataset_zoo.questions import ordered_two_options
from dataset_zoo.relations import INVERSE
from dataset_zoo.synthetic import ANCHORS, COLOUR_WORDS, RELATIONS, SMALL_OBJECTS, render_scene
from model_zoo.tiny import DEFAULT_WORDS
from model_zoo.vlm import chat_prompt, paper_chat_prompt

Box = tuple[int, int, int, int]
VARIANTS = ("A", "B")


@dataclass(frozen=True)
class Mix:
    """What share of examples uses the less common toolkit settings (the rest: chat prompt, four options).

    colour: object names with a colour prefix ("red mug"), as large synthetic sets use;
    two_options: "Answer with on or under." (the relation and its inverse, `--option two`);
    paper_prompt: the original code's "<image>\\nUSER: ...\\nASSISTANT:" instead of the chat template.
    """

    colour: float = 0.15
    two_options: float = 0.15
    paper_prompt: float = 0.1


@dataclass(frozen=True)
class Example:
    """One rendered scene and its question. `boxes`: {"object": box, "anchor": box} in image pixels."""

    image: Image.Image
    question: str
    answer: str
    boxes: Mapping[str, Box]
    variant: str
    paper_prompt: bool = False


def vocabulary() -> list[str]:
    """Every word the toolkit's prompts and the synthetic object names can produce, plus DEFAULT_WORDS."""
    names = [*SMALL_OBJECTS, *ANCHORS["A"], *ANCHORS["B"], *COLOUR_WORDS]
    words = [part for name in names for part in name.split("-")]
    words += [w for variant in VARIANTS for w in RELATIONS[variant]]
    return list(dict.fromkeys([*DEFAULT_WORDS, *words]))


def question_text(templates: PromptTemplates, obj: str, anchor: str, variant: str, answer: str,
                  two_options: bool = False) -> str:
    """The data layer's question for a synthetic Controlled scene (hyphens in names become spaces)."""
    full = templates.option_set(get_spec(f"Synthetic_Controlled_{variant}").option_set, "four")
    options = ordered_two_options(templates, full, (answer, INVERSE[answer])) if two_options else full
    return templates.question("two_obj", obj1=obj.replace("-", " "), obj2=anchor.replace("-", " "),
                              options=options.text)


def prompt_for(processor, example: Example) -> str:
    """The prompt `VLM.build_prompt` makes for the example's prompt format."""
    if example.paper_prompt:
        return paper_chat_prompt(processor.image_token, example.question)
    return chat_prompt(processor, example.question)


def _object_name(rng: random.Random, colour_share: float) -> str:
    name = rng.choice(list(SMALL_OBJECTS))
    # Both draws happen every time so the stream does not depend on the outcome of the first.
    colour, use_colour = rng.choice(list(COLOUR_WORDS)), rng.random() < colour_share
    return f"{colour}-{name}" if use_colour else name


def draw_example(rng: random.Random, templates: PromptTemplates, *, variants: Sequence[str] = ("A",),
                 spread: float = 1.0, size: int = 96, mix: Mix = Mix()) -> Example:
    """Render one random scene (object, relation, anchor, placement) and phrase its question."""
    variant = rng.choice(list(variants))
    obj = _object_name(rng, mix.colour)
    relation = rng.choice(RELATIONS[variant])
    anchor = rng.choice(list(ANCHORS[variant]))
    two_options, paper = rng.random() < mix.two_options, rng.random() < mix.paper_prompt
    image, boxes = render_scene(obj, relation, anchor, rng, variant=variant, size=size, spread=spread)
    question = question_text(templates, obj, anchor, variant, relation, two_options)
    return Example(image, question, relation, boxes, variant, paper)


def make_examples(seed: str, n: int, *, variants: Sequence[str] = ("A",), size: int = 96,
                  mix: Mix = Mix(colour=0.0, two_options=0.0, paper_prompt=0.0),
                  templates: PromptTemplates | None = None) -> list[Example]:
    """`n` examples at full spread from the stream named `seed` (default: chat prompt, four options)."""
    rng = random.Random(seed)
    templates = templates or load_templates()
    return [draw_example(rng, templates, variants=variants, size=size, mix=mix) for _ in range(n)]
