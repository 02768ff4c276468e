"""Bad arguments raise ValueError or TypeError naming the argument; the
Solution object reports shapes and failures readably."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastode
from fastode import IntegrationError, Solution, Status


def decay():
    return fastode.Linear([[-1.0]])


def oscillator():
    return fastode.Oscillator(k=1.0)


# --- y0 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "y0",
    [[1.0, 0.0, 0.0], [[1.0, 0.0, 0.0]], np.zeros((2, 2, 2)), 1.0],
    ids=["too_long", "batch_too_wide", "three_dims", "scalar"],
)
def test_y0_wrong_shape(y0):
    with pytest.raises(ValueError, match=r"y0 has shape .*must have shape \(2,\) or \(N, 2\)"):
        fastode.solve(oscillator(), y0, (0.0, 1.0))


def test_y0_not_numbers():
    with pytest.raises(TypeError, match="y0 must contain real numbers"):
        fastode.solve(oscillator(), ["a", "b"], (0.0, 1.0))


def test_y0_complex():
    with pytest.raises(TypeError, match="y0 is complex"):
        fastode.solve(oscillator(), np.array([1.0, 0.0], dtype=complex), (0.0, 1.0))


@pytest.mark.parametrize("y0", [[[1.0, 0.0], [1.0]], [[1.0, [0.0, 1.0]]]],
                         ids=["rows_differ", "nested_entry"])
def test_y0_ragged(y0):
    with pytest.raises(ValueError, match=r"y0 must be a rectangular array of numbers"):
        fastode.solve(oscillator(), y0, (0.0, 1.0))


def test_t_eval_ragged():
    with pytest.raises(ValueError, match=r"t_eval must be a rectangular array of numbers"):
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), t_eval=[0.0, [0.5, 1.0]])


# --- method, dt and controller --------------------------------------------------


def test_unknown_method_lists_names():
    with pytest.raises(ValueError, match="method must be one of") as info:
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), method="rk45")
    message = str(info.value)
    assert "'rk45'" in message
    for name in fastode.METHODS:
        assert name in message


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4", "verlet"])
def test_fixed_step_without_dt(method):
    system = fastode.Hamiltonian("harmonic") if method == "verlet" else oscillator()
    with pytest.raises(ValueError, match=f"method='{method}' uses a fixed step: pass dt > 0"):
        fastode.solve(system, [1.0, 0.0], (0.0, 1.0), method=method)


@pytest.mark.parametrize("dt", [0.0, -0.1, np.nan, np.inf])
def test_dt_not_positive(dt):
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), method="rk4", dt=dt)


def test_dt_not_a_number():
    with pytest.raises(TypeError, match="dt must be a real number, got '0.1'"):
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), method="rk4", dt="0.1")


@pytest.mark.parametrize("system", [fastode.Oscillator(k=1.0), fastode.Linear(np.eye(2)), fastode.Lorenz()])
@pytest.mark.parametrize("method", ["symplectic_euler", "verlet", "yoshida4", "yoshida6"])
def test_symplectic_on_non_hamiltonian(system, method):
    y0 = np.ones(system.dim)
    with pytest.raises(ValueError, match=f"method='{method}' needs a separable Hamiltonian"):
        fastode.solve(system, y0, (0.0, 1.0), method=method, dt=0.1)


def test_unknown_controller():
    with pytest.raises(ValueError, match="controller must be 'i' or 'pi', got 'pid'"):
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), controller="pid")


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of .* got 'gpu'"):
        fastode.solve(oscillator(), [1.0, 0.0], (0.0, 1.0), backend="gpu")


# --- t_span and t_eval -----------------------------------------------------------


@pytest.mark.parametrize(
    "t_span",
    [(0.0, np.inf), (np.nan, 1.0), (-np.inf, 0.0)],
    ids=["inf_end", "nan_start", "minus_inf_start"],
)
def test_t_span_not_finite(t_span):
    with pytest.raises(ValueError, match="t_span must be finite"):
        fastode.solve(decay(), [1.0], t_span)


@pytest.mark.parametrize("t_span", [1.0, (1.0,), (0.0, 1.0, 2.0), "ab"], ids=["scalar", "one", "three", "string"])
def test_t_span_not_a_pair(t_span):
    with pytest.raises(ValueError, match=r"t_span must be a pair \(t0, t1\)"):
        fastode.solve(decay(), [1.0], t_span)


def test_t_span_not_numbers():
    with pytest.raises(TypeError, match=r"t_span\[0\] must be a real number, got '0'"):
        fastode.solve(decay(), [1.0], ("0", "1"))


def test_t_span_one_element_arrays():
    sol = fastode.solve(decay(), [1.0], [np.array([0.0]), np.array(1.0)], rtol=1e-10)
    assert sol.y[0] == pytest.approx(np.exp(-1.0), rel=1e-8)


def test_t_span_second_end_names_index():
    with pytest.raises(TypeError, match=r"t_span\[1\] must be a real number, got array"):
        fastode.solve(decay(), [1.0], [0.0, np.array([1.0, 2.0])])


def test_method_name_case_insensitive():
    sol = fastode.solve(decay(), [1.0], (0.0, 1.0), method="RK4", dt=0.01)
    assert sol.method == "rk4"
    assert sol.y[0] == pytest.approx(np.exp(-1.0), rel=1e-8)


def test_parameters_copied_at_construction():
    A = np.array([[-1.0]])
    system = fastode.Linear(A)
    A[0, 0] = 5.0
    k = np.array([1.0, 4.0])
    oscillator_system = fastode.Oscillator(k=k)
    k[:] = 0.0
    assert fastode.solve(system, [1.0], (0.0, 1.0), rtol=1e-10).y[0] == pytest.approx(np.exp(-1.0))
    sol = fastode.solve(oscillator_system, [[1.0, 0.0]] * 2, (0.0, np.pi), rtol=1e-10)
    np.testing.assert_allclose(sol.y[:, 0], [np.cos(np.pi), np.cos(2 * np.pi)], atol=1e-7)


@pytest.mark.parametrize("mass", [0.0, -1.0, [1.0, 0.0]])
def test_hamiltonian_mass_not_positive(mass):
    with pytest.raises(ValueError, match="mass must be > 0, got"):
        fastode.Hamiltonian("harmonic", mass=mass)


def test_linear_too_large_names_limit():
    with pytest.raises(ValueError, match="Linear is compiled for 1 <= d <= 8, got d = 9"):
        fastode.solve(fastode.Linear(-np.eye(9)), np.ones(9), (0.0, 1.0))


def test_parameter_rows_hint_to_tile_y0():
    with pytest.raises(ValueError, match=r"pass np.tile\(y0, \(5, 1\)\)"):
        fastode.solve(fastode.Oscillator(k=np.linspace(1.0, 2.0, 5)), [1.0, 0.0], (0.0, 1.0))


def test_t_eval_unsorted():
    with pytest.raises(ValueError, match=r"t_eval must be sorted .*increasing"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), t_eval=[0.5, 0.2])


def test_t_eval_out_of_span():
    with pytest.raises(ValueError, match=r"t_eval must lie within t_span .* 1.5 is outside"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), t_eval=[0.0, 1.5])


def test_t_eval_before_backward_span():
    with pytest.raises(ValueError, match=r"t_eval must lie within t_span .* -0.5 is outside"):
        fastode.solve(decay(), [1.0], (1.0, 0.0), t_eval=[1.0, -0.5])


def test_t_eval_not_finite():
    with pytest.raises(ValueError, match="t_eval must be finite"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), t_eval=[0.0, np.nan])


def test_t_eval_two_dimensional():
    with pytest.raises(ValueError, match=r"t_eval must be 1-D, got shape \(2, 1\)"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), t_eval=[[0.0], [1.0]])


def test_t_eval_complex():
    with pytest.raises(TypeError, match="t_eval must contain real numbers"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), t_eval=[0.5j])


# --- tolerances, dtype, max_steps, threads ---------------------------------------


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1e-6, np.nan, np.inf])
def test_tolerance_invalid(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), **{name: value})


@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_tolerance_not_a_number(name):
    with pytest.raises(TypeError, match=f"{name} must be a real number"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), **{name: "1e-6"})


def test_tolerances_both_zero():
    with pytest.raises(ValueError, match="rtol and atol cannot both be 0"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), rtol=0.0, atol=0.0)


def test_rtol_zero_raised_to_floor():
    with pytest.warns(UserWarning, match="rtol=0.0 is below 100"):
        sol = fastode.solve(decay(), [1.0], (0.0, 1.0), rtol=0.0, atol=1e-12)
    assert sol.success


def test_tolerances_ignored_by_fixed_step():
    """rtol = atol = 0 would be refused by an adaptive method; rk4 warns that
    they have no effect and runs."""
    with pytest.warns(UserWarning, match="rtol and atol have no effect with method='rk4'"):
        sol = fastode.solve(decay(), [1.0], (0.0, 1.0), method="rk4", dt=0.1, rtol=0.0,
                            atol=0.0)
    assert sol.success


def test_rtol_below_floor_warns():
    with pytest.warns(UserWarning, match="rtol=1e-20 is below 100 \\* machine epsilon of float64"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), rtol=1e-20)


def test_rtol_floor_ignored_by_fixed_step():
    """rk4 does not use rtol, so float32 with the default rtol does not warn."""
    sol = fastode.solve(decay(), np.ones(1, dtype=np.float32), (0.0, 1.0), method="rk4", dt=0.1)
    assert sol.y.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float16", "int32", np.complex128, "double precision"])
def test_dtype_invalid(dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), dtype=dtype)


@pytest.mark.parametrize("max_steps", [0, -5, 1.5, True, "100"])
def test_max_steps_invalid(max_steps):
    with pytest.raises(ValueError, match=re.escape(f"max_steps must be an integer >= 1, got {max_steps!r}")):
        fastode.solve(decay(), [1.0], (0.0, 1.0), max_steps=max_steps)


def test_max_steps_numpy_integer():
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS"):
        sol = fastode.solve(decay(), [1.0], (0.0, 1.0), max_steps=np.int64(3), method="rk4", dt=0.1)
    assert sol.status == Status.MAX_STEPS
    assert sol.stats["n_steps"] == 3


@pytest.mark.parametrize("threads", [0, -1, 2.0])
def test_threads_invalid(threads):
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        fastode.solve(decay(), [1.0], (0.0, 1.0), threads=threads)


# --- systems and their parameters ------------------------------------------------


@pytest.mark.parametrize("system", [lambda t, y: -y, "oscillator", None, np.eye(2)])
def test_not_a_system(system):
    with pytest.raises(TypeError, match="system must be a fastode system"):
        fastode.solve(system, [1.0, 0.0], (0.0, 1.0))


def test_oscillator_parameter_wrong_length():
    system = fastode.Oscillator(k=np.ones(3))
    with pytest.raises(ValueError, match=r"k has shape \(3,\); expected a scalar .* or \(4,\)"):
        fastode.solve(system, np.ones((4, 2)), (0.0, 1.0))


def test_oscillator_parameter_not_numbers():
    with pytest.raises(TypeError, match="omega must be a real number .* got 'fast'"):
        fastode.Oscillator(k=1.0, omega="fast")


def test_lorenz_parameter_wrong_length():
    system = fastode.Lorenz(rho=np.ones(3))
    with pytest.raises(ValueError, match=r"rho has shape \(3,\)"):
        fastode.solve(system, np.ones((2, 3)), (0.0, 1.0))


def test_hamiltonian_mass_wrong_length():
    system = fastode.Hamiltonian("pendulum", mass=np.ones(5))
    with pytest.raises(ValueError, match=r"mass has shape \(5,\)"):
        fastode.solve(system, np.ones((2, 2)), (0.0, 1.0))


@pytest.mark.parametrize("A", [np.ones(3), np.ones((2, 3)), np.ones((0, 0)), np.ones((2, 2, 3))])
def test_linear_matrix_wrong_shape(A):
    with pytest.raises(ValueError, match=r"A must have shape \(d, d\) or \(N, d, d\)"):
        fastode.Linear(A)


def test_linear_matrices_wrong_count():
    system = fastode.Linear(np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match=r"A has shape \(3, 2, 2\); expected \(2, 2\) .* or \(4, 2, 2\)"):
        fastode.solve(system, np.ones((4, 2)), (0.0, 1.0))


def test_linear_forcing_wrong_shape():
    with pytest.raises(ValueError, match=r"b must have shape \(2,\) or \(N, 2\) .* got \(3,\)"):
        fastode.Linear(np.eye(2), b=[1.0, 2.0, 3.0])


def test_linear_forcing_rows_wrong_count():
    system = fastode.Linear(np.eye(2), b=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"b has shape \(3, 2\)"):
        fastode.solve(system, np.ones((4, 2)), (0.0, 1.0))


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: fastode.Oscillator(k="stiff"), TypeError, "k must be a real number .* got 'stiff'"),
        (lambda: fastode.Oscillator(k=1.0, b=1j), TypeError, "b must be a real number"),
        (lambda: fastode.Lorenz(rho=np.ones((2, 2))), ValueError, r"rho must be a scalar or have shape \(N,\)"),
        (lambda: fastode.Hamiltonian("kepler", mass=None), TypeError, "mass must be a real number"),
        (lambda: fastode.Linear(np.eye(2), b=["a", "b"]), TypeError, "b must be real numbers"),
    ],
)
def test_parameters_checked_at_construction(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_hamiltonian_unknown_potential():
    with pytest.raises(ValueError, match="potential must be one of .* got 'morse'"):
        fastode.Hamiltonian("morse")


# --- Solution ------------------------------------------------------------------


def test_solution_shapes_final_only():
    sol = fastode.solve(oscillator(), np.ones((5, 2)), (0.0, 1.0))
    assert sol.t.shape == (1,)
    assert sol.t[0] == 1.0
    assert sol.y.shape == (5, 2)
    assert sol.status.shape == (5,)
    assert sol.status.dtype == np.int8
    assert sol.t_final.shape == (5,)
    assert set(sol.stats) == {"n_steps", "n_accepted", "n_rejected", "n_rhs"}
    for value in sol.stats.values():
        assert value.shape == (5,)
        assert value.dtype == np.int64


def test_solution_shapes_with_t_eval():
    t_eval = np.linspace(0.0, 1.0, 7)
    sol = fastode.solve(oscillator(), np.ones((5, 2)), (0.0, 1.0), t_eval=t_eval)
    assert np.array_equal(sol.t, t_eval)
    assert sol.y.shape == (5, 7, 2)
    single = fastode.solve(oscillator(), [1.0, 1.0], (0.0, 1.0), t_eval=t_eval)
    assert single.y.shape == (7, 2)


def test_solution_repr():
    k = np.array([1.0, np.nan, 1.0])
    sol = fastode.solve(fastode.Oscillator(k=k), np.ones((3, 2)), (0.0, 1.0), method="rk4", dt=0.1)
    text = repr(sol)
    assert text.startswith("Solution(method='rk4', n=3")
    assert "y: (3, 2) float64" in text
    assert "success=2" in text
    assert "non_finite=1" in text


def test_raise_on_failure_names_indices():
    k = np.ones(20)
    k[[3, 11]] = np.nan
    sol = fastode.solve(fastode.Oscillator(k=k), np.ones((20, 2)), (0.0, 1.0))
    assert not sol.success
    assert list(sol.failed()) == [3, 11]
    with pytest.raises(IntegrationError, match=r"2 of 20 trajectories failed \(indices 3, 11\)") as info:
        sol.raise_on_failure()
    assert "trajectory 3 NON_FINITE" in str(info.value)


def test_raise_on_failure_many_indices_truncated():
    k = np.full(30, np.nan)
    sol = fastode.solve(fastode.Oscillator(k=k), np.ones((30, 2)), (0.0, 1.0))
    with pytest.raises(IntegrationError, match=r"indices 0, 1, .*, 9 and 20 more"):
        sol.raise_on_failure()


def test_raise_on_failure_success_returns_solution():
    sol = fastode.solve(oscillator(), np.ones((3, 2)), (0.0, 1.0))
    assert sol.raise_on_failure() is sol


def test_raise_on_failure_single_trajectory():
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS"):
        sol = fastode.solve(decay(), [1.0], (0.0, 10.0), method="rk4", dt=0.1, max_steps=5)
    assert sol.status == Status.MAX_STEPS
    with pytest.raises(IntegrationError, match="1 of 1 trajectories failed .* MAX_STEPS: used max_steps"):
        sol.raise_on_failure()


def test_status_messages():
    for status in Status:
        assert isinstance(status.message, str)
        assert status.message
    assert "max_steps" in Status.MAX_STEPS.message


def test_solution_is_public_class():
    sol = fastode.solve(decay(), [1.0], (0.0, 1.0))
    assert isinstance(sol, Solution)
    assert sol.method == "dopri5"
