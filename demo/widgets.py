"""A Gradio slider that leaves range checks to the demo's callbacks.

Gradio checks a slider's value against its range before the callback runs and answers a value typed out of range,
or an emptied box, with a bare "Error". Passing the value on lets the callback refuse it with the method registry's
sentence ("--weight -1 is outside [0, inf]: ..."), and clamp the sample and layer positions.

Gradio writes a type stub (widgets.pyi) next to any module defining a component class, on import; .gitignore keeps
it out of the repository.
"""
from __future__ import annotations

import gradio as gr


class Slider(gr.Slider):
    """Gradio's slider (drawn by the same frontend code: a template component), any typed value passed on."""

    is_template = True

    def preprocess(self, payload):
        return payload
