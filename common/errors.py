"""The one error type the toolkit raises for problems the user can fix.

Every user-facing failure (unknown dataset, missing file, malformed JSON line, out-of-range
hyper-parameter, ...) raises `ToolkitError` with a message that names the problem and the fix.
`main_aro.py` catches it, prints the message on one line and exits with status 2; library callers
can catch it the same way. Programming errors stay ordinary exceptions with tracebacks.
"""


class ToolkitError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""
