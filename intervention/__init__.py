"""The ScalingVis / AdaptVis attention intervention.

    from intervention import ScalingVis, AdaptVis
    with ScalingVis(vlm, alpha=0.8):                    # or a transformers model
        vlm.generate(inputs, max_new_tokens=10)
    answers = AdaptVis(weight1=0.5, weight2=1.5, threshold=0.4).run(vlm, inputs, max_new_tokens=10)

    session = open_session(vlm, inputs, max_new_tokens=10)   # what the CLI uses for every method
    session.confidence, session.answers(0.8), session.answers_rounds([[0.5, 2.0], [1.5, 0.8]])

`open_session` shares the prompt across alphas (prefix sharing, `intervention.prefix`); pass
`engine="naive"` for the plain two-pass procedure (one generate per alpha), the reference it is tested against.
"""
import importlib

# Imported on first use, so torch-free callers (command lines listing the scopes) do not load torch.
_EXPORTS = {"ScalingVis": "intervention.scaling_vis", "AdaptVis": "intervention.adapt_vis",
            "AdaptVisAnswer": "intervention.adapt_vis", "open_session": "intervention.session",
            "AnswerSession": "intervention.session", "ATTENTION_NAME": "intervention.attention"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'intervention' has no attribute {name!r}")
