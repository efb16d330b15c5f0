"""Time several versions of one step side by side, interleaved, and keep the median.

Interleaving (eager, compiled, compiled, eager, ...) exposes both versions to the same
drift in clock speed and in load from other processes, which a block of runs of one
followed by a block of the other would turn into a false speed-up; reversing the order
every round cancels what running first or second does to a step (a warm cache). The
median ignores the odd slow run (a garbage collection, a page fault).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["TimeFn", "measure"]

# measure(steps, warmup=..., repeats=..., sync=...) -> seconds per step, by name
TimeFn = Callable[..., Mapping[str, float]]


def measure(
    steps: Mapping[str, Callable[[], Any]],
    *,
    warmup: int,
    repeats: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median seconds per call of each step.

    Args:
        steps: name -> a function running one step.
        warmup: untimed calls of each step first (compilation, caches, allocator).
        repeats: timed calls of each step, interleaved across steps in an order that is
            reversed every round.
        sync: waits for the device, called before reading the clock.

    Returns:
        name -> median seconds.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps.items())
    for _ in range(repeats):
        for name, step in order:
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
        order.reverse()
    return {name: statistics.median(t) for name, t in times.items()}
