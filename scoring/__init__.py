"""Scoring: map generations onto answer options (`judge`) and aggregate verdicts (`compute_metrics`).

    from scoring import judge, compute_metrics
    judgements = [judge(generation, sample, mode="strict") for generation, sample in zip(generations, samples)]
    metrics = compute_metrics(judgements, samples)   # accuracy, per_relation, confusion, pair/set or F1 ...

`mode="paper"` reproduces the original AdaptVis substring rule; see `scoring.matching`. Short-answer
samples (GQA, TextVQA, VQAv2) are scored with the official VQA normalisation and accuracy (`scoring.vqa`).
"""
from scoring.matching import MATCH_MODES, SYNONYMS, Judgement, judge, parse_option
from scoring.metrics import compute_metrics
from scoring.vqa import normalize_answer, vqa_accuracy

__all__ = ["MATCH_MODES", "SYNONYMS", "Judgement", "judge", "parse_option", "compute_metrics", "normalize_answer",
           "vqa_accuracy"]
