"""Cases of `fastode demo`: deep-learning uses of ODEs that have closed forms.

Each case integrates a batch with `fastode.solve`, times the call, and compares
the final states with the exact solution. Nothing here prints, because the
command line in `fastode.__main__` formats the results.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ._analysis import stability
from ._solve import solve
from ._systems import Hamiltonian, Linear, Oscillator
from ._validation import METHODS

__all__ = ["CaseResult", "run_cases"]

#: End of the integration span of every case.
T1 = 10.0
#: Tolerances of the adaptive cases.
RTOL, ATOL = 1e-8, 1e-10
#: Step of the fixed-step and symplectic cases: 500 steps over the span.
DT = 0.02


@dataclass
class CaseResult:
    """Outcome of one demo case.

    ``max_error`` is the maximum absolute difference between the computed and
    the exact final state, over trajectories and components. ``steps`` is the
    number of attempted steps summed over trajectories, and ``wall`` the time
    of the `fastode.solve` call alone, in seconds.
    """

    name: str
    method: str
    n: int
    max_error: float
    steps: int
    wall: float
    note: str = ""

    @property
    def steps_per_second(self) -> float:
        """Trajectory-steps per second of wall time."""
        return self.steps / self.wall if self.wall > 0 else float("nan")


def _timed_solve(system, y0, method, threads, **options):
    start = time.perf_counter()
    sol = solve(system, y0, (0.0, T1), method=method, threads=threads, **options)
    wall = time.perf_counter() - start
    sol.raise_on_failure()
    return sol, wall


def _method_options(method: str) -> dict:
    if METHODS[method] == "adaptive":
        return {"rtol": RTOL, "atol": ATOL}
    return {"dt": DT}


def _result(name, method, sol, wall, exact, note="") -> CaseResult:
    return CaseResult(
        name=name,
        method=method,
        n=len(sol.y),
        max_error=float(np.max(np.abs(sol.y - exact), initial=0.0)),
        steps=int(sol.stats["n_steps"].sum()),
        wall=wall,
        note=note,
    )


def damped_oscillator_exact(x0, v0, k, b, t, regime):
    """Return (x, v) at time t of x'' + b x' + k x = 0 from (x0, v0).

    ``regime`` is ``"under"`` (b² < 4k), ``"critical"`` (b² = 4k) or
    ``"over"`` (b² > 4k), chosen by the caller so that a discriminant that
    rounds to a tiny nonzero value does not pick the wrong formula.
    """
    alpha = -0.5 * b
    if regime == "critical":
        c = v0 - alpha * x0
        decay = np.exp(alpha * t)
        x = (x0 + c * t) * decay
        return x, (c + alpha * (x0 + c * t)) * decay
    if regime == "under":
        omega = np.sqrt(k - alpha**2)
        c = (v0 - alpha * x0) / omega
        cos, sin, decay = np.cos(omega * t), np.sin(omega * t), np.exp(alpha * t)
        x = decay * (x0 * cos + c * sin)
        v = decay * ((alpha * x0 + omega * c) * cos + (alpha * c - omega * x0) * sin)
        return x, v
    root = np.sqrt(alpha**2 - k)
    r1, r2 = alpha + root, alpha - root
    c1 = (v0 - r2 * x0) / (r1 - r2)
    c2 = (r1 * x0 - v0) / (r1 - r2)
    e1, e2 = np.exp(r1 * t), np.exp(r2 * t)
    return c1 * e1 + c2 * e2, c1 * r1 * e1 + c2 * r2 * e2


#: Damping coefficient range of each regime for k = 1, kept away from b = 2
#: in the under- and overdamped cases so their closed forms stay well conditioned.
DAMPING = {"under": (0.1, 1.5), "critical": (2.0, 2.0), "over": (2.5, 4.0)}
REGIME_NAMES = {
    "under": "underdamped",
    "critical": "critically damped",
    "over": "overdamped",
}


def damped_oscillators(n, threads, rng) -> Iterator[CaseResult]:
    """Integrate a continuous-time RNN unit h'' + b h' + h = 0 in each damping regime.

    The n trajectories are split into three near-equal groups, one `solve`
    call per regime, each with its own damping b per trajectory.
    """
    for regime, size in zip(DAMPING, _split(n, 3), strict=True):
        low, high = DAMPING[regime]
        b = rng.uniform(low, high, size)
        y0 = rng.uniform(-1.0, 1.0, (size, 2))
        sol, wall = _timed_solve(
            Oscillator(k=1.0, b=b), y0, "dopri5", threads, **_method_options("dopri5")
        )
        x, v = damped_oscillator_exact(y0[:, 0], y0[:, 1], 1.0, b, T1, regime)
        name = f"damped oscillator, {REGIME_NAMES[regime]}"
        yield _result(name, "dopri5", sol, wall, np.stack([x, v], axis=1))


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def neural_ode_hidden_state(n, threads, rng) -> CaseResult:
    """Integrate the linear Neural-ODE field dh/dt = -K h, K diagonal."""
    rates = np.array([0.25, 0.5, 1.0, 2.0])
    h0 = rng.normal(size=(n, rates.size))
    sol, wall = _timed_solve(
        Linear(-np.diag(rates)), h0, "tsit5", threads, **_method_options("tsit5")
    )
    exact = h0 * np.exp(-rates * T1)
    return _result("Neural ODE hidden state, dh/dt = -K h", "tsit5", sol, wall, exact)


def gradient_flow(n, threads, rng) -> CaseResult:
    """Integrate gradient flow dθ/dt = -k θ on L = k θ²/2, one k per trajectory."""
    k = rng.uniform(0.1, 1.0, n)
    theta0 = rng.normal(size=(n, 1))
    sol, wall = _timed_solve(
        Linear(-k.reshape(n, 1, 1)), theta0, "rk4", threads, **_method_options("rk4")
    )
    exact = theta0 * np.exp(-k * T1)[:, None]
    return _result("gradient flow, dtheta/dt = -k theta", "rk4", sol, wall, exact)


def harmonic_hamiltonian(n, threads, rng) -> CaseResult:
    """Integrate H = p²/2 + k q²/2 with yoshida4 and measure the energy drift."""
    k = rng.uniform(0.5, 2.0, n)
    # Radii from 0.5 keep the energy away from 0, so the relative drift is finite.
    radius, angle = rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 2 * np.pi, n)
    y0 = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    system = Hamiltonian("harmonic", k=k)
    sol, wall = _timed_solve(system, y0, "yoshida4", threads, dt=DT)
    omega = np.sqrt(k)
    q0, p0 = y0[:, 0], y0[:, 1]
    cos, sin = np.cos(omega * T1), np.sin(omega * T1)
    exact = np.stack([q0 * cos + p0 / omega * sin, p0 * cos - omega * q0 * sin], axis=1)
    energy0 = system.energy(y0)
    drift = np.max(np.abs(system.energy(sol.y) - energy0) / energy0)
    note = f"max relative energy drift {drift:.1e}"
    return _result(
        "harmonic Hamiltonian, H = p^2/2 + k q^2/2", "yoshida4", sol, wall, exact, note
    )


def normalizing_flow(n, threads, rng) -> CaseResult:
    """Integrate a linear continuous normalizing flow dz/dt = -k z with log p.

    The state is (z1, z2, log p) and d log p/dt = -tr(∂f/∂z) = 2k. The
    exact log p(t) is the density of N(0, e^(-2kt) I) at z(t), which the flow
    carries N(0, I) to, so the check does not reuse the equation being solved.
    """
    k = 0.5
    z0 = rng.normal(size=(n, 2))
    log_p0 = -np.log(2 * np.pi) - 0.5 * np.sum(z0**2, axis=1)
    A = np.diag([-k, -k, 0.0])
    y0 = np.column_stack([z0, log_p0])
    sol, wall = _timed_solve(
        Linear(A, b=[0.0, 0.0, 2 * k]),
        y0,
        "dopri5",
        threads,
        **_method_options("dopri5"),
    )
    z = z0 * np.exp(-k * T1)
    sigma2 = np.exp(-2 * k * T1)
    log_p = -np.log(2 * np.pi * sigma2) - 0.5 * np.sum(z**2, axis=1) / sigma2
    exact = np.column_stack([z, log_p])
    return _result("normalizing flow, z and log p", "dopri5", sol, wall, exact)


#: Two 2-D linear systems with eigenvalues -0.5 ± 2i and 0.1 ± 2i.
STABILITY_MATRICES = {
    "stable": np.array([[-0.5, 2.0], [-2.0, -0.5]]),
    "unstable": np.array([[0.1, 2.0], [-2.0, 0.1]]),
}


def linear_stability(n, threads, rng) -> Iterator[CaseResult]:
    """Integrate a stable and an unstable dx/dt = A x.

    The note gives the verdict of `fastode.stability` and compares the growth
    of |x| with e^(max Re λ t), where λ are the eigenvalues of A.
    """
    for label, A in STABILITY_MATRICES.items():
        x0 = rng.normal(size=(n, 2))
        sol, wall = _timed_solve(
            Linear(A), x0, "rk4", threads, **_method_options("rk4")
        )
        eigenvalues, vectors = np.linalg.eig(A)
        propagator = (vectors * np.exp(eigenvalues * T1)) @ np.linalg.inv(vectors)
        exact = x0 @ propagator.real.T
        # A is normal here, so |x(t)| = e^(Re λ t) |x0| exactly for every x0.
        # The Lyapunov solution needs SciPy, which `pip install .` does not bring.
        analysis = stability(A, lyapunov=False)
        abscissa = float(analysis.spectral_abscissa)
        predicted = np.exp(abscissa * T1)
        ratio = np.median(np.linalg.norm(sol.y, axis=1) / np.linalg.norm(x0, axis=1))
        trend = "grows" if ratio > 1 else "decays"
        note = (
            f"fastode.stability: {analysis.verdict}, max Re(lambda) = {abscissa:+.1f}; "
            f"median |x(t)|/|x0| = {ratio:.4g} ({trend}), "
            f"exp(max Re(lambda) t) = {predicted:.4g}"
        )
        name = f"{label} linear system, dx/dt = A x"
        yield _result(name, "rk4", sol, wall, exact, note)


def run_cases(
    n: int, threads: int | None = None, seed: int = 0
) -> Iterator[CaseResult]:
    """Run every demo case with n trajectories each and yield its result.

    The damped oscillator splits its n trajectories over the three regimes.
    """
    rng = np.random.default_rng(seed)
    yield from damped_oscillators(n, threads, rng)
    yield neural_ode_hidden_state(n, threads, rng)
    yield gradient_flow(n, threads, rng)
    yield harmonic_hamiltonian(n, threads, rng)
    yield normalizing_flow(n, threads, rng)
    yield from linear_stability(n, threads, rng)
