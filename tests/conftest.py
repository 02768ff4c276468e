"""Shared fixtures: closed forms, error measures and a scipy reference solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import fastode


def damped_oscillator_exact(k, b, t, x0=1.0, v0=0.0):
    """Return (x, v) of x'' + b x' + k x = 0 at times t, shape t.shape + (2,).

    Covers the under-damped (b² < 4k), critically damped (b² = 4k) and
    over-damped (b² > 4k) regimes with their textbook solutions.
    """
    t = np.asarray(t, dtype=np.float64)
    g = b / 2.0
    disc = g * g - k
    if disc < 0:
        w = np.sqrt(-disc)
        c1, c2 = x0, (v0 + g * x0) / w
        decay = np.exp(-g * t)
        x = decay * (c1 * np.cos(w * t) + c2 * np.sin(w * t))
        v = decay * ((c2 * w - g * c1) * np.cos(w * t) - (c1 * w + g * c2) * np.sin(w * t))
    elif disc == 0:
        c1, c2 = x0, v0 + g * x0
        decay = np.exp(-g * t)
        x = decay * (c1 + c2 * t)
        v = decay * (c2 - g * (c1 + c2 * t))
    else:
        root = np.sqrt(disc)
        r1, r2 = -g + root, -g - root
        c1 = (v0 - r2 * x0) / (r1 - r2)
        c2 = x0 - c1
        x = c1 * np.exp(r1 * t) + c2 * np.exp(r2 * t)
        v = c1 * r1 * np.exp(r1 * t) + c2 * r2 * np.exp(r2 * t)
    return np.stack([x, v], axis=-1)


def scipy_reference(system, y0, t_span, t_eval=None, rtol=1e-12, atol=1e-12):
    """Integrate one trajectory of a built-in system with scipy DOP853.

    Returns the states at ``t_eval`` with shape (T, d), or the final state
    with shape (d,) when ``t_eval`` is None.
    """

    def rhs(t, y):
        return system.rhs(t, y[None, :])[0]

    result = solve_ivp(
        rhs, t_span, np.asarray(y0, dtype=np.float64), method="DOP853",
        t_eval=t_eval, rtol=rtol, atol=atol,
    )
    assert result.success, result.message
    return result.y.T if t_eval is not None else result.y[:, -1]


def tolerance_units(y, y_true, rtol, atol):
    """RMS of (y - y_true) / (atol + rtol |y_true|): the error in units of
    the requested tolerance."""
    scale = atol + rtol * np.abs(y_true)
    return float(np.sqrt(np.mean(((y - y_true) / scale) ** 2)))


def fitted_order(dts, errors):
    """Slope of log(error) against log(dt), by least squares."""
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


@pytest.fixture
def reference():
    """`scipy_reference`: scipy DOP853 at rtol = atol = 1e-12."""
    return scipy_reference


@pytest.fixture
def oscillator_exact():
    """`damped_oscillator_exact`: closed form of x'' + b x' + k x = 0."""
    return damped_oscillator_exact


@pytest.fixture
def in_tolerance_units():
    """`tolerance_units`: RMS error scaled by atol + rtol |y_true|."""
    return tolerance_units


@pytest.fixture
def order_of():
    """`fitted_order`: slope of log(error) against log(dt)."""
    return fitted_order


@pytest.fixture
def kepler_orbit():
    """Kepler system and the initial state of an orbit with eccentricity 0.6.

    The state (x, y, px, py) starts at perihelion r = 1 - e with speed
    sqrt((1 + e) / (1 - e)), so with G M = 1 the semi-major axis is 1, the
    period 2 pi and the energy -1/2.
    """
    e = 0.6
    y0 = np.array([1.0 - e, 0.0, 0.0, np.sqrt((1.0 + e) / (1.0 - e))])
    return fastode.Hamiltonian("kepler"), y0
