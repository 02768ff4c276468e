"""Analysis around the ODEs of deep learning: gradient flow, linear stability,
linearization at an equilibrium, and the ODE-residual loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core
from ._neural import MLP, _check_states, _reject_grad_tensor
from ._solve import solve
from ._systems import Linear, System
from ._user import UserSystem

__all__ = [
    "Stability",
    "gradient_flow",
    "linearize",
    "ode_residual",
    "regularized_loss",
    "stability",
]

VERDICTS = ("asymptotically stable", "marginal", "unstable")


def _square_matrices(name: str, value) -> np.ndarray:
    _reject_grad_tensor(name, value)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be real, got dtype {array.dtype}"
        raise TypeError(msg)
    if array.ndim not in (2, 3) or array.shape[-1] != array.shape[-2] or array.shape[-1] == 0:
        msg = f"{name} must have shape (d, d) or (N, d, d) with d >= 1, got {array.shape}"
        raise ValueError(msg)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        msg = f"{name} contains NaN or infinity"
        raise ValueError(msg)
    return array


# --- gradient flow ----------------------------------------------------------------


def gradient_flow(K, theta0, t_span, method="dopri5", **solve_kwargs):
    """Integrate the gradient flow dθ/dt = -∇L(θ) = -K θ of L = ½ θᵀ K θ.

    Parameters
    ----------
    K : array_like, shape (d, d) or (N, d, d)
        Symmetric positive semidefinite Hessian of the loss, shared or one
        per trajectory. Per-trajectory Hessians run as a `Linear` system, so
        d <= 8. A shared Hessian with d > 8 runs as a one-layer linear `MLP`,
        so d <= 4096.
    theta0 : array_like, shape (N, d) or (d,)
        Initial parameters.
    t_span : pair of float
        (t0, t1), in units of "learning rate × steps" of gradient descent.
    method, **solve_kwargs
        Passed to `fastode.solve`.

    Returns
    -------
    Solution
        θ(t) in ``y``; the exact solution is expm(-K (t - t0)) θ0.

    Raises
    ------
    ValueError
        When K is not symmetric or has a negative eigenvalue (relative
        tolerance 1e-10 of its largest |entry|), or when the shapes of K and
        theta0 do not match.
    """
    K = _square_matrices("K", K)
    scale = max(1.0, float(np.max(np.abs(K))))
    if not np.allclose(K, np.swapaxes(K, -1, -2), rtol=0.0, atol=1e-10 * scale):
        msg = "K must be symmetric (the Hessian of L = θᵀKθ / 2)"
        raise ValueError(msg)
    lowest = float(np.min(np.linalg.eigvalsh(K)))
    if lowest < -1e-10 * scale:
        msg = f"K must be positive semidefinite; its smallest eigenvalue is {lowest!r}"
        raise ValueError(msg)
    d = K.shape[-1]
    batch, _ = _check_states("theta0", theta0, d, finite=False)
    return solve(_gradient_system(K, len(batch)), theta0, t_span, method=method, **solve_kwargs)


def _gradient_system(K: np.ndarray, n: int) -> System:
    """Build the system dθ/dt = -K θ for n starting points."""
    d = K.shape[-1]
    if K.ndim == 3 and K.shape[0] not in (1, n):
        msg = (
            f"K has {K.shape[0]} matrices but theta0 has {n} rows; give one Hessian "
            f"of shape ({d}, {d}) shared by all starts or one per start, ({n}, {d}, {d})"
        )
        raise ValueError(msg)
    if d <= _core.MAX_LINEAR_DIM:
        return Linear(-K)
    if K.ndim == 3 and K.shape[0] > 1:
        msg = (
            f"K has shape {K.shape}; one Hessian per start is supported for d <= "
            f"{_core.MAX_LINEAR_DIM}, and a shared Hessian of shape ({d}, {d}) for larger d"
        )
        raise ValueError(msg)
    return MLP([-K.reshape(d, d)], activation="identity")


# --- stability -------------------------------------------------------------------


@dataclass(repr=False)
class Stability:
    """Linear stability of dx/dt = A x, for one matrix or a batch.

    Attributes
    ----------
    eigenvalues : ndarray, shape (d,) or (N, d)
        Complex eigenvalues of A, sorted by decreasing real part.
    spectral_abscissa : float or ndarray, shape (N,)
        max Re λ.
    verdict : str or ndarray of str, shape (N,)
        ``asymptotically stable`` (every Re λ < 0), ``marginal`` (max Re λ = 0
        within the tolerance and every eigenvalue on the imaginary axis
        semisimple, so solutions stay bounded) or ``unstable``.
    lyapunov : ndarray, shape (d, d) or (N, d, d)
        P solving Aᵀ P + P A = -Q where A is asymptotically stable; NaN
        elsewhere. P is symmetric positive definite, and V(x) = xᵀ P x
        decreases along every trajectory.
    jacobian : ndarray, optional
        The matrix A itself when it came from `linearize`.
    rhs : ndarray, optional
        f(y_eq) for `linearize`; near zero at a true equilibrium.
    """

    eigenvalues: np.ndarray
    spectral_abscissa: np.ndarray
    verdict: np.ndarray
    lyapunov: np.ndarray
    jacobian: np.ndarray | None = None
    rhs: np.ndarray | None = None

    @property
    def stable(self):
        """True where the verdict is ``asymptotically stable``."""
        return np.asarray(self.verdict) == VERDICTS[0]

    def __repr__(self):
        return f"Stability(verdict={self.verdict!r}, spectral_abscissa={self.spectral_abscissa!r})"


def _lyapunov_solver():
    try:
        from scipy.linalg import solve_continuous_lyapunov
    except ImportError as error:
        msg = (
            "fastode.stability needs SciPy for the Lyapunov equation; install it "
            "with `pip install scipy` (or pass lyapunov=False)"
        )
        raise ImportError(msg) from error
    return solve_continuous_lyapunov


def _imaginary_axis_defective(A: np.ndarray, eigenvalues: np.ndarray, tol: float) -> bool:
    """True when an eigenvalue with Re λ ≈ 0 has fewer eigenvectors than its
    multiplicity (a Jordan block), so solutions grow like a polynomial in t."""
    d = len(A)
    on_axis = eigenvalues[np.abs(eigenvalues.real) <= tol]
    seen = []
    for lam in on_axis:
        if any(abs(lam - other) <= np.sqrt(tol) for other in seen):
            continue
        seen.append(lam)
        multiplicity = int(np.sum(np.abs(eigenvalues - lam) <= np.sqrt(tol)))
        singular = np.linalg.svd(A - lam * np.eye(d), compute_uv=False)
        nullity = int(np.sum(singular <= np.sqrt(tol) * max(1.0, singular[0])))
        if nullity < multiplicity:
            return True
    return False


def _verdict(A, eigenvalues, tol) -> str:
    abscissa = float(np.max(eigenvalues.real))
    if abscissa < -tol:
        return VERDICTS[0]
    if abscissa > tol or _imaginary_axis_defective(A, eigenvalues, tol):
        return VERDICTS[2]
    return VERDICTS[1]


def _check_tol(tol) -> float:
    """Return ``tol`` as a float after checking that it is finite and >= 0.

    NaN or a negative tol would make the verdict wrong instead of raising.
    """
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.number)):
        msg = f"tol must be a real number >= 0, got {tol!r}"
        raise TypeError(msg)
    value = float(tol)
    if not np.isfinite(value) or value < 0:
        msg = f"tol must be finite and >= 0, got {tol!r}"
        raise ValueError(msg)
    return value


def _check_lyapunov_rhs(Q, d: int) -> np.ndarray:
    """Return Q after checking that it is a symmetric positive definite (d, d)
    matrix, the condition under which P is symmetric positive definite."""
    Q = _square_matrices("Q", Q)
    if Q.shape != (d, d):
        msg = f"Q must have shape ({d}, {d}), got {Q.shape}"
        raise ValueError(msg)
    scale = max(1.0, float(np.max(np.abs(Q))))
    if not np.allclose(Q, Q.T, rtol=0.0, atol=1e-12 * scale):
        msg = f"Q must be symmetric, got {Q.tolist()}"
        raise ValueError(msg)
    lowest = float(np.min(np.linalg.eigvalsh(Q)))
    if lowest <= 0:
        msg = f"Q must be positive definite; its smallest eigenvalue is {lowest!r}"
        raise ValueError(msg)
    return Q


def stability(A, Q=None, tol=1e-10, lyapunov=True) -> Stability:
    """Classify the equilibrium x = 0 of dx/dt = A x by the eigenvalues of A.

    Parameters
    ----------
    A : array_like, shape (d, d) or (N, d, d)
        One matrix or a batch.
    Q : array_like, shape (d, d), optional
        Symmetric positive definite right-hand side of the Lyapunov equation;
        the identity when omitted. Any other Q raises ValueError.
    tol : float
        An eigenvalue counts as on the imaginary axis when
        |Re λ| <= tol max(1, ‖A‖_max). Finite and >= 0.
    lyapunov : bool
        Solve Aᵀ P + P A = -Q for stable matrices (needs SciPy, imported only
        here).

    Returns
    -------
    Stability
        Fields are scalars and (d, d) arrays for one matrix, batched arrays
        for a batch.

    Notes
    -----
    Eigenvalues of a defective (non-normal) matrix are sensitive to rounding,
    so a Jordan block on the imaginary axis is detected with the tolerance
    sqrt(tol), and matrices within that distance of one may be misjudged.

    The tolerance scales with the largest entry, so in a matrix with widely
    separated rates a slow mode is judged against the fast one:
    diag(-1e8, 1e-3) counts as ``marginal`` at the default tol, because
    1e-3 <= 1e-10 * 1e8. Pass a smaller tol for such matrices.
    """
    A = _square_matrices("A", A)
    tol = _check_tol(tol)
    single = A.ndim == 2
    batch = A[None] if single else A
    n, d = batch.shape[0], batch.shape[-1]
    Q = np.eye(d) if Q is None else _check_lyapunov_rhs(Q, d)
    solve_lyapunov = _lyapunov_solver() if lyapunov else None

    eigenvalues = np.linalg.eigvals(batch)
    order = np.argsort(-eigenvalues.real, axis=1, kind="stable")
    eigenvalues = np.take_along_axis(eigenvalues, order, axis=1)
    verdicts = np.empty(n, dtype=object)
    P = np.full((n, d, d), np.nan)
    for i in range(n):
        scaled_tol = tol * max(1.0, float(np.max(np.abs(batch[i]))))
        verdicts[i] = _verdict(batch[i], eigenvalues[i], scaled_tol)
        if verdicts[i] == VERDICTS[0] and solve_lyapunov is not None:
            # solve_continuous_lyapunov(a, q) solves a X + X aᴴ = q.
            P[i] = solve_lyapunov(batch[i].T, -Q)
    abscissa = eigenvalues.real[:, 0]
    verdicts = verdicts.astype(str)
    if single:
        return Stability(eigenvalues[0], float(abscissa[0]), str(verdicts[0]), P[0])
    return Stability(eigenvalues, abscissa, verdicts, P)


def _finite_difference_jacobian(system: System, y: np.ndarray, t: float) -> np.ndarray:
    """Central differences of the system's NumPy rhs, step ∝ eps^(1/3).

    Each shifted point is its own batch of one, so a parameter array of one
    value broadcasts as it does in `solve` with one trajectory.
    """
    d = len(y)
    steps = np.cbrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(y))
    shifted = np.repeat(y[None], 2 * d, axis=0)
    shifted[np.arange(d), np.arange(d)] += steps
    shifted[d + np.arange(d), np.arange(d)] -= steps
    values = np.concatenate([system.rhs(t, point[None]) for point in shifted])
    return ((values[:d] - values[d:]) / (2.0 * steps[:, None])).T


def _check_shared_parameters(system: System) -> None:
    """Raise unless every parameter of ``system`` is shared by all trajectories,
    because `linearize` evaluates f at the one point y_eq."""
    per_trajectory = []
    if isinstance(system, Linear):
        per_trajectory = [
            (name, value.shape)
            for name, value in (("A", system.A), ("b", system.b))
            if value is not None and value.ndim == (3 if name == "A" else 2) and len(value) > 1
        ]
    elif isinstance(system, UserSystem):
        params = system.params
        if params is not None and params.ndim == 2 and len(params) > 1:
            per_trajectory = [("params", params.shape)]
    elif isinstance(getattr(system, "params", None), dict):
        # An array of one value is shared, as Linear's A of shape (1, d, d) is.
        per_trajectory = [
            (name, np.shape(value)) for name, value in system.params.items() if np.size(value) > 1
        ]
    if per_trajectory:
        name, shape = per_trajectory[0]
        msg = (
            f"linearize evaluates f at the single point y_eq, so every parameter must be "
            f"shared by all trajectories; {name} of {system!r} has shape {shape}, one value "
            f"per trajectory. Build the system from one trajectory's {name}"
        )
        raise ValueError(msg)


def linearize(system, y_eq, t=0.0, **stability_kwargs) -> Stability:
    """Linearize dy/dt = f(t, y) at an equilibrium y_eq and classify it.

    The Jacobian is exact for `Linear` (A) and `MLP` (the chain rule), and a
    central finite difference of ``system.rhs`` otherwise (error about
    1e-10 relative for smooth f).

    Parameters
    ----------
    system : fastode.System
    y_eq : array_like, shape (d,)
        The point; f(t, y_eq) is returned in ``rhs`` so a caller can check
        that it is an equilibrium, because the verdict describes one only there.
    t : float
        Time at which f is evaluated (for time-dependent systems).
    **stability_kwargs
        Passed to `stability`.

    Returns
    -------
    Stability
        With ``jacobian`` and ``rhs`` filled in.
    """
    if not isinstance(system, System):
        msg = f"system must be a fastode system, got {type(system).__name__}"
        raise TypeError(msg)
    y = _real_array("y_eq", y_eq)
    if y.shape != (system.dim,):
        msg = f"y_eq must have shape ({system.dim},), got {y.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(y)):
        msg = f"y_eq must be finite, got {y.tolist()}"
        raise ValueError(msg)
    _check_shared_parameters(system)
    if isinstance(system, Linear):
        jacobian = np.asarray(system.A, dtype=np.float64).reshape(system.dim, system.dim)
    elif isinstance(system, MLP):
        jacobian = system.jacobian(t, y[None])[0]
    else:
        jacobian = _finite_difference_jacobian(system, y, t)
    if not np.all(np.isfinite(jacobian)):
        msg = (
            f"the Jacobian of {system!r} at y_eq = {y.tolist()} contains NaN or "
            "infinity; check the system's parameters and that f is finite near y_eq"
        )
        raise ValueError(msg)
    report = stability(jacobian, **stability_kwargs)
    report.jacobian = jacobian
    report.rhs = system.rhs(t, y[None])[0]
    return report


# --- ODE-residual regularization -------------------------------------------------


def _real_array(name: str, value) -> np.ndarray:
    """Return ``value`` as a float64 array, raising TypeError for complex or
    non-numeric values instead of dropping an imaginary part."""
    _reject_grad_tensor(name, value)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must contain real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    return array.astype(np.float64)


def _derivative(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dy/dx at every grid point, second order on a non-uniform grid.

    Interior points use the derivative of the parabola through x[i-1], x[i]
    and x[i+1]. The ends use the one-sided parabola through the first or last
    three points.
    """
    h = np.diff(x)
    h0, h1 = h[:-1], h[1:]
    h0, h1 = h0.reshape(-1, *([1] * (y.ndim - 1))), h1.reshape(-1, *([1] * (y.ndim - 1)))
    dy = np.empty_like(y)
    dy[1:-1] = (
        -h1 / (h0 * (h0 + h1)) * y[:-2]
        + (h1 - h0) / (h0 * h1) * y[1:-1]
        + h0 / (h1 * (h0 + h1)) * y[2:]
    )
    a, b = h[0], h[1]
    dy[0] = -(2 * a + b) / (a * (a + b)) * y[0] + (a + b) / (a * b) * y[1] - a / (b * (a + b)) * y[2]
    a, b = h[-1], h[-2]
    dy[-1] = (2 * a + b) / (a * (a + b)) * y[-1] - (a + b) / (a * b) * y[-2] + a / (b * (a + b)) * y[-3]
    return dy


