"""The Gradio page: inputs on the left (a dataset sample or an upload, the method and its hyper-parameters), what the
model did on the right (answers, heatmaps at a chosen layer, attention mass per layer).

The page keeps no state of its own: every request carries all the inputs' values and `callbacks.respond` derives the
whole view from them, so concurrent visitors (each request goes back to its own browser) cannot see each other's
results, and no request depends on another one having finished.
"""
from __future__ import annotations

import gradio as gr

from demo import callbacks
from demo.callbacks import ALL, DATASET_SAMPLE, SOURCE_KINDS, UPLOADED, VERDICT_FILTERS
from demo.controls import CHECKBOX, CHOICE, SLIDER, Control, control_names, controls_for, method_choices
from demo.engine import Engine
from demo.widgets import Slider
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
        return Slider(control.minimum, control.maximum, value=control.value, step=control.step, **common)
    if control.kind == CHOICE:
        return gr.Radio(list(control.choices), value=control.value, **common)
    if control.kind == CHECKBOX:
        return gr.Checkbox(value=control.value, **common)
    return gr.Textbox(value=control.value, **common)


def _unless_same(value, given):
    """An update of an input the visitor moves only when the callback changed its value (clamped it, or chose it):
    writing back the value a request started with would undo a move made while it ran."""
    return gr.update() if value is None or value == given else value


def _position(shown: callbacks.Shown, given):
    if shown.kept is None:
        return gr.update()
    # A slider needs minimum < maximum: with one sample kept, position 1 is clamped back to it.
    maximum = max(shown.kept - 1, 1)
    return gr.update(maximum=maximum) if shown.position == given else gr.update(value=shown.position, maximum=maximum)


def build(engine: Engine, *, model_label: str, initial_method: str, max_upload_bytes: int,
          max_upload_pixels: int) -> gr.Blocks:
    names = control_names()
    controls = all_controls(engine.dataset)
    own = set(get_method(initial_method).names)

    def on_input(kind, relation, verdict, position, path, question, method, *rest, progress=gr.Progress()):
        *values, layer = rest
        shown = callbacks.respond(engine, kind, relation, verdict, position, path, question, method, names, values,
                                  layer, max_bytes=max_upload_bytes, max_pixels=max_upload_pixels, progress=progress)
        view = shown.view
        return [shown.about, _position(shown, position), view.message, view.answers, view.heatmap, view.masses,
                _unless_same(view.layer, layer)]

    def on_kind(kind):
        return [gr.update(visible=kind == DATASET_SAMPLE), gr.update(visible=kind == UPLOADED)]

    def on_method(method):
        return [gr.update(visible=name in get_method(method).names) for name in names]

    with gr.Blocks(title="ScalingVis / AdaptVis demo", analytics_enabled=False, delete_cache=(86400, 86400)) as page:
        gr.Markdown(INTRO.format(model=model_label, dataset=engine.dataset, n=len(engine.samples)))
        with gr.Row():
            with gr.Column(scale=2):
                kind = gr.Radio(list(SOURCE_KINDS), value=DATASET_SAMPLE, label="answer about", elem_id="kind")
                with gr.Group(visible=True) as dataset_inputs:
                    with gr.Row():
                        relation = gr.Dropdown([ALL, *engine.relations()], value=ALL, label="gold relation",
                                               elem_id="relation")
                        verdict = gr.Radio(list(VERDICT_FILTERS), value=ALL, label="baseline answer",
                                           elem_id="verdict")
                    position = Slider(0, max(len(engine.samples) - 1, 1), value=0, step=1, elem_id="position",
                                         label="sample (position among the samples the filters keep)")
                with gr.Group(visible=False) as upload_inputs:
                    file = gr.File(label="image file (PNG, JPEG, ...)", elem_id="upload")
                    question = gr.Textbox(label="question (Enter to ask)", elem_id="question",
                                          placeholder="Where is the mug in relation to the table?")
                    ask = gr.Button("Answer about this image", elem_id="ask")
                about = gr.Markdown(elem_id="about")
                method = gr.Dropdown(method_choices(), value=initial_method, label="method", elem_id="method")
                knobs = [_component(controls[name], name in own) for name in names]
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                answers = gr.Markdown(elem_id="answers")
                layer = Slider(0, max(engine.n_layers - 1, 1), value=engine.n_layers // 2, step=1, elem_id="layer",
                                  label="language-model layer of the heatmaps")
                gr.Markdown("Head-mean attention of the last prompt token over the image at that layer, baseline and "
                            "method on one colour scale; below, its attention mass on image and text keys per layer.")
                # No image buttons: they would cover the panels' titles. PNG, not Gradio's default WebP: lossless.
                pictures = dict(show_label=False, type="pil", format="png", interactive=False, buttons=[])
                heatmap = gr.Image(elem_id="heatmap", **pictures)
                masses = gr.Image(elem_id="masses", **pictures)

        inputs = [kind, relation, verdict, position, file, question, method, *knobs, layer]
        outputs = [about, position, message, answers, heatmap, masses, layer]
        kind.input(on_kind, kind, [dataset_inputs, upload_inputs])
        method.input(on_method, method, knobs)
        # One listener for every input: a visitor's requests then run one at a time, and with always_last a burst
        # of slider moves collapses into its last one, so the page ends on the result of its final inputs.
        triggers = [page.load, kind.input, relation.input, verdict.input, position.input, file.upload,
                    question.submit, ask.click, method.input, layer.input, *(knob.input for knob in knobs)]
        gr.on(triggers, on_input, inputs, outputs, trigger_mode="always_last")
    return page


def launch(page: gr.Blocks, *, host: str, port: int, max_upload_bytes: int) -> None:
    # Model use is serialised by the engine; a few concurrent events let cached views and redraws pass a
    # long computation instead of queueing behind it.
    page.queue(default_concurrency_limit=4)
    page.launch(server_name=host, server_port=port, share=False, show_error=False, theme=THEME,
                max_file_size=max_upload_bytes, footer_links=[])
