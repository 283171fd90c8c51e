"""Where the last prompt token looks, from captured attention (model mode).

* attention-mass (paper Fig. 3, Table 5): image vs text attention mass per layer, and per token;
* attention-variance (Fig. 7 left, 16/17): how concentrated the image attention is per layer, right vs wrong;
* layer-lines (the peers' per-layer plot): image and text mass per layer of chosen samples;
* heatmaps (Fig. 5, 9, 10): the head-mean image attention of chosen layers over the image, baseline vs method.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.render import figure_dir, finish, line_plot, overlay, safe_name, save_png, write_caption, \
    write_json, write_rows
from analysis.stats import default_layers, dispersion, image_map, layer_masses, mean_and_spread


def _layers_axis(n_layers: int) -> np.ndarray:
    return np.arange(n_layers)


MASSES = ("image_mass", "text_mass", "image_per_token", "text_per_token")


def store_masses(store) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer, mean and std over samples of the last prompt token's image and text attention mass and of
    the mass per image / text token (each sample divided by its own token counts)."""
    values = {name: [] for name in MASSES}
    for _, captured in store:
        row = captured.rows[0]
        image, text = layer_masses(row)
        for name, value in zip(MASSES, (image, text, image / row.image.shape[-1], text / row.text.shape[-1])):
            values[name].append(value)
    return {name: mean_and_spread(found) for name, found in values.items()}


def attention_mass(ctx) -> list:
    masses = {ctx.store_label(store): store_masses(store) for store in ctx.collection.stores()}
    layers = _layers_axis(len(next(iter(masses.values()))["image_mass"][0]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [2, 1]},
                                      layout="constrained")
    series, rows = {}, []
    for label, found in masses.items():
        series[f"image keys ({label})"], series[f"text keys ({label})"] = found["image_mass"], found["text_mass"]
        rows += [{"configuration": label, "layer": int(layer),
                  **{name: found[name][0][layer] for name in MASSES},
                  **{f"{name}_std": found[name][1][layer] for name in MASSES}} for layer in layers]
    line_plot(left, layers, series, xlabel="language-model layer", ylabel="attention mass (sum over keys)",
              title="last prompt token: image vs text keys")
    width = 0.8 / len(masses)
    for i, (label, found) in enumerate(masses.items()):
        right.bar(np.arange(2) + i * width, [found["image_per_token"][0].mean(), found["text_per_token"][0].mean()],
                  width, label=label)
    right.set_xticks(np.arange(2) + width * (len(masses) - 1) / 2, ["image token", "text token"])
    right.set_title("mean attention per token (all layers)", fontsize=9)
    right.legend(fontsize=7)
    caption = (f"Attention of the last prompt token to image vs text keys per layer (sum over keys, mean over heads "
               f"and samples, band = std) and per token averaged over layers (Table 5), {ctx.subject}, "
               f"{ctx.method_label()}.")
    return finish(ctx.out, "attention-mass", fig, caption, rows=rows, dpi=ctx.args.dpi)


def attention_variance(ctx) -> list:
    series, rows = {}, []
    n_layers = 0
    for store in ctx.collection.stores():
        groups = {True: [], False: []}
        for record, captured in store:
            groups[bool(record["correct"])].append(dispersion(captured.rows[0]))
        label = ctx.store_label(store)
        for correct, values in groups.items():
            stats = mean_and_spread(values)
            if stats is None:
                continue
            n_layers = len(stats[0])
            name = f"{label}, {'correct' if correct else 'wrong'} (n={len(values)})"
            series[name] = stats
            rows += [{"configuration": label, "correct": correct, "n": len(values), "layer": layer,
                      "variance_mean": stats[0][layer], "variance_std": stats[1][layer]} for layer in range(n_layers)]
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    line_plot(ax, _layers_axis(n_layers), series, xlabel="language-model layer",
              ylabel="variance of image attention (uniform = 0)", title="concentration of image attention per layer")
    caption = (f"Variance over image tokens of the last prompt token's head-mean image attention rescaled to mean 1, "
               f"per layer, correct vs wrong answers (band = std over samples), {ctx.subject}, {ctx.method_label()}.")
    return finish(ctx.out, "attention-variance", fig, caption, rows=rows, dpi=ctx.args.dpi)


