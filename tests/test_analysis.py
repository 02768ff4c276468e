"""Gradient flow, stability, linearization and the ODE-residual loss, checked
against closed forms; plus a quick run of every example script."""

import sys

import numpy as np
import pytest
import scipy.linalg
from example_runner import EXAMPLES, run_example

import fastode

TIGHT = {"method": "dopri5", "rtol": 1e-12, "atol": 1e-12}


def random_psd(rng, d, rank=None):
    factor = rng.normal(size=(d, rank or d))
    return factor @ factor.T / d


# --- gradient flow ------------------------------------------------------------------


def test_gradient_flow_shared_hessian_is_expm():
    rng = np.random.default_rng(1)
    K = random_psd(rng, 4)
    theta0 = rng.normal(size=(30, 4))
    sol = fastode.gradient_flow(K, theta0, (0.0, 2.0), t_eval=[0.0, 1.0, 2.0], **TIGHT)
    for j, t in enumerate([0.0, 1.0, 2.0]):
        expected = theta0 @ scipy.linalg.expm(-K * t).T
        np.testing.assert_allclose(sol.y[:, j], expected, rtol=0, atol=1e-10)


def test_gradient_flow_per_trajectory_hessians():
    rng = np.random.default_rng(2)
    K = np.stack([random_psd(rng, 3, rank=2) for _ in range(5)])
    theta0 = rng.normal(size=(5, 3))
    theta = fastode.gradient_flow(K, theta0, (0.0, 1.5), **TIGHT).y
    for n in range(5):
        expected = scipy.linalg.expm(-1.5 * K[n]) @ theta0[n]
        np.testing.assert_allclose(theta[n], expected, rtol=0, atol=1e-10)


def test_gradient_flow_large_shared_hessian_is_expm():
    # d = 40 is past the compiled Linear system, so it runs as a linear MLP.
    rng = np.random.default_rng(3)
    K = random_psd(rng, 40)
    theta0 = rng.normal(size=(6, 40))
    theta = fastode.gradient_flow(K, theta0, (0.0, 1.0), **TIGHT).y
    np.testing.assert_allclose(theta, theta0 @ scipy.linalg.expm(-K).T, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("K", "theta0", "match"),
    [
        (np.eye(2), np.ones((3, 3)), r"theta0 must have shape \(2,\) or \(N, 2\), got \(3, 3\)"),
        (np.stack([np.eye(2)] * 3), np.ones((4, 2)), "K has 3 matrices but theta0 has 4 rows"),
        (np.stack([np.eye(9)] * 2), np.ones((2, 9)), r"K has shape \(2, 9, 9\)"),
    ],
)
def test_gradient_flow_messages_name_arguments(K, theta0, match):
    with pytest.raises(ValueError, match=match):
        fastode.gradient_flow(K, theta0, (0.0, 1.0))


def test_gradient_flow_scalar_decay():
    sol = fastode.gradient_flow([[0.5]], [2.0], (0.0, 4.0), method="rk4", dt=0.01)
    assert sol.y[0] == pytest.approx(2.0 * np.exp(-2.0), rel=1e-9)


@pytest.mark.parametrize(
    ("K", "match"),
    [
        ([[1.0, 2.0], [0.0, 1.0]], "symmetric"),
        ([[1.0, 0.0], [0.0, -1.0]], "semidefinite"),
        ([1.0, 2.0], "shape"),
    ],
)
def test_gradient_flow_rejects_bad_hessian(K, match):
    with pytest.raises(ValueError, match=match):
        fastode.gradient_flow(K, [1.0, 1.0], (0.0, 1.0))


# --- stability --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("A", "verdict", "abscissa"),
    [
        ([[-1.0, 0.0], [0.0, -2.0]], "asymptotically stable", -1.0),
        ([[0.0, 1.0], [-4.0, -0.4]], "asymptotically stable", -0.2),
        ([[0.0, 1.0], [-1.0, 0.0]], "marginal", 0.0),
        ([[0.0, 0.0], [0.0, 0.0]], "marginal", 0.0),
        ([[0.0, 1.0], [0.0, 0.0]], "unstable", 0.0),
        ([[1.0, 0.0], [0.0, -1.0]], "unstable", 1.0),
        ([[0.1, 1.0], [-1.0, 0.1]], "unstable", 0.1),
    ],
)
def test_stability_verdicts(A, verdict, abscissa):
    report = fastode.stability(A)
    assert report.verdict == verdict
    assert report.spectral_abscissa == pytest.approx(abscissa, abs=1e-12)


