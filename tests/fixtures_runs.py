"""Fake run folders in main_aro.py's output format, for the report and selection tests.

`write_run` writes one folder (config.json, results.json, optionally samples.jsonl); `write_grid`
writes the standard fixture: baseline, a ScalingVis sweep and an AdaptVis grid on val and test for
Controlled_Images_A and Controlled_Images_B, plus VSR test runs without val runs, one unfinished run
and one run of another model. The expected selections and table cells are the constants below.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from methods import Configuration

# What main_aro.py's defaults record for llava1.5 (prompt format auto -> the paper's literal prompt).
SETTINGS = {"match": "strict", "seed": 1, "prompt_format": "paper", "max_new_tokens": 10, "limit": None,
            "dtype": "auto", "revision": None, "prompt_dir": None, "prompt_variant": "default", "vsr_split": "test",
            "vsr_paper_resize": False}

# Val accuracies. Controlled_A: 0.5 and 1.2 tie (1.2 is closer to 1); AdaptVis (0.5, 1.5, 0.4) ties with
# (0.8, 2.0, 0.3) and wins on |w1-1|+|w2-1|. Controlled_B: 0.8 is the clear best; (0.5, 1.5, 0.3) and
# (0.5, 1.5, 0.4) tie and the smaller threshold wins.
SCALING_VAL = {"Controlled_Images_A": {0.5: 0.70, 0.8: 0.65, 1.2: 0.70, 2.0: 0.55},
               "Controlled_Images_B": {0.5: 0.60, 0.8: 0.75, 1.2: 0.72, 2.0: 0.60}}
ADAPT_GRID = [(w1, w2, t) for w1 in (0.5, 0.8) for w2 in (1.5, 2.0) for t in (0.3, 0.4)]
ADAPT_VAL_BEST = {"Controlled_Images_A": {(0.5, 1.5, 0.4): 0.85, (0.8, 2.0, 0.3): 0.85},
                  "Controlled_Images_B": {(0.5, 1.5, 0.3): 0.80, (0.5, 1.5, 0.4): 0.80}}
EXPECTED_SCALING = {"Controlled_Images_A": 1.2, "Controlled_Images_B": 0.8}
EXPECTED_ADAPT = {"Controlled_Images_A": (0.5, 1.5, 0.4), "Controlled_Images_B": (0.5, 1.5, 0.3)}

# Test-split metrics (accuracy, pair, set). Unselected configurations score higher on test on purpose:
# the report must show the val-selected one.
BASE_TEST = {"Controlled_Images_A": (0.603, 0.406, 0.0), "Controlled_Images_B": (0.731, 0.5, None)}
SCALING_TEST = {"Controlled_Images_A": {0.5: (0.95, 0.9, 0.8), 1.2: (0.645, 0.406, 0.0)},
                "Controlled_Images_B": {0.8: (0.70, 0.45, 0.1), 2.0: (0.99, 0.99, 0.99)}}
# Controlled_B's selected AdaptVis configuration (0.5, 1.5, 0.3) has no test run: its cells are missing.
ADAPT_TEST = {"Controlled_Images_A": {(0.5, 1.5, 0.4): (0.849, 0.612, 0.303), (0.8, 2.0, 0.3): (0.99, 0.99, 0.99)},
              "Controlled_Images_B": {(0.5, 1.5, 0.4): (0.838, 0.7, 0.5)}}
# VSR: (accuracy, f1, f1_paper); test only, so every configuration present gets a row.
VSR_TEST = {("base", None): (0.624, 0.55, 0.513), ("scaling_vis", 0.5): (0.65, 0.60, 0.625),
            ("scaling_vis", 2.0): (0.60, 0.40, 0.45)}


def write_run(root: Path, *, dataset: str, method: str = "base", split: str = "test", model: str = "llava1.5",
              weight: Optional[float] = None, weight1: Optional[float] = None, weight2: Optional[float] = None,
              threshold: Optional[float] = None, option: Optional[str] = "four", metrics: Optional[dict] = None,
              samples: Optional[list[dict]] = None, finished: bool = True, **settings) -> Path:
    """One run folder; `metrics` become results.json (omitted when not `finished`). Hyper-parameters not
    given take their method's defaults; `hyperparameters` (in `settings`) overrides any of them."""
    given = {name: value for name, value in (("weight", weight), ("weight1", weight1), ("weight2", weight2),
                                             ("threshold", threshold)) if value is not None}
    given.update(settings.pop("hyperparameters", {}))
    configuration = Configuration.of(method, **given)
    name = (f"{dataset}__{model}__{configuration.label()}__{option or 'yes-no'}__{split}__seed1__"
            f"{_digest(settings)}")
    folder = root / name
    folder.mkdir(parents=True)
    config = {"dataset": dataset, "model": model, "model_name": model, "model_path": None, "method": method,
              "hyperparameters": configuration.hyperparameters,
              "option": option, "split": split, **SETTINGS, **settings, "run": name,
              "started_at": "2025-01-01T00:00:00+00:00",
              "finished_at": "2025-01-01T01:00:00+00:00" if finished else None}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if samples is not None:
        (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    if finished:
        (folder / "results.json").write_text(json.dumps({"n": 100, "n_unparsed": 0, **(metrics or {})}))
    return folder


def _digest(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def controlled_metrics(accuracy: float, pair: Optional[float], set_: Optional[float]) -> dict:
    return {"accuracy": accuracy, "n_correct": round(100 * accuracy), "pair_accuracy": pair, "set_accuracy": set_,
            "pair_accuracy_paper": None if pair is None else pair / 2,
            "set_accuracy_paper": None if set_ is None else set_ / 2, "n_pairs": 50, "n_sets": 25}


def vsr_metrics(accuracy: float, f1: float, f1_paper: float) -> dict:
    return {"accuracy": accuracy, "f1": f1, "f1_paper": f1_paper, "tp": 30, "tn": 32, "fp": 18, "fn": 20}


def confidence_samples(n: int = 40) -> list[dict]:
    """Samples whose confident answers are right and unconfident ones wrong (as AdaptVis assumes)."""
    return [{"id": f"s{i}", "question": "q", "prompt": "p", "generation": "left", "prediction": "left",
             "gold": "left" if i % 2 else "right", "correct": bool(i % 2),
             "confidence": 0.3 + 0.6 * (i % 2) + 0.002 * i, "alpha": 1.0} for i in range(n)]


def write_grid(root: Path) -> Path:
    """The standard fixture output root (see the module docstring)."""
    for dataset in ("Controlled_Images_A", "Controlled_Images_B"):
        write_run(root, dataset=dataset, split="val", metrics=controlled_metrics(0.6, 0.4, 0.1))
        write_run(root, dataset=dataset, metrics=controlled_metrics(*BASE_TEST[dataset]),
                  samples=confidence_samples())
        for alpha, accuracy in SCALING_VAL[dataset].items():
            write_run(root, dataset=dataset, split="val", method="scaling_vis", weight=alpha,
                      metrics=controlled_metrics(accuracy, 0.3, 0.1))
        for alpha, values in SCALING_TEST[dataset].items():
            write_run(root, dataset=dataset, method="scaling_vis", weight=alpha, metrics=controlled_metrics(*values))
        for w1, w2, t in ADAPT_GRID:
            accuracy = ADAPT_VAL_BEST[dataset].get((w1, w2, t), 0.7)
            write_run(root, dataset=dataset, split="val", method="adapt_vis", weight1=w1, weight2=w2,
                      threshold=t, metrics=controlled_metrics(accuracy, 0.5, 0.2))
        for (w1, w2, t), values in ADAPT_TEST[dataset].items():
            write_run(root, dataset=dataset, method="adapt_vis", weight1=w1, weight2=w2, threshold=t,
                      metrics=controlled_metrics(*values))
    for (method, alpha), values in VSR_TEST.items():
        write_run(root, dataset="VSR", method=method, weight=alpha, option=None, metrics=vsr_metrics(*values))
    # Unfinished, and better than everything on val: must be ignored.
    write_run(root, dataset="Controlled_Images_A", split="val", method="scaling_vis", weight=1.5, finished=False)
    write_run(root, dataset="Controlled_Images_A", model="qwen2-vl", metrics=controlled_metrics(0.5, 0.3, 0.0),
              prompt_format="chat")
    return root
