"""The paper's analyses as figures: attention capture over datasets, attention-box overlap AUROC, error analysis,
saliency. `python -m analysis --help` lists every figure; `analysis.figures.FIGURES` holds them by name."""
