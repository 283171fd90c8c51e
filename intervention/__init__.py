"""The ScalingVis / AdaptVis attention intervention.

    from intervention import ScalingVis, AdaptVis
    with ScalingVis(vlm, alpha=0.8):                    # or a transformers model
        vlm.generate(inputs, max_new_tokens=10)
    answers = AdaptVis(weight1=0.5, weight2=1.5, threshold=0.4).run(vlm, inputs, max_new_tokens=10)
    answers = CLVS(lam=0.7, beta=0.8, tau=0.5).run(vlm, inputs, max_new_tokens=10)   # Cross-Layer Vision Smoothing

    session = open_session(vlm, inputs, max_new_tokens=10)   # what the CLI uses for every method
    session.confidence, session.answers(0.8), session.answers_rounds([[0.5, 2.0], [1.5, 0.8]])

`open_session` shares the prompt across alphas (prefix sharing, `intervention.prefix`); pass
`engine="naive"` for the plain two-pass procedure (one generate per alpha), the reference it is tested against.
"""
from intervention.adapt_vis import AdaptVis, AdaptVisAnswer
from intervention.attention import ATTENTION_NAME, register
from intervention.clvs import CLVS, ClvsAnswer, ClvsSmoothing
from intervention.scaling_vis import ScalingVis
from intervention.session import AnswerSession, open_session

register()

__all__ = ["ScalingVis", "AdaptVis", "AdaptVisAnswer", "CLVS", "ClvsSmoothing", "ClvsAnswer", "open_session",
           "AnswerSession", "ATTENTION_NAME"]
