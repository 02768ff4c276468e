"""The continuous extensions of dopri5 and tsit5, read from the C++ headers."""

import numpy as np
import pytest

import fastode
from fastode import _core

THETAS = [0.1, 0.37, 0.5, 0.81, 1.0]


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_dense_weights_end_at_solution_weights(method):
    b = np.array(_core.tableaus()[method]["b"])
    weights = np.array(_core.dense_weights(method, [1.0]))[0]
    np.testing.assert_allclose(weights, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_dense_weights_meet_fourth_order_conditions(method):
    # Quadrature conditions sum_j b_j(theta) c_j^(q-1) = theta^q / q, q <= 4.
    c = np.array(_core.tableaus()[method]["c"])
    weights = np.array(_core.dense_weights(method, THETAS))
    for q in range(1, 5):
        expected = np.array(THETAS) ** q / q
        np.testing.assert_allclose(weights @ c ** (q - 1), expected, atol=1e-14)


def test_dense_weights_reject_unknown_method():
    with pytest.raises(ValueError, match="bs3"):
        _core.dense_weights("bs3", [0.5])


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_dense_output_at_tight_tolerance(method):
    # y' = -2 y from 3: the interpolated values stay within a few tolerances.
    t_eval = np.linspace(0.0, 1.0, 37)
    sol = fastode.solve(
        fastode.Linear([[-2.0]]), [3.0], (0.0, 1.0), t_eval=t_eval,
        method=method, rtol=1e-10, atol=1e-12,
    )
    exact = 3.0 * np.exp(-2.0 * t_eval)
    scaled = (sol.y[:, 0] - exact) / (1e-12 + 1e-10 * np.abs(exact))
    assert np.sqrt(np.mean(scaled**2)) < 5