def test_stability_lyapunov_by_substitution():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 5)) - 4.0 * np.eye(5)
    Q = random_psd(rng, 5) + np.eye(5)
    report = fastode.stability(A, Q=Q)
    P = report.lyapunov
    assert report.verdict == "asymptotically stable"
    np.testing.assert_allclose(A.T @ P + P @ A, -Q, atol=1e-12)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    assert np.min(np.linalg.eigvalsh(P)) > 0


def test_stability_batch():
    A = np.array([[[-1.0, 0.0], [0.0, -3.0]], [[0.0, 1.0], [-1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]]])
    report = fastode.stability(A)
    assert list(report.verdict) == ["asymptotically stable", "marginal", "unstable"]
    np.testing.assert_allclose(report.spectral_abscissa, [-1.0, 0.0, 2.0], atol=1e-12)
    assert report.eigenvalues.shape == (3, 2)
    assert report.lyapunov.shape == (3, 2, 2)
    np.testing.assert_allclose(report.lyapunov[0], np.diag([0.5, 1.0 / 6.0]), atol=1e-14)
    assert np.all(np.isnan(report.lyapunov[1:]))
    np.testing.assert_array_equal(report.stable, [True, False, False])


def test_stability_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.linalg", None)
    with pytest.raises(ImportError, match="pip install scipy"):
        fastode.stability([[-1.0]])
    assert fastode.stability([[-1.0]], lyapunov=False).verdict == "asymptotically stable"


@pytest.mark.parametrize(
    ("A", "error"),
    [([[1.0, 2.0]], ValueError), ([[np.nan]], ValueError), ([[1j]], TypeError)],
)
def test_stability_rejects_bad_matrix(A, error):
    with pytest.raises(error, match="A"):
        fastode.stability(A)


# --- linearization -----------------------------------------------------------------


def test_linearize_oscillator_by_differences():
    k, b = 4.0, 0.5
    report = fastode.linearize(fastode.Oscillator(k=k, b=b), [0.0, 0.0])
    np.testing.assert_allclose(report.jacobian, [[0.0, 1.0], [-k, -b]], atol=1e-9)
    assert report.verdict == "asymptotically stable"
    np.testing.assert_allclose(report.rhs, [0.0, 0.0])


def test_linearize_pendulum_equilibria():
    pendulum = fastode.Hamiltonian("pendulum", k=2.0)
    bottom = fastode.linearize(pendulum, [0.0, 0.0])
    top = fastode.linearize(pendulum, [np.pi, 0.0])
    assert bottom.verdict == "marginal"
    np.testing.assert_allclose(np.sort(bottom.eigenvalues.imag), [-np.sqrt(2.0), np.sqrt(2.0)], atol=1e-8)
    assert top.verdict == "unstable"
    assert top.spectral_abscissa == pytest.approx(np.sqrt(2.0), rel=1e-8)


def test_linearize_lorenz_origin():
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0
    report = fastode.linearize(fastode.Lorenz(sigma, rho, beta), [0.0, 0.0, 0.0])
    # λ = -β and the roots of λ² + (σ + 1) λ + σ (1 - ρ) = 0.
    roots = np.roots([1.0, sigma + 1.0, sigma * (1.0 - rho)])
    expected = np.sort(np.concatenate([roots, [-beta]]))
    np.testing.assert_allclose(np.sort(report.eigenvalues.real), expected, rtol=1e-8)
    assert report.verdict == "unstable"


def test_linearize_exact_for_linear_and_mlp():
    A = np.array([[-1.0, 2.0], [0.0, -3.0]])
    report = fastode.linearize(fastode.Linear(A), [0.0, 0.0])
    np.testing.assert_array_equal(report.jacobian, A)

    mlp = fastode.MLP([-np.eye(2), np.eye(2)], [np.zeros(2), np.zeros(2)], activation="tanh")
    report = fastode.linearize(mlp, [0.0, 0.0])
    np.testing.assert_allclose(report.jacobian, -np.eye(2), atol=1e-15)
    assert report.verdict == "asymptotically stable"


