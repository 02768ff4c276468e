"""Built-in systems against closed forms and scipy DOP853 at rtol 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import fastode

TIGHT = {"rtol": 1e-12, "atol": 1e-12}
# States at t_eval come from the dense output, which test_methods checks against
# the tolerance. Here they only show that the system is right, so they are
# compared at 1e-9, and final states at 1e-10.
DENSE_ATOL = 1e-9


def test_exponential_decay():
    k = np.array([0.5, 1.0, 3.0])
    t_eval = np.linspace(0.0, 2.0, 9)
    y0 = np.array([[1.0], [2.0], [-0.5]])
    system = fastode.Linear(-k[:, None, None])
    sol = fastode.solve(system, y0, (0.0, 2.0), t_eval=t_eval, **TIGHT)
    exact = y0[:, None, :] * np.exp(-k[:, None, None] * t_eval[None, :, None])
    assert sol.y.shape == (3, 9, 1)
    np.testing.assert_allclose(sol.y, exact, rtol=0, atol=DENSE_ATOL)


@pytest.mark.parametrize(
    ("k", "b"),
    [(4.0, 0.5), (4.0, 4.0), (4.0, 10.0)],
    ids=["underdamped", "critical", "overdamped"],
)
def test_damped_oscillator_regimes(k, b, oscillator_exact):
    t_eval = np.linspace(0.0, 5.0, 21)
    y0 = np.array([[1.0, 0.0], [0.0, 1.0], [-2.0, 3.0]])
    sol = fastode.solve(fastode.Oscillator(k=k, b=b), y0, (0.0, 5.0), t_eval=t_eval, **TIGHT)
    assert sol.success
    for row, (x0, v0) in enumerate(y0):
        exact = oscillator_exact(k, b, t_eval, x0, v0)
        np.testing.assert_allclose(sol.y[row], exact, rtol=0, atol=DENSE_ATOL)


def test_harmonic_oscillator():
    """x'' + w² x = 0 as Oscillator and as Hamiltonian('harmonic')."""
    w = np.array([0.5, 1.0, 2.0, 7.0])
    q0, p0 = 0.3, -1.2
    t1 = 6.0
    exact_q = q0 * np.cos(w * t1) + p0 / w * np.sin(w * t1)
    exact_p = -q0 * w * np.sin(w * t1) + p0 * np.cos(w * t1)
    y0 = np.tile([q0, p0], (4, 1))
    osc = fastode.solve(fastode.Oscillator(k=w**2), y0, (0.0, t1), **TIGHT)
    ham = fastode.solve(fastode.Hamiltonian("harmonic", k=w**2), y0, (0.0, t1), **TIGHT)
    for sol in (osc, ham):
        np.testing.assert_allclose(sol.y[:, 0], exact_q, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sol.y[:, 1], exact_p, rtol=0, atol=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8])
def test_linear_against_expm(d):
    rng = np.random.default_rng(d)
    # Eigenvalues scaled into the left half plane keep the solution O(1).
    A = rng.standard_normal((d, d)) / np.sqrt(d) - 0.5 * np.eye(d)
    y0 = rng.standard_normal((4, d))
    t_eval = np.array([0.0, 0.7, 1.5, 3.0])
    sol = fastode.solve(fastode.Linear(A), y0, (0.0, 3.0), t_eval=t_eval, **TIGHT)
    for j, t in enumerate(t_eval):
        exact = y0 @ expm(A * t).T
        np.testing.assert_allclose(sol.y[:, j], exact, rtol=0, atol=DENSE_ATOL)


def test_linear_with_forcing_per_trajectory():
    """dy/dt = A y + b has the fixed point -A⁻¹ b; solve y - y* with expm."""
    rng = np.random.default_rng(7)
    n, d = 5, 3
    A = rng.standard_normal((n, d, d)) / 2 - np.eye(d)
    b = rng.standard_normal((n, d))
    y0 = rng.standard_normal((n, d))
    t1 = 2.0
    sol = fastode.solve(fastode.Linear(A, b), y0, (0.0, t1), **TIGHT)
    for i in range(n):
        fixed = -np.linalg.solve(A[i], b[i])
        exact = fixed + expm(A[i] * t1) @ (y0[i] - fixed)
        np.testing.assert_allclose(sol.y[i], exact, rtol=0, atol=1e-9)


def test_lorenz_against_scipy(reference):
    t_eval = np.linspace(0.0, 2.0, 11)
    y0 = np.array([[1.0, 1.0, 20.0], [-5.0, 3.0, 15.0]])
    system = fastode.Lorenz(sigma=10.0, rho=28.0, beta=8.0 / 3.0)
    sol = fastode.solve(system, y0, (0.0, 2.0), t_eval=t_eval, **TIGHT)
    for row in range(2):
        expected = reference(system, y0[row], (0.0, 2.0), t_eval=t_eval)
        np.testing.assert_allclose(sol.y[row], expected, rtol=1e-8, atol=1e-8)


def test_lorenz_parameters_per_trajectory(reference):
    rho = np.array([10.0, 28.0, 99.96])
    sigma = np.array([10.0, 14.0, 10.0])
    y0 = np.array([1.0, 1.0, 1.0])
    sol = fastode.solve(fastode.Lorenz(sigma=sigma, rho=rho), np.tile(y0, (3, 1)), (0.0, 1.0), **TIGHT)
    for i in range(3):
        expected = reference(fastode.Lorenz(sigma=sigma[i], rho=rho[i]), y0, (0.0, 1.0))
        np.testing.assert_allclose(sol.y[i], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bs3"])
def test_driven_oscillator_against_scipy(method, reference):
    force = np.array([0.0, 1.0, 2.5])
    omega = np.array([1.0, 0.9, 3.0])
    system = fastode.Oscillator(k=1.0, b=0.2, force=force, omega=omega)
    y0 = np.tile([0.5, -0.1], (3, 1))
    sol = fastode.solve(system, y0, (0.0, 8.0), method=method, **TIGHT)
    for i in range(3):
        one = fastode.Oscillator(k=1.0, b=0.2, force=force[i], omega=omega[i])
        np.testing.assert_allclose(sol.y[i], reference(one, y0[i], (0.0, 8.0)), rtol=0, atol=1e-9)


def test_driven_oscillator_steady_state():
    """Long after the transient, x = F cos(w t - phase) / sqrt((k - w²)² + (b w)²)."""
    k, b, force, omega = 2.0, 1.0, 1.5, 1.3
    t1 = 60.0
    sol = fastode.solve(fastode.Oscillator(k=k, b=b, force=force, omega=omega), [1.0, 0.0], (0.0, t1), **TIGHT)
    amplitude = force / np.hypot(k - omega**2, b * omega)
    phase = np.arctan2(b * omega, k - omega**2)
    x = amplitude * np.cos(omega * t1 - phase)
    v = -amplitude * omega * np.sin(omega * t1 - phase)
    np.testing.assert_allclose(sol.y, [x, v], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("potential", "y0"),
    [
        ("pendulum", [2.5, 0.0]),
        ("kepler", [0.4, 0.0, 0.0, 2.0]),
        ("henon_heiles", [0.1, -0.2, 0.3, 0.25]),
    ],
)
def test_hamiltonian_potentials_against_scipy(potential, y0, reference):
    system = fastode.Hamiltonian(potential, mass=1.5, k=0.8)
    sol = fastode.solve(system, y0, (0.0, 5.0), **TIGHT)
    np.testing.assert_allclose(sol.y, reference(system, y0, (0.0, 5.0)), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bs3", "rk4"])
def test_backward_integration(method, oscillator_exact):
    """From t = 3 back to 0 recovers the initial state of the forward run."""
    k, b = 4.0, 0.5
    y3 = oscillator_exact(k, b, 3.0)
    t_eval = np.array([3.0, 2.0, 1.0, 0.0])
    options = {"dt": 0.001} if method == "rk4" else TIGHT
    sol = fastode.solve(
        fastode.Oscillator(k=k, b=b), y3, (3.0, 0.0), t_eval=t_eval, method=method, **options
    )
    assert sol.status == fastode.Status.SUCCESS
    assert sol.t_final == 0.0
    np.testing.assert_array_equal(sol.t, t_eval)
    np.testing.assert_allclose(sol.y, oscillator_exact(k, b, t_eval), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["verlet", "yoshida4"])
def test_symplectic_backward_reverses_forward(method):
    """Symmetric methods are time-reversible: forward then back returns y0."""
    system = fastode.Hamiltonian("pendulum")
    y0 = np.array([1.0, 0.5])
    forward = fastode.solve(system, y0, (0.0, 5.0), method=method, dt=0.01)
    back = fastode.solve(system, forward.y, (5.0, 0.0), method=method, dt=0.01)
    np.testing.assert_allclose(back.y, y0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bs3"])
def test_float32_adaptive(method, oscillator_exact):
    t_eval = np.linspace(0.0, 5.0, 6)
    y0 = np.array([[1.0, 0.0]], dtype=np.float32)
    sol = fastode.solve(
        fastode.Oscillator(k=4.0, b=0.5), y0, (0.0, 5.0), t_eval=t_eval, method=method,
        rtol=1e-4, atol=1e-6,
    )
    assert sol.y.dtype == np.float32
    assert sol.t.dtype == np.float32
    assert sol.success
    np.testing.assert_allclose(sol.y[0], oscillator_exact(4.0, 0.5, t_eval), rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", ["rk4", "yoshida4"])
def test_float32_fixed(method):
    system = fastode.Hamiltonian("harmonic")
    sol = fastode.solve(system, [1.0, 0.0], (0.0, 5.0), method=method, dt=0.01, dtype="float32")
    assert sol.y.dtype == np.float32
    np.testing.assert_allclose(sol.y, [np.cos(5.0), -np.sin(5.0)], rtol=0, atol=1e-5)


def test_dtype_float64_overrides_float32_input():
    y0 = np.array([1.0], dtype=np.float32)
    sol = fastode.solve(fastode.Linear([[-1.0]]), y0, (0.0, 1.0), dtype="float64", **TIGHT)
    assert sol.y.dtype == np.float64
    np.testing.assert_allclose(sol.y, [np.exp(-1.0)], rtol=1e-10)


def test_parameters_per_trajectory(oscillator_exact):
    """Each row of the batch uses its own k and b."""
    k = np.array([1.0, 4.0, 9.0, 4.0])
    b = np.array([0.1, 4.0, 10.0, 0.0])
    sol = fastode.solve(fastode.Oscillator(k=k, b=b), np.tile([1.0, 0.0], (4, 1)), (0.0, 2.0), **TIGHT)
    for i in range(4):
        np.testing.assert_allclose(sol.y[i], oscillator_exact(k[i], b[i], 2.0), rtol=0, atol=1e-10)


def test_rhs_reference_matches_closed_form():
    """The NumPy `rhs` used as the scipy reference is itself correct."""
    y = np.array([[1.0, 2.0]])
    osc = fastode.Oscillator(k=3.0, b=0.5, force=2.0, omega=1.0)
    np.testing.assert_allclose(osc.rhs(0.0, y), [[2.0, -3.0 - 1.0 + 2.0]])
    lorenz = fastode.Lorenz(sigma=10.0, rho=28.0, beta=2.0)
    np.testing.assert_allclose(lorenz.rhs(0.0, np.array([[1.0, 2.0, 3.0]])), [[10.0, 23.0, -4.0]])
    kepler = fastode.Hamiltonian("kepler", k=2.0)
    np.testing.assert_allclose(kepler.rhs(0.0, np.array([[0.0, 2.0, 1.0, 0.0]])), [[1.0, 0.0, 0.0, -0.5]])


def test_hamiltonian_energy_dense_per_row_params():
    """H = p^2 / (2 m) + k q^2 / 2 per trajectory, at every output time: the
    harmonic flow keeps it to yoshida4's error at dt = 0.01."""
    k, mass = np.array([1.0, 4.0]), np.array([1.0, 2.0])
    system = fastode.Hamiltonian("harmonic", k=k, mass=mass)
    y0 = np.array([[1.0, 0.0], [0.5, 0.3]])
    sol = fastode.solve(system, y0, (0.0, 10.0), t_eval=np.linspace(0.0, 10.0, 5),
                        method="yoshida4", dt=0.01)
    exact = 0.5 * y0[:, 1] ** 2 / mass + 0.5 * k * y0[:, 0] ** 2
    energy = system.energy(sol.y)
    assert energy.shape == (2, 5)
    np.testing.assert_allclose(energy, np.repeat(exact[:, None], 5, axis=1), rtol=1e-8)
    np.testing.assert_allclose(system.energy(y0), exact, rtol=1e-15)