def layer_lines(ctx) -> list:
    folder = figure_dir(ctx.out, "layer-lines")
    records = ctx.collection.base.records()
    written, rows = [], []
    for index in ctx.chosen(records):
        record = records[index]
        fig, image_axis = plt.subplots(figsize=(5, 3), layout="constrained")
        text_axis = image_axis.twinx()
        for store, style in zip(ctx.collection.stores(), ("-", "--")):
            captured = store.load(store.records()[index])
            image, text = layer_masses(captured.rows[0])
            label = ctx.store_label(store)
            image_axis.plot(image, style, color="tab:red", marker="o", ms=3, label=f"image ({label})")
            text_axis.plot(text, style, color="tab:blue", marker="o", ms=3, label=f"text ({label})")
            rows += [{"sample": record["id"], "configuration": label, "layer": layer, "image_mass": image[layer],
                      "text_mass": text[layer]} for layer in range(len(image))]
        image_axis.set_xlabel("language-model layer")
        image_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        image_axis.set_ylabel("image attention mass", color="tab:red")
        text_axis.set_ylabel("text attention mass", color="tab:blue")
        image_axis.set_title(f"{record['id']} (gold {record['gold']})", fontsize=9)
        handles = [h for axis in (image_axis, text_axis) for h in axis.get_legend_handles_labels()[0]]
        image_axis.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="center right")
        written.append(save_png(fig, folder / f"layer-lines__{safe_name(record['id'])}.png", ctx.args.dpi))
    written.append(write_rows(folder / "layer-lines.csv", rows))
    written.append(write_caption(folder, f"Image (red) and text (blue) attention mass of the last prompt token per "
                                         f"layer for chosen samples (mean over heads), {ctx.subject}, "
                                         f"{ctx.method_label()} (dashed)."))
    return written


def heatmaps(ctx) -> list:
    folder = figure_dir(ctx.out, "heatmaps")
    stores = ctx.collection.stores()
    records = stores[0].records()
    written, numbers = [], {}
    for index in ctx.chosen(records):
        record = records[index]
        sample = ctx.sample_by_id[record["id"]]
        captures = [store.load(store.records()[index]) for store in stores]
        n_layers = captures[0].rows[0].image.shape[0]
        layers = ctx.layers(n_layers, default_layers(n_layers))
        boxes = ctx.boxes(record, required=False)
        maps = [[c.geometry.paint(image_map(c.rows[0])[layer]) for layer in layers] for c in captures]
        fig, axes = plt.subplots(len(stores), len(layers), figsize=(2.2 * len(layers), 2.3 * len(stores)),
                                 squeeze=False, layout="constrained")
        for r, (store, capture_maps) in enumerate(zip(stores, maps)):
            answer = store.records()[index]
            for c, layer in enumerate(layers):
                top = max(np.nanmax(m[c]) for m in maps)  # one scale per layer: baseline and method comparable
                mark = "right" if answer["correct"] else "wrong"
                overlay(axes[r][c], sample.image, capture_maps[c], boxes=boxes, vmax=top,
                        title=f"{ctx.store_label(store)}, layer {layer}\n'{answer['generation']}' ({mark})")
        written.append(save_png(fig, folder / f"heatmaps__{safe_name(record['id'])}.png", ctx.args.dpi))
        numbers[record["id"]] = {ctx.store_label(store): {str(layer): c.geometry.to_grid(
            image_map(c.rows[0])[layer]) for layer in layers} for store, c in zip(stores, captures)}
    written.append(write_json(folder / "heatmaps.json", numbers))
    written.append(write_caption(folder, f"Head-mean image attention of the last prompt token over the image, "
                                         f"chosen samples and layers (one colour scale per layer), {ctx.subject}, "
                                         f"{ctx.method_label()}; boxes: the objects asked about."))
    return written
