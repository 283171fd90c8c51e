"""Wall-clock seconds of one invocation, recorded in each finished run folder's results.json."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional


@dataclass
class Timing:
    """Wall-clock seconds of one invocation, measured on process 0 (see `record`)."""

    open_seconds: float = 0.0
    load_seconds: Optional[float] = None
    threshold_seconds: Optional[float] = None
    evaluation_seconds: Optional[float] = None
    configurations: int = 0
    processes: int = 1
    threads: Optional[int] = None

    def record(self, evaluated: int, resumed: int) -> dict:
        """results.json's `timing` of a configuration that had `resumed` samples recorded before this
        invocation and got `evaluated` more in it.

        Every number is this invocation's: an interrupted earlier invocation is not measured (it never
        reached the end), so its samples are counted as `samples_resumed`, not in the rate. A grid's
        configurations share one pass, so they share its seconds: `samples_per_second` is samples
        through the pass per second, for one configuration or for all `configurations_in_pass`.
        """
        loaded = None if self.load_seconds is None else self.open_seconds + self.load_seconds
        rate = evaluated / self.evaluation_seconds if evaluated and self.evaluation_seconds else None
        return {"model_load_seconds": _rounded(loaded), "threshold_seconds": _rounded(self.threshold_seconds),
                "evaluation_seconds": _rounded(self.evaluation_seconds), "samples_evaluated": evaluated,
                "samples_resumed": resumed, "samples_per_second": _rounded(rate),
                "configurations_in_pass": self.configurations, "processes": self.processes,
                "threads": self.threads}


def _rounded(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds, 3)


@contextmanager
def timed(timing: Timing, name: str):
    """Store the seconds the block took in `timing.<name>`, less any model loading timed inside it (the
    model loads lazily, within the first pass that needs it; its seconds are `load_seconds` alone)."""
    loaded_before = timing.load_seconds or 0.0
    start = time.perf_counter()
    yield
    loaded_inside = (timing.load_seconds or 0.0) - loaded_before if name != "load_seconds" else 0.0
    setattr(timing, name, time.perf_counter() - start - loaded_inside)
