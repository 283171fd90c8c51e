"""The Gradio page: inputs on the left (a dataset sample or an upload, the method and its hyper-parameters), what the
model did on the right (answers, heatmaps at a chosen layer, attention mass per layer).

Every event handler returns the whole view, so no handler depends on another having run first; the per-visitor
state (the selected source, the filtered positions) lives in `gr.State`, which Gradio keeps per browser session.
"""
from __future__ import annotations

from typing import Any, Sequence

import gradio as gr

from demo import callbacks
from demo.callbacks import ALL, VERDICT_FILTERS, View
from demo.controls import CHECKBOX, CHOICE, SLIDER, Control, control_names, controls_for, method_choices
from demo.engine import Engine
from methods import all_methods, get_method

INTRO = """# Where does the model look? ScalingVis, AdaptVis and friends

Pick a sample (or upload an image and ask about it), pick a method and move its sliders: the answers, the first-token
confidence and the attention of the last prompt token over the image (baseline vs method, one layer at a time) follow.
Model **{model}**, dataset **{dataset}** ({n} samples)."""

# Gradio's default theme fetches fonts from the web; the demo must work offline, so it uses the system's fonts.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def all_controls(dataset: str) -> dict[str, Control]:
    """One control per hyper-parameter name (shared ones are declared identically by every method taking them)."""
    found: dict[str, Control] = {}
    for method in all_methods():
        for control in controls_for(method.name, dataset):
            found.setdefault(control.name, control)
    return {name: found[name] for name in control_names()}


def _component(control: Control, visible: bool):
    common = dict(label=control.label, info=control.info, visible=visible, elem_id=f"hp-{control.name}")
    if control.kind == SLIDER:
        return gr.Slider(control.minimum, control.maximum, value=control.value, step=control.step, **common)
    if control.kind == CHOICE:
        return gr.Radio(list(control.choices), value=control.value, **common)
    if control.kind == CHECKBOX:
        return gr.Checkbox(value=control.value, **common)
    return gr.Textbox(value=control.value, **common)


def build(engine: Engine, *, model_label: str, initial_method: str, max_upload_bytes: int,
          max_upload_pixels: int) -> gr.Blocks:
    names = control_names()
    controls = all_controls(engine.dataset)
    own = set(get_method(initial_method).names)
    everyone = tuple(range(len(engine.samples)))

    def view_outputs(view: View) -> list:
        return [view.message, view.answers, view.heatmap, view.masses,
                gr.update() if view.layer is None else view.layer]

    def answer(source, method: str, values: Sequence[Any], layer, progress) -> list:
        return view_outputs(callbacks.show(engine, source, method, names, values, layer, progress))

    def on_setting(source, method, *rest, progress=gr.Progress()):
        *values, layer = rest
        return answer(source, method, values, layer, progress)

    def on_pick(selection, position, method, *rest, progress=gr.Progress()):
        *values, layer = rest
        source = callbacks.pick(selection, position)
        return [source, callbacks.describe(engine, source), *answer(source, method, values, layer, progress)]

    def on_filter(relation, verdict, method, *rest, progress=gr.Progress()):
        *values, layer = rest
        chosen = callbacks.choose_samples(engine, relation, verdict, progress)
        source = callbacks.pick(chosen.positions, 0)
        shown = answer(source, method, values, layer, progress) if source else view_outputs(View(chosen.message))
        slider = gr.update(value=0, maximum=max(len(chosen.positions) - 1, 0))
        return [chosen.positions, slider, source, callbacks.describe(engine, source), *shown]

    def on_upload(path, question, method, *rest, progress=gr.Progress()):
        *values, layer = rest
        source, problem = callbacks.upload(path, question, max_bytes=max_upload_bytes, max_pixels=max_upload_pixels)
        if source is None:  # keep what is shown; say what is wrong with the file
            return [gr.update(), gr.update(), problem, *[gr.update()] * 4]
        return [source, callbacks.describe(engine, source), *answer(source, method, values, layer, progress)]

    def on_method(method, source, layer, progress=gr.Progress()):
        chosen = {control.name: control for control in controls_for(method, engine.dataset)}
        updates = [gr.update(visible=name in chosen, **({"value": chosen[name].value} if name in chosen else {}))
                   for name in names]
        values = [chosen[name].value if name in chosen else None for name in names]
        return [*updates, *answer(source, method, values, layer, progress)]

    with gr.Blocks(title="ScalingVis / AdaptVis demo", analytics_enabled=False) as page:
        gr.Markdown(INTRO.format(model=model_label, dataset=engine.dataset, n=len(engine.samples)))
        source = gr.State(None)
        selection = gr.State(everyone)
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tab("Dataset sample"):
                    with gr.Row():
                        relation = gr.Dropdown([ALL, *engine.relations()], value=ALL, label="gold relation",
                                               elem_id="relation")
                        verdict = gr.Radio(list(VERDICT_FILTERS), value=ALL, label="baseline answer",
                                           elem_id="verdict")
                    position = gr.Slider(0, max(len(everyone) - 1, 0), value=0, step=1, elem_id="position",
                                         label="sample (position among the samples the filters keep)")
                with gr.Tab("Your image"):
                    file = gr.File(label="image file (PNG, JPEG, ...)", elem_id="upload")
                    question = gr.Textbox(label="question", elem_id="question",
                                          placeholder="Where is the mug in relation to the table?")
                    ask = gr.Button("Answer about this image", elem_id="ask")
                about = gr.Markdown(elem_id="about")
                method = gr.Dropdown(method_choices(), value=initial_method, label="method", elem_id="method")
                knobs = [_component(controls[name], name in own) for name in names]
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                answers = gr.Markdown(elem_id="answers")
                layer = gr.Slider(0, engine.n_layers - 1, value=engine.n_layers // 2, step=1, elem_id="layer",
                                  label="language-model layer of the heatmaps")
                gr.Markdown("Head-mean attention of the last prompt token over the image at that layer, baseline and "
                            "method on one colour scale; below, its attention mass on image and text keys per layer.")
                heatmap = gr.Image(show_label=False, type="pil", format="png", interactive=False, elem_id="heatmap")
                masses = gr.Image(show_label=False, type="pil", format="png", interactive=False, elem_id="masses")

        shown = [message, answers, heatmap, masses, layer]
        settings = [method, *knobs, layer]
        events = dict(trigger_mode="always_last", show_progress="full")
        for control in [*knobs, layer]:
            for listen in (control.input, control.release) if isinstance(control, gr.Slider) else (control.input,):
                listen(on_setting, [source, *settings], shown, **events)
        for listen in (position.input, position.release):
            listen(on_pick, [selection, position, *settings], [source, about, *shown], **events)
        for listen in (relation.input, verdict.input):
            listen(on_filter, [relation, verdict, *settings], [selection, position, source, about, *shown], **events)
        ask.click(on_upload, [file, question, *settings], [source, about, *shown], **events)
        method.input(on_method, [method, source, layer], [*knobs, *shown], **events)
        page.load(on_pick, [selection, position, *settings], [source, about, *shown])
    return page


def launch(page: gr.Blocks, *, host: str, port: int, max_upload_bytes: int) -> None:
    # Model use is serialised by the engine; a few concurrent events let cached views and redraws pass a
    # long computation instead of queueing behind it.
    page.queue(default_concurrency_limit=4)
    page.launch(server_name=host, server_port=port, share=False, show_error=False, theme=THEME,
                max_file_size=max_upload_bytes, footer_links=[])
