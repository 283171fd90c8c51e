"""`python app.py`: the interactive demo (a Gradio page over one loaded model and dataset).

    controls.py   the method registry's hyper-parameters as page controls, and the controls' values back to a
                  registry Configuration (torch-free)
    sources.py    what is answered: a dataset sample, or an uploaded image (checked) with a typed question
    engine.py     the model and samples shared by every visitor; answers (methods.answer), captures, the cache
    attention.py  per registry strategy, the intervention under which a generation shows the method's attention
    figures.py    the heatmaps (baseline vs method, one layer) and the attention mass per layer, as images
    callbacks.py  page inputs -> what the page shows; problems become messages (tests call these directly)
    page.py       the Gradio layout and event wiring; widgets.py: a slider whose typed values the callbacks check
    server.py     loading once, building the page, serving it
"""
