"""The time grid of fixed-step runs, as the C++ core lays it out, for the
backends that step in Python loops."""

from __future__ import annotations

import numpy as np

#: Step count of a grid finer than any max_steps, as in the core's
#: ``fixed_step_count``.
MAX_GRID_STEPS = 4_000_000_000_000_000_000


def fixed_step_count(t0: float, t1: float, dt: float, dtype) -> int:
    """Number of steps of size |dt| that cover the span, as the C++ core counts
    them: a ratio within a few ulps of an integer is rounded to it."""
    span = abs(float(t1) - float(t0))
    if span == 0.0:
        return 0
    ratio = span / abs(float(dt))
    # More steps than an int64 holds: max_steps (at most 2**62) ends the run
    # first, so the count is capped as the core caps it.
    if not ratio < MAX_GRID_STEPS:
        return MAX_GRID_STEPS
    eps = 1e-6 if np.dtype(dtype) == np.float32 else 1e-12
    n = int(ratio)
    if n < ratio * (1.0 - eps):
        n += 1
    return max(n, 1)


def fixed_step_time(t0: float, t1: float, dt: float, k: int, n: int, dtype):
    """Start of step k of n in the run's dtype, as the core computes it: the
    last step ends exactly at t1."""
    real = np.dtype(dtype).type
    if k >= n:
        return real(t1)
    direction = real(1.0 if t1 >= t0 else -1.0)
    return real(t0) + direction * real(k) * abs(real(dt))
