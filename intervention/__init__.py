"""The ScalingVis / AdaptVis attention intervention.

    from intervention import ScalingVis, AdaptVis
    with ScalingVis(vlm, alpha=0.8):
        vlm.generate(inputs, max_new_tokens=10)
    answers = AdaptVis(weight1=0.5, weight2=1.5, threshold=0.4).run(vlm, inputs, max_new_tokens=10)
"""
from intervention.attention import ATTENTION_NAME, register
from intervention.scaling_vis import ScalingVis

register()

__all__ = ["ScalingVis", "ATTENTION_NAME"]
