"""Inputs at the limits of the counters, threads and defaults."""

import numpy as np
import pytest

import fastode

OSCILLATOR = fastode.Oscillator(k=1.0)


def test_threads_far_beyond_cores_rejected():
    with pytest.raises(ValueError, match="threads must be at most"):
        fastode.solve(OSCILLATOR, [1.0, 0.0], (0.0, 1.0), threads=100_000)


def test_threads_more_than_blocks_allowed():
    sol = fastode.solve(OSCILLATOR, [1.0, 0.0], (0.0, 1.0), threads=64)
    np.testing.assert_allclose(sol.y, [np.cos(1.0), -np.sin(1.0)], rtol=1e-6)


def test_max_steps_beyond_counter_rejected():
    with pytest.raises(ValueError, match="max_steps must be at most"):
        fastode.solve(OSCILLATOR, [1.0, 0.0], (0.0, 1.0), max_steps=2**70)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_tiny_fixed_step_hits_max_steps(method):
    # span / dt = 1e20 overflows a 64-bit step count; the run must still stop
    # at max_steps instead of taking one giant step.
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS before t1"):
        sol = fastode.solve(OSCILLATOR, [1.0, 0.0], (0.0, 10.0), method=method, dt=1e-19,
                            max_steps=100)
    assert sol.status == fastode.Status.MAX_STEPS
    assert sol.stats["n_steps"] == 100
    np.testing.assert_allclose(sol.y, [1.0, 0.0], atol=1e-15)


def test_unforced_row_ignores_forced_neighbour():
    # Row 0 has force 0 and omega NaN: a forced neighbour must not make its
    # forcing term 0 * cos(NaN) = NaN.
    y0 = np.array([[1.0, 0.0], [1.0, 0.0]])
    omega = np.array([np.nan, 0.0])
    alone = fastode.solve(fastode.Oscillator(k=1.0, force=np.zeros(2), omega=omega), y0,
                          (0.0, 1.0))
    mixed = fastode.solve(fastode.Oscillator(k=1.0, force=np.array([0.0, 1.0]),
                                             omega=omega), y0, (0.0, 1.0))
    assert mixed.status[0] == fastode.Status.SUCCESS
    np.testing.assert_array_equal(mixed.y[0], alone.y[0])
    np.testing.assert_array_equal(mixed.stats["n_steps"][0], alone.stats["n_steps"][0])


def test_float32_default_rtol_silent():
    # The default rtol is raised to float32's floor without a warning; pytest
    # turns warnings into errors here.
    y0 = np.array([[1.0, 0.0]], dtype=np.float32)
    sol = fastode.solve(OSCILLATOR, y0, (0.0, 1.0))
    assert sol.y.dtype == np.float32
    np.testing.assert_allclose(sol.y[0], [np.cos(1.0), -np.sin(1.0)], rtol=1e-4)


def test_float32_explicit_small_rtol_warns():
    y0 = np.array([[1.0, 0.0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="below 100 \\* machine epsilon"):
        fastode.solve(OSCILLATOR, y0, (0.0, 1.0), rtol=1e-9)


def _call_oscillator_core(k):
    y0 = np.zeros((3, 2))
    return fastode._core.solve_oscillator(
        y0, np.zeros(0), False, method="rk4", t0=0.0, t1=1.0, dt=0.1, rtol=1e-6,
        atol=1e-9, max_steps=100, controller=0, threads=1, k=k, b=np.zeros(1),
        force=np.zeros(1), omega=np.zeros(1),
    )


@pytest.mark.parametrize("rows", [0, 2, 5])
def test_core_rejects_parameter_rows(rows):
    # The binding layer checks row counts itself, so a direct call with a
    # wrong length raises instead of reading past the array.
    with pytest.raises(ValueError, match="k must have 1 or 3 rows"):
        _call_oscillator_core(np.ones(rows))


def test_core_accepts_shared_and_per_row_parameters():
    shared = _call_oscillator_core(np.ones(1))
    per_row = _call_oscillator_core(np.ones(3))
    np.testing.assert_array_equal(shared["y"], per_row["y"])