def test_linearize_rejects_wrong_point():
    with pytest.raises(ValueError, match="y_eq"):
        fastode.linearize(fastode.Oscillator(k=1.0), [0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("system", "match"),
    [
        (fastode.Linear(np.stack([-np.eye(2)] * 3)), r"A of .* has shape \(3, 2, 2\)"),
        (fastode.Linear(-np.eye(2), b=np.ones((3, 2))), r"b of .* has shape \(3, 2\)"),
        (fastode.Oscillator(k=[1.0, 2.0, 3.0]), r"k of .* has shape \(3,\)"),
    ],
)
def test_linearize_rejects_per_trajectory_parameters(system, match):
    # The message names the caller's parameter, not a batch used inside.
    with pytest.raises(ValueError, match=match) as error:
        fastode.linearize(system, [0.0, 0.0])
    assert "batch" not in str(error.value)


def test_linearize_single_matrix_batch():
    A = np.array([[[0.0, 1.0], [-2.0, -0.5]]])
    report = fastode.linearize(fastode.Linear(A), [0.0, 0.0])
    np.testing.assert_array_equal(report.jacobian, A[0])
    assert report.verdict == "asymptotically stable"


# --- ODE residual ------------------------------------------------------------------


def decay(k):
    return lambda x, y: -k * y


@pytest.mark.parametrize("grid", ["uniform", "non-uniform"])
def test_ode_residual_exact_solution_small(grid):
    k = 1.3
    x = np.linspace(0.0, 2.0, 401)
    if grid == "non-uniform":
        x = 2.0 * (x / 2.0) ** 1.5
    assert fastode.ode_residual(np.exp(-k * x), x, decay(k)) < 1e-8


def test_ode_residual_second_order():
    k = 1.0
    coarse = np.linspace(0.0, 1.0, 101)
    fine = np.linspace(0.0, 1.0, 201)
    ratio = fastode.ode_residual(np.exp(-k * coarse), coarse, decay(k)) / fastode.ode_residual(
        np.exp(-k * fine), fine, decay(k)
    )
    # The derivative error is O(h²), so its mean square falls by 2⁴ = 16.
    assert ratio == pytest.approx(16.0, rel=0.1)


def test_ode_residual_perturbation_predictable():
    # y = e^(-kx) + ε sin(ωx) leaves the residual ε (ω cos ωx + k sin ωx).
    k, eps, omega = 0.5, 1e-2, 3.0
    x = np.linspace(0.0, 4.0, 2001)
    y = np.exp(-k * x) + eps * np.sin(omega * x)
    expected = np.mean((eps * (omega * np.cos(omega * x) + k * np.sin(omega * x))) ** 2)
    assert fastode.ode_residual(y, x, decay(k)) == pytest.approx(expected, rel=1e-4)


def test_ode_residual_vector_and_decreasing_grid():
    x = np.linspace(1.0, 0.0, 301)
    y = np.stack([np.exp(-x), np.exp(-2.0 * x)], axis=1)
    rates = np.array([1.0, 2.0])
    assert fastode.ode_residual(y, x, lambda x, y: -rates * y) < 1e-8


@pytest.mark.parametrize(
    ("y", "x", "f", "error", "match"),
    [
        (np.ones(2), np.arange(2.0), decay(1.0), ValueError, "at least 3"),
        (np.ones(3), np.array([0.0, 1.0, 0.5]), decay(1.0), ValueError, "strictly"),
        (np.ones(4), np.arange(3.0), decay(1.0), ValueError, "match x"),
        (np.ones(3), np.arange(3.0), None, TypeError, "callable"),
        (np.ones(3), np.arange(3.0), lambda x, y: np.ones(2), ValueError, "shape"),
    ],
)
def test_ode_residual_rejects_bad_input(y, x, f, error, match):
    with pytest.raises(error, match=match):
        fastode.ode_residual(y, x, f)


def test_regularized_loss():
    assert fastode.regularized_loss(0.5, 2.0, 0.25) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lam"):
        fastode.regularized_loss(0.5, 2.0, -1.0)


# --- examples --------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("[!_]*.py")))
def test_example_runs(script, tmp_path):
    result = run_example(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "error" in result.stdout


def test_run_examples_counts_failures(tmp_path):
    from fastode._examples import run_examples

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "_plot.py").write_text("")
    (scripts / "good.py").write_text("import fastode, _plot\nprint('max error 0')\n")
    (scripts / "bad.py").write_text("raise SystemExit(3)\n")
    assert run_examples(output_dir=tmp_path, directory=scripts) == 1


def test_demo_examples_flag_runs_examples(monkeypatch):
    from fastode import __main__, _examples

    assert (_examples.examples_dir() / "neural_ode_decay.py").is_file()
    calls = []
    monkeypatch.setattr(_examples, "run_examples", lambda: calls.append(1) or 0)
    assert __main__.main(["demo", "--examples"]) == 0
    assert calls == [1]
