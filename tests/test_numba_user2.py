"""backend="numba" with user right-hand sides: blocks whose every lane fails
at t0, fixed steps finer than any step count, and the on-disk cache when the
user's module changes between processes."""

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_numba import SOURCE, linear

import fastode
from fastode import Status
from fastode._numba import _cache


def solve_within(seconds, *args, **options):
    """Run fastode.solve on a helper thread and fail if it has not returned
    after `seconds`: the Numba kernels release the GIL, so a kernel that
    loops forever cannot hang the test itself."""
    result = {}

    def target():
        try:
            result["solution"] = fastode.solve(*args, backend="numba", **options)
        except BaseException as error:  # handed back to the test thread
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"fastode.solve did not return within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["solution"]


# --- every lane of a block fails at t0 ----------------------------------------------


@pytest.mark.parametrize("method", ["bs3", "dopri5", "tsit5"])
@pytest.mark.parametrize("n", [1, 3, 64])
def test_adaptive_block_of_failed_starts_returns(method, n):
    """f(t0, y0) is NaN on every trajectory (a NaN rate), so every lane of
    the block fails before its first step and the block has nothing to do."""
    sol = solve_within(300, linear(np.nan), np.ones((n, 1)), (0.0, 1.0), method=method,
                       t_eval=[0.0, 0.5, 1.0])
    assert np.all(sol.status == Status.NON_FINITE)
    np.testing.assert_array_equal(sol.y[:, 0, 0], np.ones(n))
    assert np.all(np.isnan(sol.y[:, 1:, :]))
    np.testing.assert_array_equal(sol.t_final, np.zeros(n))
    np.testing.assert_array_equal(sol.stats["n_steps"], np.zeros(n))
    np.testing.assert_array_equal(sol.stats["n_rhs"], np.ones(n))


def test_adaptive_infinite_derivative_at_start_returns():
    """f = y + inf: an infinite rather than a NaN derivative at t0."""
    sol = solve_within(300, linear(1.0, c=np.inf), [0.0], (0.0, 1.0))
    assert sol.status == Status.NON_FINITE
    assert sol.y[0] == 0.0


# --- fixed steps finer than any step count --------------------------------------------


@pytest.mark.parametrize("method", ["rk4", "tsit5"])
def test_tiny_fixed_step_stops_at_max_steps(method):
    """dt = 1e-30 over a span of 1 needs 1e30 steps, more than an int64 holds;
    max_steps ends the run as on the core, with no error about the user
    function."""
    options = {"adaptive": False} if method == "tsit5" else {}
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS"):
        sol = fastode.solve(linear(-1.0), [1.0], (0.0, 1.0), method=method, dt=1e-30,
                            max_steps=5, backend="numba", **options)
    assert sol.status == Status.MAX_STEPS
    assert sol.stats["n_steps"] == 5
    assert sol.t_final == pytest.approx(5e-30, rel=1e-12)
    assert sol.y[0] == pytest.approx(math.exp(-5e-30), rel=1e-15)
