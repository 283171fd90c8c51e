"""Reporting: what finished run folders say, as the val selection, the paper's tables and plots.

It reads run folders only (`evaluation.runs`); scoring a generation happens during the run, in
`scoring`. Commands: `python -m evaluation.select` (hyper-parameters chosen on val) and
`python -m evaluation.report` (tables and plots).
"""
