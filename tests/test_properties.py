"""Property-based tests of fastode.solve on random shapes, dtypes, spans,
output times, tolerances and parameter arrays, including non-finite inputs.

Invariants: the call returns (no crash, no hang); statuses agree with the
arrays; a row's result does not depend on the rest of its batch nor on the
chunk size; the state at t_eval == t0 is y0 exactly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastode
from fastode import Status

FIXED = ("euler", "midpoint", "heun", "rk4")
ADAPTIVE = ("bs3", "dopri5", "tsit5")
MAX_STEPS = 3000
SETTINGS = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Mostly ordinary values, sometimes the values that break solvers.
state_values = st.one_of(
    st.floats(-3.0, 3.0),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, np.nan, np.inf, -np.inf, 1e-300]),
)


@dataclass
class Case:
    system: fastode.System
    params: dict
    y0: np.ndarray
    t_span: tuple
    t_eval: np.ndarray | None
    options: dict

    def solve(self, y0=None, system=None, **extra):
        with warnings.catch_warnings():
            # Random cases stop with MAX_STEPS on purpose, which warns with a
            # StiffnessWarning or, for fixed steps, a RuntimeWarning; both
            # warnings are tested in test_chunks.py.
            warnings.simplefilter("ignore", RuntimeWarning)
            return fastode.solve(
                self.system if system is None else system,
                self.y0 if y0 is None else y0,
                self.t_span,
                t_eval=self.t_eval,
                **self.options,
                **extra,
            )

    def row_system(self, i):
        """The system of trajectory i alone: per-trajectory parameters sliced."""
        if isinstance(self.system, fastode.Linear):
            A, b = self.params["A"], self.params["b"]
            A = A[i : i + 1] if A.ndim == 3 else A
            b = b[i : i + 1] if b.ndim == 2 else b
            return fastode.Linear(A, b)
        rows = {
            name: value[i : i + 1] if isinstance(value, np.ndarray) else value
            for name, value in self.params.items()
        }
        return fastode.Oscillator(**rows)


@st.composite
def parameter(draw, n, low, high):
    """A scalar shared by all trajectories or an array of one per trajectory."""
    if n == 0 or draw(st.booleans()):
        return draw(st.floats(low, high))
    values = draw(st.lists(st.floats(low, high), min_size=n, max_size=n))
    if draw(st.integers(0, 9)) == 0:
        values[draw(st.integers(0, n - 1))] = draw(
            st.sampled_from([np.nan, np.inf, 1e12])
        )
    return np.array(values)


@st.composite
def systems(draw, n):
    if draw(st.booleans()):
        params = {
            "k": draw(parameter(n, 0.1, 4.0)),
            "b": draw(parameter(n, 0.0, 1.0)),
            "force": draw(parameter(n, -1.0, 1.0)),
            "omega": draw(parameter(n, 0.0, 3.0)),
        }
        return fastode.Oscillator(**params), params, 2
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (n, d, d) if n and draw(st.booleans()) else (d, d)
    A = -np.eye(d) + 0.5 * rng.standard_normal(shape)
    b = rng.standard_normal((n, d) if n and draw(st.booleans()) else d)
    return fastode.Linear(A, b), {"A": A, "b": b}, d


@st.composite
def spans(draw):
    t0 = draw(st.floats(-5.0, 5.0))
    length = draw(st.one_of(st.just(0.0), st.floats(0.01, 4.0)))
    sign = draw(st.sampled_from([1.0, -1.0]))
    return t0, t0 + sign * length


@st.composite
def output_times(draw, t0, t1, dtype):
    if draw(st.booleans()):
        return None
    inner = draw(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=6))
    fractions = sorted(inner + draw(st.sampled_from([[], [0.0], [1.0], [0.0, 1.0]])))
    times = t0 + (t1 - t0) * np.array(fractions, dtype=np.float64)
    # Rounded into the span: t0 + (t1 - t0) * 1.0 may differ from t1 by one ulp.
    low, high = min(t0, t1), max(t0, t1)
    return np.clip(times, low, high).astype(dtype)


@st.composite
def cases(draw, finite_only=False):
    n = draw(st.integers(0, 24))
    system, params, d = draw(systems(n))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    values = st.floats(-3.0, 3.0) if finite_only else state_values
    values = draw(st.lists(values, min_size=n * d, max_size=n * d))
    with np.errstate(over="ignore"):
        # 1e300 becomes inf in float32, one more non-finite start.
        y0 = np.array(values, dtype=dtype)
    y0 = y0.reshape(n, d)
    t0, t1 = draw(spans())
    # Ends representable in the dtype keep t_eval, once cast, inside the span.
    t0, t1 = float(dtype(t0)), float(dtype(t1))
    t_eval = draw(output_times(t0, t1, dtype))
    method = draw(st.sampled_from(FIXED + ADAPTIVE))
    options = {"method": method, "max_steps": MAX_STEPS, "dtype": np.dtype(dtype).name}
    if method in FIXED:
        options["dt"] = draw(st.floats(1e-3, 1.0))
    else:
        floor = 2e-5 if dtype == np.float32 else 1e-10
        options["rtol"] = draw(st.floats(floor, 1e-2))
        options["atol"] = draw(st.floats(1e-12, 1e-3))
        options["controller"] = draw(st.sampled_from(["i", "pi"]))
    return Case(system, params, y0, (t0, t1), t_eval, options)


def check_shapes(case, sol):
    n, d = case.y0.shape
    n_out = None if case.t_eval is None else len(case.t_eval)
    expected = (n, d) if n_out is None else (n, n_out, d)
    assert sol.y.shape == expected
    assert sol.y.dtype == case.y0.dtype
    assert sol.status.shape == (n,)
    assert sol.t_final.shape == (n,)
    assert set(np.unique(sol.status)) <= {0, 1, 2, 3}


def check_statuses(case, sol):
    """Check that success rows are finite and end at t1, and that failed rows
    stop inside the span. With t_eval a failed row is NaN at every later
    output time. Without it y is the last state reached, which is finite
    unless the status is NON_FINITE."""
    t0, t1 = case.t_span
    direction = 1.0 if t1 >= t0 else -1.0
    t_out = sol.t.astype(np.float64)
    for i, status in enumerate(sol.status):
        if status == Status.SUCCESS:
            assert np.all(np.isfinite(sol.y[i])), f"row {i} succeeded with non-finite y"
            assert sol.t_final[i] == sol.t_final.dtype.type(t1)
            continue
        t_final = float(sol.t_final[i])
        assert direction * (t_final - t0) >= 0
        assert direction * (t1 - t_final) >= 0
        if case.t_eval is None:
            if status != Status.NON_FINITE:
                assert np.all(np.isfinite(sol.y[i])), (
                    f"row {i} stopped at a non-finite y"
                )
            continue
        unreached = direction * (t_out - t_final) > 0
        assert np.all(np.isnan(sol.y[i][unreached])), (
            f"row {i} has values after t_final"
        )


@given(case=cases())
@SETTINGS
def test_statuses_match_results(case):
    sol = case.solve()
    check_shapes(case, sol)
    check_statuses(case, sol)
    assert np.all(sol.stats["n_steps"] <= MAX_STEPS)
    assert np.all(sol.stats["n_steps"] >= 0)


def assert_same_rows(case, actual, expected):
    """Rows of two solutions of the same trajectories are bit-identical."""
    np.testing.assert_array_equal(actual.status, expected.status)
    np.testing.assert_array_equal(actual.t_final, expected.t_final)
    np.testing.assert_array_equal(actual.y, expected.y)


@given(case=cases(), data=st.data())
@SETTINGS
def test_row_equals_row_solved_alone(case, data):
    n = case.y0.shape[0]
    assume(n > 0)
    whole = case.solve()
    i = data.draw(st.integers(0, n - 1))
    alone = case.solve(y0=case.y0[i : i + 1], system=case.row_system(i))
    assert_same_rows(case, alone, _row(whole, i))
    for name, counts in whole.stats.items():
        assert alone.stats[name][0] == counts[i]


def _row(sol, i):
    """Solution restricted to row i, keeping the batch axis."""
    stats = {name: counts[i : i + 1] for name, counts in sol.stats.items()}
    return fastode.Solution(
        t=sol.t,
        y=sol.y[i : i + 1],
        status=sol.status[i : i + 1],
        t_final=sol.t_final[i : i + 1],
        stats=stats,
        method=sol.method,
    )


@given(case=cases(), chunk_size=st.integers(1, 30), threads=st.sampled_from([1, 2]))
@SETTINGS
def test_chunk_size_and_threads_change_nothing(case, chunk_size, threads):
    whole = case.solve()
    chunked = case.solve(chunk_size=chunk_size, threads=threads)
    assert_same_rows(case, chunked, whole)


@given(case=cases(finite_only=True))
@SETTINGS
def test_output_at_t0_is_y0(case):
    t0 = case.t_span[0]
    t_eval = case.t_eval if case.t_eval is not None else np.zeros(0)
    case.t_eval = np.concatenate([[t0], t_eval]).astype(case.y0.dtype)
    sol = case.solve()
    np.testing.assert_array_equal(sol.y[:, 0, :], case.y0)


@given(case=cases(finite_only=True))
@SETTINGS
def test_zero_span_returns_y0(case):
    t0 = case.t_span[0]
    case.t_span = (t0, t0)
    case.t_eval = None if case.t_eval is None else np.array([t0], case.y0.dtype)
    assume(case.t_eval is None or float(case.t_eval[0]) == t0)
    sol = case.solve()
    y = sol.y if case.t_eval is None else sol.y[:, 0, :]
    np.testing.assert_array_equal(y, case.y0)
    assert np.all(sol.status == Status.SUCCESS)


@pytest.mark.parametrize("method", FIXED + ADAPTIVE)
def test_single_state_keeps_shape(method):
    """1-D y0 drops the batch axis for every method (a fixed example)."""
    dt = 0.1 if method in FIXED else None
    sol = fastode.solve(
        fastode.Oscillator(1.0), [1.0, 0.0], (0.0, 1.0), method=method, dt=dt
    )
    assert sol.y.shape == (2,)
    assert sol.status == Status.SUCCESS
