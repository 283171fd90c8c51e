"""Which query positions an attention intervention targets (torch-free, so command lines can list them).

"prefill": only the last prompt position, whose output is the first answer token (the original
code: its scaling ran only in the square prefill call). "all": that position and every generated
token after it.
"""
SCOPES = ("prefill", "all")