def ode_residual(y, x, f) -> float:
    """Mean squared residual of candidate values y(x) of the ODE y' = f(x, y).

    L_ODE = mean over grid points and components of (y'(x_i) - f(x_i, y_i))²,
    with y' from second-order finite differences of y on the grid, which may
    be non-uniform. It is the physics-informed penalty on a model's output.

    Parameters
    ----------
    y : array_like, shape (n,) or (n, d)
        Candidate values at the grid points, real. The computation runs in
        NumPy, so a PyTorch tensor that requires grad raises TypeError
        instead of returning a loss that no gradient passes through.
    x : array_like, shape (n,)
        Strictly increasing or strictly decreasing grid, n >= 3.
    f : callable
        f(x, y) for the whole grid at once, returning an array of the shape
        of ``y``.

    Returns
    -------
    float
        The mean squared residual. Even the exact solution gives a positive
        value of order (h² y''' / 6)² from the difference formula.
    """
    x = _real_array("x", x)
    y = _real_array("y", y)
    if x.ndim != 1 or len(x) < 3:
        msg = f"x must be a 1-D grid of at least 3 points, got shape {x.shape}"
        raise ValueError(msg)
    steps = np.diff(x)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        msg = "x must be strictly increasing or strictly decreasing"
        raise ValueError(msg)
    if y.ndim not in (1, 2) or len(y) != len(x):
        msg = f"y must have shape ({len(x)},) or ({len(x)}, d) to match x, got {y.shape}"
        raise ValueError(msg)
    if not callable(f):
        msg = f"f must be a callable f(x, y), got {type(f).__name__}"
        raise TypeError(msg)
    target = _real_array("f(x, y)", f(x, y))
    if target.shape != y.shape:
        msg = f"f(x, y) returned shape {target.shape}; expected the shape of y, {y.shape}"
        raise ValueError(msg)
    return float(np.mean(np.square(_derivative(y, x) - target)))


def regularized_loss(l_data, residual, lam):
    """L = L_data + λ L_ODE, the loss of ODE-residual regularization.

    ``lam`` must be a finite number >= 0. Works elementwise on arrays.
    """
    lam_value = np.asarray(lam)
    if lam_value.dtype.kind not in "biuf":
        msg = f"lam must be a real number >= 0, got {lam!r}"
        raise TypeError(msg)
    if not np.all(np.isfinite(lam_value)) or np.any(lam_value < 0):
        msg = f"lam must be finite and >= 0, got {lam!r}"
        raise ValueError(msg)
    return l_data + lam * residual
