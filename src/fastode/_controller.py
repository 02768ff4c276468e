"""The step-size controller of cpp/include/fastode/controller.hpp, for whole
arrays of trajectories at once (NumPy or CuPy, through the namespace ``xp``).

The constants are the core's. The core raises to powers with a branch-free
approximation accurate to about 1e-9; this module uses the exact power, so a
step whose error norm lies within about 1e-9 of 1 may be decided differently.
"""

from __future__ import annotations

import numpy as np

#: Keeps the next error estimate below 1 with some margin.
SAFETY = 0.9
#: Bounds on the ratio of the next step to this one.
FACTOR_MIN = 0.2
FACTOR_MAX = 10.0
#: Floor on the previous error norm seen by the PI controller.
ERR_PREV_MIN = 1e-4
#: Values of the ``controller`` argument of the bindings.
CONTROLLER_PI = 1


def step_factor(xp, norm, error_order: int, controller: int, err_prev, rejected_last):
    """Ratio of each row's next step to the one just tried.

    The I controller is SAFETY * norm^(-1/k) with k = error_order + 1; the PI
    controller (Gustafsson 1991) uses exponent -0.7/k and multiplies by
    err_prev^(0.4/k). Zero norms give FACTOR_MAX, NaN norms FACTOR_MIN, and a
    row rejected last time does not grow.
    """
    k = float(error_order + 1)
    safe_norm = xp.abs(norm.astype(np.float64)) + 1e-300
    if controller == CONTROLLER_PI:
        factor = SAFETY * safe_norm ** (-0.7 / k) * err_prev.astype(np.float64) ** (0.4 / k)
    else:
        factor = SAFETY * safe_norm ** (-1.0 / k)
    factor = xp.where(norm > 0, factor, FACTOR_MAX)
    factor = xp.clip(factor, FACTOR_MIN, FACTOR_MAX)
    factor = xp.where(rejected_last, xp.minimum(factor, 1.0), factor)
    factor = xp.where(norm == norm, factor, FACTOR_MIN)
    return factor.astype(norm.dtype)


def min_step(xp, t):
    """Return the smallest step that still moves t: 10 eps |t|, and 10 times
    the smallest normal number at t = 0."""
    info = np.finfo(t.dtype)
    return 10 * xp.maximum(info.eps * xp.abs(t), info.tiny)
