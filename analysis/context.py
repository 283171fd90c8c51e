"""What a figure works on, loaded on first use: the model, the samples, the method configuration, the captured
attention (model mode), or the records of finished run folders (`--runs`).

The model/data/method flags are main_aro.py's (same names, same meaning); they become a `RunConfig` and its
method configurations exactly as for an evaluation run.
"""
from __future__ import annotations

import argparse
from functools import cached_property
from pathlib import Path
from typing import Optional

from analysis.collect import Collection, collect
from analysis.runs import RunSet, load_run_sets
from common.errors import ToolkitError
from dataset_zoo import LoadedDataset, get_dataset
from main_aro import config_from_args
from methods import Configuration
from model_zoo import get_model
from runner.config import RunConfig, expand_methods, parse_list, validate


def configuration_of(spec, config: RunConfig) -> Configuration:
    """The method registry's configuration of a runner `MethodSpec` (the runner's flags carry scope and rounding
    for every method; the registry keeps them with the methods that take them)."""
    values = {name: value for name, value in spec.hyperparameters().items() if value is not None}
    if spec.method != "base":
        values["scope"] = config.scope
    if spec.method == "adapt_vis":
        values["round_confidence"] = not config.no_round_confidence
    return Configuration.of(spec.method, **values)


class Context:
    """Everything one `python -m analysis` invocation works on; figures ask for what they need."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self._datasets: dict = {}

    # ---- model mode -------------------------------------------------------------------------------------
    @cached_property
    def run_config(self) -> RunConfig:
        methods = parse_list(self.args.method, str) if self.args.method else ("base",)
        config = config_from_args(self.args, methods)
        validate(config)
        return config

    @cached_property
    def configurations(self) -> list[Configuration]:
        """Every configuration the method flags ask for (a grid expands), the baseline left out."""
        return [configuration_of(spec, self.run_config) for spec in expand_methods(self.run_config)
                if spec.method != "base"]

    @property
    def method(self) -> Optional[Configuration]:
        """The one method configuration compared with the baseline (None: baseline only)."""
        if len(self.configurations) > 1:
            raise ToolkitError(f"this figure compares the baseline with one configuration, but the method flags "
                               f"give {len(self.configurations)}; pass one value per hyper-parameter")
        return self.configurations[0] if self.configurations else None

    @cached_property
    def vlm(self):
        config = self.run_config
        return get_model(config.model_path or config.model_name, dtype=config.dtype, device=config.device,
                         device_map=config.device_map, revision=config.revision,
                         prompt_format=config.prompt_format)

    @cached_property
    def dataset(self) -> LoadedDataset:
        config = self.run_config
        return get_dataset(config.dataset, root=config.data_root, split=config.split, option=config.option,
                           download=config.download, seed=config.seed, prompt_dir=config.prompt_dir,
                           prompt_variant=config.prompt_variant, vsr_split=config.vsr_split,
                           vsr_paper_resize=config.vsr_paper_resize)

    @property
    def split(self) -> str:
        """The split analysed, as resolved by the data layer (an unset --split depends on TEST_MODE)."""
        return self.dataset.info["split"]

    @cached_property
    def samples(self) -> list:
        limit = self.run_config.limit
        samples = list(self.dataset[:limit] if limit else self.dataset)
        if not samples:
            raise ToolkitError(f"{self.run_config.dataset} ({self.split} split) has no samples to analyse")
        return samples

    @cached_property
    def collection(self) -> Collection:
        config = self.run_config
        settings = {"model": config.model_path or config.model_name, "dataset": config.dataset,
                    "split": self.split, "limit": config.limit, "option": config.option, "seed": config.seed,
                    "prompt_format": config.prompt_format, "prompt_variant": config.prompt_variant,
                    "prompt_dir": config.prompt_dir, "vsr_split": config.vsr_split,
                    "vsr_paper_resize": config.vsr_paper_resize, "dtype": config.dtype, "revision": config.revision}
        root = Path(self.args.capture_dir) if self.args.capture_dir else self.out / "captures"
        return collect(self.vlm, self.samples, self.method, root, settings, batch_size=config.batch_size,
                       max_new_tokens=config.max_new_tokens, match=config.match)

    @property
    def subject(self) -> str:
        """What was analysed, for captions: "toy on Synthetic_Controlled_A (all split, 48 samples)"."""
        config = self.run_config
        return f"{config.model_label} on {config.dataset} ({self.split} split, {len(self.samples)} samples)"

    def method_label(self) -> str:
        return "baseline only" if self.method is None else f"baseline vs {self.method.label()}"

    @cached_property
    def sample_by_id(self) -> dict:
        return {sample.id: sample for sample in self.samples}

    def store_label(self, store) -> str:
        """"baseline" or the method configuration's label, for legends."""
        return "baseline" if store is self.collection.base else self.method.label()

    # ---- boxes ----------------------------------------------------------------------------------------------
    @cached_property
    def box_source(self):
        """The boxes asked for (--boxes-json, --coco-annotations), else the synthetic scenes' own; a
        ToolkitError naming the options when the dataset has none."""
        from dataset_zoo.boxes import box_source_for

        return box_source_for(self.run_config.dataset, self.run_config.data_root, boxes_json=self.args.boxes_json,
                              coco_annotations=self.args.coco_annotations)

    def boxes(self, record: dict, required: bool = True) -> list[tuple[int, int, int, int]]:
        """The boxes of the objects a sample refers to, in original pixels ([] when optional and unavailable)."""
        try:
            source = self.box_source
        except ToolkitError:
            if required:
                raise
            return []
        sample = self.sample_by_id[record["id"]]
        return [named.box for named in source.boxes(sample, sample.image)]

    # ---- records (run folders or model mode) ------------------------------------------------------------
    @property
    def from_runs(self) -> bool:
        return bool(self.args.runs)

    @cached_property
    def run_sets(self) -> list[RunSet]:
        return load_run_sets(self.args.runs)

    def record_sets(self) -> list[RunSet]:
        """Run folders' records (`--runs`), or the collected baseline (and method) records of model mode."""
        if self.from_runs:
            return self.run_sets
        config = self.run_config
        sets = []
        for store, configuration in ((self.collection.base, None), (self.collection.method, self.method)):
            if store is None:
                continue
            name = "base" if configuration is None else configuration.method
            values = {} if configuration is None else configuration.hyperparameters
            sets.append(RunSet(store.label, config.dataset, config.model_label, name, values, self.split,
                               store.records(), {"dataset": config.dataset}))
        return sets

    def image_of(self, record: dict, run_set: RunSet):
        """The image of a record (model mode: the analysed sample; run folders: reloaded from the run's dataset
        settings), or None when it is not on disk."""
        try:
            if not self.from_runs:
                return self.sample_by_id[record["id"]].image
            return self._run_samples(run_set)[record["id"]].image
        except (ToolkitError, KeyError):
            return None

    def _run_samples(self, run_set: RunSet) -> dict:
        key = run_set.label
        if key not in self._datasets:
            config = run_set.config
            dataset = get_dataset(config["dataset"], root=config.get("data_root", "data"), split=config.get("split"),
                                  option=config.get("option"), seed=config.get("seed", 1),
                                  prompt_dir=config.get("prompt_dir"),
                                  prompt_variant=config.get("prompt_variant", "default"),
                                  vsr_split=config.get("vsr_split", "test"), check_images=False)
            self._datasets[key] = {sample.id: sample for sample in dataset}
        return self._datasets[key]

    def records_subject(self, sets: list[RunSet]) -> str:
        if not self.from_runs:
            return self.subject
        datasets = sorted({s.dataset for s in sets})
        models = sorted({s.model for s in sets})
        return f"{', '.join(models)} on {', '.join(datasets)} ({len(sets)} run folder(s))"

    # ---- choices of samples and layers --------------------------------------------------------------------
    def chosen(self, records: list[dict], default: int = 4) -> list[int]:
        """Indices into `records` of `--samples` (sample ids or 0-based positions), default the first few."""
        if not self.args.samples:
            return list(range(min(default, len(records))))
        by_id = {r["id"]: i for i, r in enumerate(records)}
        chosen = []
        for item in parse_list(self.args.samples, str):
            if item in by_id:
                chosen.append(by_id[item])
            elif item.isdigit() and int(item) < len(records):
                chosen.append(int(item))
            else:
                raise ToolkitError(f"--samples {item!r} is neither a sample id nor a position below {len(records)} "
                                   f"among the analysed samples (ids look like {records[0]['id']!r})")
        return chosen

    def layers(self, n_layers: int, default: list[int]) -> list[int]:
        """`--layers` (language-model layer indices) or `default`."""
        if not self.args.layers:
            return default
        layers = list(parse_list(self.args.layers, int))
        bad = [layer for layer in layers if not 0 <= layer < n_layers]
        if bad:
            raise ToolkitError(f"--layers {bad} are outside the language model's layers 0-{n_layers - 1}")
        return layers
