"""CLVS's published defaults and where they come from (torch-free: the command line lists them).

lam: the peer's README runs CLVS with `--smoothing 0.7` on both VSR splits (davidbchang/
visual-attention-intervention@15a640e, README "CLVS Evaluation"); its script and demo app default to 0.8.
beta (`--window_memory_size`) and tau (`--uncertainty_threshold`): 0.8 and 0.5 in that README and script.
The paper's own values are not public (its code release is "under construction").
scope: "all", because the paper (v2) also evaluates image captioning and the peer smooths the last row of
every forward, i.e. every generated token too.
"""
LAMBDA, BETA, TAU = 0.7, 0.8, 0.5
SCOPE = "all"
PEER_SOURCE = "the peer's README for both VSR splits, davidbchang/visual-attention-intervention@15a640e"
