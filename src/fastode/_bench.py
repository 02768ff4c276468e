"""Timings behind ``fastode bench``: fastode against NumPy and other ODE packages.

Every workload is run by fastode's backends and by each peer that imports,
on the same initial states, and every entry's final states are checked
against a closed form or a tight-tolerance reference, so no entry wins by
being wrong. This module returns records and never prints; the command line
in ``__main__`` formats them.

Timing: each entry runs once untimed (compilation and warm-up, reported as
``warmup_seconds``), then ``repeats`` times, and the minimum is kept.
Memory: ``traced_bytes_per_trajectory`` is the peak of ``tracemalloc`` during
one extra fastode call divided by N. It counts NumPy buffers (inputs copied
by ``solve``, the result arrays, the step statistics) and Python objects, but
not scratch memory that the C++ core allocates outside NumPy.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from . import _roofline
from ._bench_peers import (
    diffrax_run,
    jax_lorenz,
    jax_mlp,
    jax_oscillator,
    torch_lorenz,
    torch_mlp,
    torch_oscillator,
    torchdiffeq_run,
    torchode_run,
)
from ._core import symplectic_weights, tableaus
from ._cupy import gpu_info
from ._neural import MLP, neural_ode
from ._solve import solve
from ._systems import Hamiltonian, Lorenz, Oscillator
from ._user import ode

#: Batch sizes of ``--full``, before the memory cap.
FULL_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
#: Trajectories of the default quick run.
QUICK_N = 10_000
#: Trajectories of the hidden ``--quick-test`` run of the test suite.
TEST_N = 200
#: Trajectories whose reference solution is computed for the Lorenz and MLP
#: workloads, spread evenly over the batch.
CHECKED = 32
#: Trajectories that the scipy loop integrates (the checked ones); its time
#: is scaled to the batch.
SCIPY_SAMPLE = CHECKED
#: Max trajectories that a torchdiffeq, torchode or diffrax entry
#: integrates. They are one to three orders of magnitude slower than fastode
#: here, so larger batches are timed on an evenly spread sample and the time
#: is scaled to N.
PEER_SAMPLE = 2_000
#: Entries whose warm-up run takes longer than this (seconds) are timed once.
SLOW_WARMUP = 1.0


@dataclass
class Record:
    """One timed entry: a workload run by one backend or peer at one batch size."""

    workload: str
    peer: str
    n: int
    dtype: str
    seconds: float
    warmup_seconds: float
    steps_per_second: float
    max_error: float
    error_bound: float
    ratio_to_numpy: float | None = None
    traced_bytes_per_trajectory: float | None = None
    flops_per_step: float | None = None
    fraction_of_peak: float | None = None
    note: str = ""


@dataclass
class Skip:
    """A peer that did not run, and why."""

    peer: str
    reason: str


@dataclass
class Entry:
    """A callable that integrates the whole batch (or a sample of it)."""

    peer: str
    run: Callable[[], np.ndarray]
    rows: np.ndarray | None = None  # rows of the batch that run() returns
    scale: float = 1.0  # multiplies the measured time (sampled peers)
    note: str = ""
    traced: bool = False  # measure tracemalloc peak (fastode entries)
    gpu: Callable[[], np.ndarray] | None = None  # the same solve with backend="cupy"


@dataclass
class Workload:
    """A problem, its error check and the entries that solve it."""

    name: str
    dtype: str
    steps_per_trajectory: float
    error_bound: float
    check: Callable[[np.ndarray, np.ndarray | None], float]
    entries: list[Entry] = field(default_factory=list)


# ---------------------------------------------------------------- peers


def _optional(name: str):
    """Import ``name`` or return the reason it is unusable."""
    try:
        return importlib.import_module(name), None
    # A broken install can raise more than ImportError (missing shared
    # libraries, CUDA errors); any of them means the peer is skipped.
    except Exception as error:  # noqa: BLE001
        return None, f"{name} not importable ({type(error).__name__}: {error})"


def numpy_rk4(f, y0: np.ndarray, t1: float, dt: float) -> np.ndarray:
    """Classic RK4 vectorized over the batch, fixed step dt, final state only."""
    y = y0.copy()
    t = 0.0
    for _ in range(round(t1 / dt)):
        k1 = f(t, y)
        k2 = f(t + 0.5 * dt, y + 0.5 * dt * k1)
        k3 = f(t + 0.5 * dt, y + 0.5 * dt * k2)
        k4 = f(t + dt, y + dt * k3)
        y = y + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t += dt
    return y


def numpy_adaptive(f, y0, t1, method, rtol, atol, max_steps=100_000):
    """Embedded explicit RK vectorized over the batch with one shared step size.

    The error norm is the maximum over the batch of the per-trajectory RMS
    norm, so the trajectory with the largest error estimate sets the step of
    all of them. torchdiffeq also takes one step for the whole batch (with
    the RMS norm over all of its components). Both take more steps than
    fastode's per-trajectory control, and their steps/s counts fastode's.
    """
    table = tableaus()[method]
    a, b, c = np.array(table["a"]), np.array(table["b"]), np.array(table["c"])
    b_err = np.array(table["b_err"])
    exponent = -1.0 / (table["error_order"] + 1)
    y, t, dt = y0.copy(), 0.0, 1e-3 * t1
    for _ in range(max_steps):
        if t >= t1:
            return y
        dt = min(dt, t1 - t)
        k = []
        for i in range(len(c)):
            stage = y + dt * sum(a[i, j] * k[j] for j in range(i) if a[i, j] != 0.0)
            k.append(f(t + c[i] * dt, stage))
        y_new = y + dt * sum(bi * ki for bi, ki in zip(b, k, strict=True) if bi != 0.0)
        err = dt * sum(ei * ki for ei, ki in zip(b_err, k, strict=True) if ei != 0.0)
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        norm = float(np.max(np.sqrt(np.mean((err / scale) ** 2, axis=1))))
        if norm <= 1.0:
            y, t = y_new, t + dt
        dt *= min(5.0, max(0.2, 0.9 * (norm + 1e-300) ** exponent))
    raise RuntimeError(f"NumPy {method} exceeded {max_steps} steps")


def _scipy_loop(rhs_one, y0, t1, rows, method, rtol, atol):
    """Call scipy's solve_ivp once per sampled trajectory."""
    from scipy.integrate import solve_ivp

    out = np.empty((len(rows), y0.shape[1]))
    for slot, i in enumerate(rows):
        sol = solve_ivp(
            rhs_one(i), (0.0, t1), y0[i], method=method, rtol=rtol, atol=atol
        )
        out[slot] = sol.y[:, -1]
    return out


def _sample_rows(n: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))


def _peer_rows(n: int) -> np.ndarray | None:
    """Rows a torch or JAX peer integrates (the checked ones included), or None for all."""
    if n <= PEER_SAMPLE:
        return None
    return np.union1d(_sample_rows(n, PEER_SAMPLE), _sample_rows(n, CHECKED))


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def _sampled(entry: Entry, rows: np.ndarray | None, n: int) -> Entry:
    if rows is not None:
        entry.rows = rows
        entry.scale = n / len(rows)
        timed = f"timed on {len(rows)} trajectories, scaled to N"
        entry.note = f"{entry.note}; {timed}" if entry.note else timed
    return entry


# ------------------------------------------------------------ workloads


K, B, T_OSC = 1.0, 0.5, 10.0


def oscillator_exact(y0: np.ndarray) -> np.ndarray:
    """Exact state at T_OSC of x'' + B x' + K x = 0 (underdamped) from y0."""
    alpha = -0.5 * B
    omega = math.sqrt(K - alpha**2)
    x0, v0 = y0[:, 0], y0[:, 1]
    c = (v0 - alpha * x0) / omega
    cos, sin, decay = (
        math.cos(omega * T_OSC),
        math.sin(omega * T_OSC),
        math.exp(alpha * T_OSC),
    )
    x = decay * (x0 * cos + c * sin)
    v = decay * ((alpha * x0 + omega * c) * cos + (alpha * c - omega * x0) * sin)
    return np.stack([x, v], axis=1)


def _oscillator_field(t, y):
    return np.stack([y[:, 1], -K * y[:, 0] - B * y[:, 1]], axis=1)


def _oscillator_rhs(t, y, dy, p):
    # fastode.ode form of the oscillator for the numba backend, p = (k, b).
    dy[0] = y[1]
    dy[1] = -p[0] * y[0] - p[1] * y[1]


def _lorenz_rhs(t, y, dy, p):
    # fastode.ode form of the Lorenz system for the numba backend, p = (rho,).
    dy[0] = 10.0 * (y[1] - y[0])
    dy[1] = y[0] * (p[0] - y[2]) - y[1]
    dy[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]


def _add_numba_backend(work, skips, rhs, dim, params, y0, t1, threads, **solve_kwargs):
    """Add the same solve on fastode's numba backend, with rhs as a fastode.ode."""
    _, reason = _optional("numba")
    if reason is not None:
        skips.append(Skip("fastode numba", reason))
        return
    system = ode(rhs, dim=dim, n_params=np.shape(params)[-1], params=params)

    def run():
        return solve(system, y0, (0.0, t1), threads=threads, **solve_kwargs).y

    note = "Python rhs compiled by Numba; warm-up includes compilation"
    work.entries.insert(1, Entry("fastode numba", run, note=note))


def _closed_form_check(exact: np.ndarray):
    def check(y, rows):
        target = exact if rows is None else exact[rows]
        return float(np.max(np.abs(np.asarray(y, dtype=np.float64) - target)))

    return check


def oscillator_rk4_step(x, v, k, b, dt):
    """Advance x'' + b x' + k x = 0 by one classic RK4 step of dt.

    Both oscillator baselines run this arithmetic. x and v are NumPy arrays
    in `numpy_oscillator_rk4` and scalars inside the Numba loop, which
    inlines this function.
    """
    half = 0.5 * dt
    a1 = -k * x - b * v
    x2, v2 = x + half * v, v + half * a1
    a2 = -k * x2 - b * v2
    x3, v3 = x + half * v2, v + half * a2
    a3 = -k * x3 - b * v3
    x4, v4 = x + dt * v3, v + dt * a3
    a4 = -k * x4 - b * v4
    x = x + dt / 6.0 * (v + 2.0 * v2 + 2.0 * v3 + v4)
    v = v + dt / 6.0 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
    return x, v


def numpy_oscillator_rk4(y0: np.ndarray, dt: float, n_steps: int) -> np.ndarray:
    """Classic RK4 of the oscillator (K, B), one NumPy expression per stage.

    The NumPy baseline of the oscillator rk4 workload, here and in
    benchmarks/. x and v are separate arrays, which saves the stacking of a
    generic batched field. NumPy runs elementwise operations on one thread.
    """
    x, v = y0[:, 0].copy(), y0[:, 1].copy()
    for _ in range(n_steps):
        x, v = oscillator_rk4_step(x, v, K, B, dt)
    return np.stack([x, v], axis=1)


@functools.cache
def _numba_oscillator_kernel():
    import numba

    step = numba.njit(inline="always", fastmath=True)(oscillator_rk4_step)

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def kernel(y0, k, b, dt, n_steps, y):
        # One trajectory per prange iteration, its state in local scalars so
        # that the compiler keeps it in registers for all n_steps steps.
        for i in numba.prange(y0.shape[0]):
            x, v = y0[i, 0], y0[i, 1]
            for _ in range(n_steps):
                x, v = step(x, v, k, b, dt)
            y[i, 0] = x
            y[i, 1] = v

    return numba, kernel


def numba_oscillator_rk4(y0, dt, n_steps, threads=None) -> np.ndarray:
    """Classic RK4 of the oscillator (K, B) in a hand-written Numba ``prange`` loop.

    The Numba baseline of the oscillator rk4 workload, here and in
    benchmarks/. ``threads`` defaults to Numba's thread count. The first
    call compiles. Raises ImportError when Numba is not installed.
    """
    numba, kernel = _numba_oscillator_kernel()
    limit = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(min(threads or limit, limit))
    y = np.empty_like(y0)
    kernel(y0, K, B, dt, n_steps, y)
    return y


def oscillator_rk4(n, threads, skips, seed=0) -> Workload:
    dt, n_steps = 0.01, 1000
    y0 = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))
    # RK4 at dt 0.01 reaches about 1e-10 here; a wrong stage gives far more.
    work = Workload(
        "oscillator rk4 dt 0.01",
        "float64",
        n_steps,
        1e-8,
        _closed_form_check(oscillator_exact(y0)),
    )
    system = Oscillator(k=K, b=B)
    work.entries.append(_fastode_entry(system, y0, T_OSC, threads, method="rk4", dt=dt))
    _add_numba_backend(
        work, skips, _oscillator_rhs, 2, [K, B], y0, T_OSC, threads, method="rk4", dt=dt
    )
    work.entries.append(
        Entry(
            "NumPy RK4",
            lambda: numpy_oscillator_rk4(y0, dt, n_steps),
            note="1 thread",
        )
    )
    _, reason = _optional("numba")
    if reason is not None:
        skips.append(Skip("Numba prange loop", reason))
    else:
        work.entries.append(
            Entry(
                "Numba prange loop",
                lambda: numba_oscillator_rk4(y0, dt, n_steps, threads),
            )
        )
    _add_torch_and_jax(
        work, skips, y0, T_OSC, threads, "rk4", _oscillator_fields(), dt=dt
    )
    return work


def _oscillator_fields() -> dict:
    return {
        "torch": lambda rows: torch_oscillator(K, B),
        "jax": lambda: jax_oscillator(K, B),
    }


def oscillator_dopri5(n, threads, skips, seed=0) -> Workload:
    rtol, atol = 1e-6, 1e-9
    y0 = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))
    system = Oscillator(k=K, b=B)
    fastode_entry = _fastode_entry(
        system, y0, T_OSC, threads, method="dopri5", rtol=rtol, atol=atol
    )
    steps = _mean_steps(system, y0, T_OSC, method="dopri5", rtol=rtol, atol=atol)
    # dopri5 at rtol 1e-6 ends about 3e-7 from the closed form on this problem.
    work = Workload(
        "oscillator dopri5 rtol 1e-6",
        "float64",
        steps,
        1e-5,
        _closed_form_check(oscillator_exact(y0)),
    )
    work.entries.append(fastode_entry)
    work.entries.append(
        Entry(
            "NumPy dopri5",
            lambda: numpy_adaptive(_oscillator_field, y0, T_OSC, "dopri5", rtol, atol),
            note="1 thread, one step size for the batch",
        )
    )

    def field_one(i):
        return lambda t, y: [y[1], -K * y[0] - B * y[1]]

    _add_scipy(work, skips, field_one, y0, T_OSC, "RK45", rtol, atol)
    _add_torch_and_jax(
        work,
        skips,
        y0,
        T_OSC,
        threads,
        "dopri5",
        _oscillator_fields(),
        rtol=rtol,
        atol=atol,
    )
    return work


def _lorenz_field(rho):
    def f(t, y):
        x, u, z = y[:, 0], y[:, 1], y[:, 2]
        return np.stack(
            [10.0 * (u - x), x * (rho - z) - u, x * u - 8.0 / 3.0 * z], axis=1
        )

    return f


def _lorenz_problem(n):
    rho = np.linspace(0.0, 21.0, n)
    y0 = np.tile(np.array([1.0, 0.0, 0.0]), (n, 1))
    rows = _sample_rows(n, CHECKED)
    # RK4 at dt 1e-4 in float64 is within about 1e-11 of the exact flow here.
    reference = numpy_rk4(_lorenz_field(rho[rows]), y0[rows], 1.0, 1e-4)
    return rho, y0, rows, reference


def _reference_check(rows_checked, reference):
    position = {int(i): slot for slot, i in enumerate(rows_checked)}

    def check(y, rows):
        rows = np.arange(len(y)) if rows is None else rows
        pairs = [
            (k, position[int(i)]) for k, i in enumerate(rows) if int(i) in position
        ]
        if not pairs:
            return float("nan")
        mine, theirs = zip(*pairs, strict=True)
        diff = np.asarray(y, dtype=np.float64)[list(mine)] - reference[list(theirs)]
        return float(np.max(np.abs(diff)))

    return check


def lorenz_rk4(n, threads, skips, problem) -> Workload:
    rho, y0, rows, reference = problem
    y0_32 = y0.astype(np.float32)
    # float32 rounding over 1000 steps leaves about 3e-5 on states of size 10.
    work = Workload(
        "Lorenz rk4 dt 0.001 float32",
        "float32",
        1000,
        1e-3,
        _reference_check(rows, reference),
    )
    system = Lorenz(sigma=10.0, rho=rho, beta=8.0 / 3.0)
    work.entries.append(
        _fastode_entry(
            system, y0_32, 1.0, threads, method="rk4", dt=1e-3, dtype=np.float32
        )
    )
    rho_32 = rho.astype(np.float32)
    work.entries.append(
        Entry(
            "NumPy RK4",
            lambda: numpy_rk4(_lorenz_field(rho_32), y0_32, 1.0, 1e-3),
            note="1 thread",
        )
    )
    _add_torchdiffeq(
        work,
        skips,
        y0_32,
        1.0,
        threads,
        "rk4",
        lambda rows: torch_lorenz(_take(rho_32, rows)),
        options={"step_size": 1e-3},
    )
    return work


def lorenz_tsit5(n, threads, skips, problem) -> Workload:
    rho, y0, rows, reference = problem
    tol = 1e-8
    system = Lorenz(sigma=10.0, rho=rho, beta=8.0 / 3.0)
    # The step count and both fastode backends use the same solver settings.
    tsit5 = {"method": "tsit5", "rtol": tol, "atol": tol}
    steps = _mean_steps(system, y0, 1.0, **tsit5)
    work = Workload(
        "Lorenz tsit5 rtol 1e-8 float64",
        "float64",
        steps,
        1e-5,
        _reference_check(rows, reference),
    )
    note = "float64: float32 floors rtol at 100 eps"
    work.entries.append(_fastode_entry(system, y0, 1.0, threads, note=note, **tsit5))
    _add_numba_backend(work, skips, _lorenz_rhs, 3, rho[:, None], y0, 1.0, threads, **tsit5)
    work.entries.append(
        Entry(
            "NumPy tsit5",
            lambda: numpy_adaptive(_lorenz_field(rho), y0, 1.0, "tsit5", tol, tol),
            note="1 thread, one step size for the batch",
        )
    )

    def field_one(i):
        def f(t, y):
            return [
                10.0 * (y[1] - y[0]),
                y[0] * (rho[i] - y[2]) - y[1],
                y[0] * y[1] - 8.0 / 3.0 * y[2],
            ]

        return f

    _add_scipy(work, skips, field_one, y0, 1.0, "RK45", tol, tol)
    def torch_field(rows):
        return torch_lorenz(_take(rho, rows))

    # torchdiffeq has no tsit5, so it runs its dopri5.
    _add_torchdiffeq(
        work, skips, y0, 1.0, threads, "dopri5", torch_field, rtol=tol, atol=tol
    )
    _add_torchode(work, skips, y0, 1.0, threads, "tsit5", torch_field, rtol=tol, atol=tol)
    y0_with_rho = np.column_stack([y0, rho])
    _add_diffrax(
        work, skips, y0_with_rho, 1.0, "tsit5", jax_lorenz, 3, rtol=tol, atol=tol
    )
    return work


def kepler_orbits(n, seed=0):
    """Rotated Kepler orbits with G M = 1, semi-major axis 1 and period 2 pi.

    Each starts at perihelion with eccentricity in [0, 0.5], so after one
    period the exact state equals the initial state.
    """
    rng = np.random.default_rng(seed)
    e = rng.uniform(0.0, 0.5, n)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    speed = np.sqrt((1.0 + e) / (1.0 - e))
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([(1 - e) * cos, (1 - e) * sin, -speed * sin, speed * cos], axis=1)


def numpy_yoshida4(y0, t1, dt):
    """Yoshida's 4th-order composition of drift-kick-drift leapfrog, vectorized."""
    weights = symplectic_weights()["yoshida4"][0]
    q, p = y0[:, :2].copy(), y0[:, 2:].copy()
    for _ in range(round(t1 / dt)):
        for w in weights:
            q += 0.5 * w * dt * p
            r = np.sqrt(np.sum(q * q, axis=1, keepdims=True))
            p -= w * dt * q / r**3
            q += 0.5 * w * dt * p
    return np.concatenate([q, p], axis=1)


def kepler_yoshida4(n, threads, skips, seed=0) -> Workload:
    period, n_steps = 2.0 * np.pi, 1000
    dt = period / n_steps
    y0 = kepler_orbits(n, seed)
    # yoshida4 at 1000 steps per orbit returns to within about 1.4e-6 at e = 0.5.
    work = Workload(
        "Kepler yoshida4 1000 steps/orbit",
        "float64",
        n_steps,
        1e-5,
        _closed_form_check(y0),
    )
    system = Hamiltonian("kepler")
    work.entries.append(
        _fastode_entry(system, y0, period, threads, method="yoshida4", dt=dt)
    )
    work.entries.append(
        Entry("NumPy yoshida4", lambda: numpy_yoshida4(y0, period, dt), note="1 thread")
    )
    return work


def _mlp_weights(d=4, hidden=64):
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(hidden, d)) / np.sqrt(d)
    w2 = rng.normal(size=(d, hidden)) / np.sqrt(hidden)
    return [w1, w2], [0.1 * rng.normal(size=hidden), 0.1 * rng.normal(size=d)]


def mlp_rk4(n, threads, skips) -> Workload:
    dt = 0.01
    (w1, w2), (b1, b2) = weights, biases = _mlp_weights()
    h0 = np.random.default_rng(1).normal(size=(n, 4))

    def field_np(t, h):
        return np.tanh(h @ w1.T + b1) @ w2.T + b2

    rows = _sample_rows(n, CHECKED)
    reference = numpy_rk4(field_np, h0[rows], 1.0, dt / 10)
    # RK4 (classic or 3/8 rule) reaches about 1e-10 here.
    work = Workload(
        "MLP 4-64-4 tanh rk4 dt 0.01",
        "float64",
        100,
        1e-7,
        _reference_check(rows, reference),
    )
    mlp = MLP(weights, biases, activation="tanh")

    def run_fastode():
        return neural_ode(mlp, h0, (0.0, 1.0), method="rk4", dt=dt, threads=threads)

    work.entries.append(Entry("fastode cpp", run_fastode, traced=True))
    work.entries.append(
        Entry(
            "NumPy RK4", lambda: numpy_rk4(field_np, h0, 1.0, dt), note="BLAS threads"
        )
    )
    fields = {
        "torch": lambda rows: torch_mlp(weights, biases),
        "jax": lambda: jax_mlp(weights, biases),
    }
    _add_torch_and_jax(work, skips, h0, 1.0, threads, "rk4", fields, dt=dt)
    return work


# -------------------------------------------------------- shared helpers


def _fastode_entry(system, y0, t1, threads, note="", **solve_kwargs) -> Entry:
    def run():
        return solve(system, y0, (0.0, t1), threads=threads, **solve_kwargs).y

    def run_gpu():
        return np.asarray(
            solve(system, y0, (0.0, t1), backend="cupy", **solve_kwargs).y
        )

    return Entry("fastode cpp", run, note=note, traced=True, gpu=run_gpu)


def _mean_steps(system, y0, t1, **solve_kwargs) -> float:
    sol = solve(system, y0, (0.0, t1), **solve_kwargs)
    return float(np.mean(sol.stats["n_steps"]))


def _add_scipy(work, skips, rhs_one, y0, t1, method, rtol, atol):
    scipy, reason = _optional("scipy.integrate")
    if scipy is None:
        skips.append(Skip("scipy solve_ivp loop", reason))
        return
    rows = _sample_rows(len(y0), SCIPY_SAMPLE)
    work.entries.append(
        Entry(
            f"scipy solve_ivp {method} loop",
            lambda: _scipy_loop(rhs_one, y0, t1, rows, method, rtol, atol),
            rows=rows,
            scale=len(y0) / len(rows),
            note=f"timed on {len(rows)} trajectories, scaled to N",
        )
    )


def _missing(skips: list[Skip], peer: str) -> bool:
    """Return whether ``peer`` does not import, recording why in ``skips``."""
    _, reason = _optional(peer)
    if reason is not None:
        skips.append(Skip(peer, reason))
    return reason is not None


def _set_torch_threads(threads):
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def _add_torchdiffeq(work, skips, y0, t1, threads, method, make_field, **options):
    """Add torchdiffeq's ``odeint`` on the batch as one state.

    ``make_field(rows)`` returns the torch field of the sampled rows (all
    rows when None).
    """
    if _missing(skips, "torchdiffeq"):
        return
    _set_torch_threads(threads)
    n, rows = len(y0), _peer_rows(len(y0))
    run = torchdiffeq_run(make_field(rows), _take(y0, rows), t1, method, **options)
    note = "one step size for the whole batch" if "rtol" in options else ""
    if method == "rk4":
        note = "3/8-rule rk4"
    entry = Entry(f"torchdiffeq {method} (CPU)", run, note=note)
    work.entries.append(_sampled(entry, rows, n))


def _add_torchode(work, skips, y0, t1, threads, method, make_field, **step):
    """Add torchode with a step size per trajectory; ``step`` is dt or rtol and atol."""
    if _missing(skips, "torchode"):
        return
    _set_torch_threads(threads)
    n, rows = len(y0), _peer_rows(len(y0))
    run = torchode_run(make_field(rows), _take(y0, rows), t1, method, **step)
    note = "classic RK4 tableau" if method == "rk4" else "per-trajectory steps"
    entry = Entry(f"torchode {method} (CPU)", run, note=note)
    work.entries.append(_sampled(entry, rows, n))


def _add_diffrax(work, skips, y0, t1, method, make_field, columns=None, **step):
    """Add diffrax's ``diffeqsolve`` under ``jax.jit(jax.vmap(...))``.

    ``make_field()`` returns ``field(t, y, args)`` of one state; it is called
    only when diffrax imports, because building the field imports JAX. Only
    the first ``columns``
    components are returned (all when None), for states that carry a
    parameter along.
    """
    if _missing(skips, "diffrax"):
        return
    n, rows = len(y0), _peer_rows(len(y0))
    run = diffrax_run(make_field(), _take(y0, rows), t1, method, **step)
    label = "classic RK4 tableau" if method == "rk4" else "per-trajectory steps"
    note = f"{label}; XLA's own CPU threads; warm-up includes jit compilation"
    if columns is not None:
        inner = run

        def run():
            return inner()[:, :columns]

    entry = Entry(f"diffrax {method} + vmap (CPU)", run, note=note)
    work.entries.append(_sampled(entry, rows, n))


def _add_torch_and_jax(work, skips, y0, t1, threads, method, fields, **step):
    """Add torchdiffeq, torchode and diffrax on one workload.

    ``fields`` contains ``torch(rows)`` and ``jax()`` field factories, and optionally
    ``jax_y0`` (the states diffrax integrates) and ``columns``.
    """
    torch_step = step if method != "rk4" else {"dt": step["dt"]}
    options = step if method != "rk4" else {"options": {"step_size": step["dt"]}}
    _add_torchdiffeq(work, skips, y0, t1, threads, method, fields["torch"], **options)
    _add_torchode(work, skips, y0, t1, threads, method, fields["torch"], **torch_step)
    _add_diffrax(
        work,
        skips,
        fields.get("jax_y0", y0),
        t1,
        method,
        fields["jax"],
        fields.get("columns"),
        **step,
    )


def _add_gpu(work_list, skips):
    info = gpu_info()
    if not info["available"]:
        skips.append(Skip("fastode cupy (GPU)", info["problem"] or "no CUDA device"))
        return
    # NOTE: the cupy rows have never run, because no GPU was available to
    # test them; they call the same solve() with backend="cupy".
    for work in work_list:
        base = work.entries[0]
        if base.gpu is not None:
            work.entries.insert(
                1, Entry("fastode cupy (GPU)", base.gpu, note=base.note)
            )


# ------------------------------------------------------------- running


def build_workloads(
    n: int, threads: int | None, skips: list[Skip], numba_backend: bool = True
) -> list[Workload]:
    """Build every workload at batch size n; unusable peers are added to skips.

    ``numba_backend=False`` leaves out the fastode numba entries, whose first
    run compiles for about 10 s per method unless Numba's disk cache has them.
    """
    lorenz = _lorenz_problem(n)
    work_list = [
        oscillator_rk4(n, threads, skips),
        oscillator_dopri5(n, threads, skips),
        lorenz_rk4(n, threads, skips, lorenz),
        lorenz_tsit5(n, threads, skips, lorenz),
        kepler_yoshida4(n, threads, skips),
        mlp_rk4(n, threads, skips),
    ]
    _add_gpu(work_list, skips)
    if not numba_backend:
        for work in work_list:
            work.entries = [e for e in work.entries if e.peer != "fastode numba"]
    return work_list


def _time(
    run: Callable[[], np.ndarray], repeats: int
) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    y = run()
    warmup = time.perf_counter() - start
    if warmup > SLOW_WARMUP:
        repeats = 1
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        y = run()
        best = min(best, time.perf_counter() - start)
    return y, warmup, best


def _traced_peak(run: Callable[[], np.ndarray]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(
    work: Workload,
    entry: Entry,
    n: int,
    repeats: int,
    peak: _roofline.Peak | None = None,
) -> Record:
    """Time one entry of a workload and check its final states.

    ``peak`` (see `machine_peak`) sets the record's fraction of peak.
    """
    y, warmup, best = _time(entry.run, repeats)
    seconds = best * entry.scale
    traced = _traced_peak(entry.run) / n if entry.traced else None
    steps_per_second = n * work.steps_per_trajectory / seconds
    return Record(
        workload=work.name,
        peer=entry.peer,
        n=n,
        dtype=work.dtype,
        seconds=seconds,
        warmup_seconds=warmup,
        steps_per_second=steps_per_second,
        max_error=work.check(y, entry.rows),
        error_bound=work.error_bound,
        traced_bytes_per_trajectory=traced,
        flops_per_step=_roofline.FLOPS_PER_STEP.get(work.name),
        fraction_of_peak=_roofline.fraction_of_peak(
            work.name, work.dtype, steps_per_second, peak
        ),
        note=entry.note,
    )


def run_bench(
    sizes, threads=None, repeats=3, on_entries=None, on_entry=None, numba_backend=True
):
    """Time every workload, backend and importable peer at each batch size.

    Parameters
    ----------
    sizes : sequence of int
        Batch sizes N, run in order.
    threads : int, optional
        Threads of fastode, Numba and torch (default: all cores). NumPy
        elementwise code and scipy run on one thread either way.
    repeats : int
        Timed runs after the warm-up run; the minimum is reported. Entries
        whose warm-up takes more than SLOW_WARMUP seconds are timed once.
    on_entries, on_entry : callable, optional
        Progress hooks: ``on_entries(count)`` when the entries of a batch size
        are known, ``on_entry(label)`` after each entry has run.
    numba_backend : bool
        Whether to time fastode's numba backend (see `build_workloads`).

    Yields
    ------
    Skip or Record
        Each `Skip` once (a peer that does not import, or no GPU), then one
        `Record` per entry and size. ``ratio_to_numpy`` is the time of the
        NumPy entry of the same workload and size divided by the entry's time.
        ``fraction_of_peak`` is the entry's flop rate over `machine_peak`.
    """
    peak = machine_peak(threads)
    reported = set()
    for n in sizes:
        skips: list[Skip] = []
        work_list = build_workloads(n, threads, skips, numba_backend)
        for skip in skips:
            if skip.peer not in reported:
                reported.add(skip.peer)
                yield skip
        if on_entries is not None:
            on_entries(sum(len(work.entries) for work in work_list))
        for work in work_list:
            yield from _measure_workload(work, n, repeats, on_entry, peak)


def machine_peak(threads: int | None) -> _roofline.Peak | None:
    """Return the measured FMA peak for ``threads`` threads (default: all cores).

    None when Numba is not installed. Measured once per process and thread
    count, in about 3 s (most of it compilation).
    """
    return _roofline.measure_fma_peak(threads or os.cpu_count() or 1)


def _measure_workload(work, n, repeats, on_entry, peak=None):
    records = []
    for entry in work.entries:
        records.append(measure(work, entry, n, repeats, peak))
        if on_entry is not None:
            on_entry(f"{work.name} / {entry.peer} / N={n:,}")
    numpy_seconds = next(
        (r.seconds for r in records if r.peer.startswith("NumPy")), None
    )
    for record in records:
        if numpy_seconds is not None:
            record.ratio_to_numpy = numpy_seconds / record.seconds
        yield record


#: Bytes per trajectory that the widest workload needs at most: the NumPy MLP
#: peer keeps about 16 arrays of its 64-wide hidden layer alive (stages and
#: temporaries), 16 * 64 * 8 bytes. This is an estimate, not a measurement.
BYTES_PER_TRAJECTORY = 16 * 64 * 8


def full_sizes(max_bytes: int | None = None) -> list[int]:
    """Return the sizes of FULL_SIZES whose batches fit in half of ``max_bytes``.

    ``max_bytes`` defaults to the physical memory; each trajectory is counted
    as BYTES_PER_TRAJECTORY.
    """
    if max_bytes is None:
        max_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [n for n in FULL_SIZES if n * BYTES_PER_TRAJECTORY <= max_bytes // 2]


def memory_scaling(sizes, threads=None) -> list[tuple[int, float]]:
    """Return (N, traced peak bytes per trajectory) of a final-state-only solve.

    The workload is the oscillator with rk4, d = 2; a constant value across
    N shows that the memory is O(N d).
    """
    rows = []
    for n in sizes:
        y0 = np.random.default_rng(0).uniform(-1.0, 1.0, (n, 2))
        system = Oscillator(k=K, b=B)

        def run(system=system, y0=y0):
            return solve(system, y0, (0.0, 1.0), method="rk4", dt=0.01, threads=threads)

        peak = _traced_peak(run)
        rows.append((n, peak / n))
    return rows


def plot_throughput(records: list[Record], path) -> None:
    """Save trajectory-steps per second against N, log-log, one panel per workload.

    Raises
    ------
    ImportError
        When matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(record.workload for record in records))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 4 * rows), squeeze=False
    )
    for axis, name in zip(axes.flat, names, strict=False):
        mine = [record for record in records if record.workload == name]
        for peer in dict.fromkeys(record.peer for record in mine):
            points = sorted((r.n, r.steps_per_second) for r in mine if r.peer == peer)
            axis.loglog(*zip(*points, strict=True), marker="o", label=peer)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("trajectories N")
        axis.set_ylabel("trajectory-steps per second")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------- reporting

#: Column layout of the ``fastode bench`` table.
TABLE_ROW = (
    "{:<32} {:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6}  {}"
)


def format_header(version: str, threads: int, sizes, repeats: int) -> str:
    """Return the two header lines: sizes, threads, timing rule and load."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    sizes_text = ", ".join(f"{n:,}" for n in sizes)
    return (
        f"fastode {version} bench: N = {sizes_text}, {threads} threads, "
        f"best of {repeats} timed runs after one warm-up run\n"
        f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the start"
    )


def _format_record(r: Record) -> str:
    ratio = f"{r.ratio_to_numpy:.2f}" if r.ratio_to_numpy is not None else "n/a"
    traced = r.traced_bytes_per_trajectory
    traced_text = f"{traced:.0f}" if traced is not None else ""
    fraction = r.fraction_of_peak
    peak_text = f"{100 * fraction:.1f}" if fraction is not None else ""
    return TABLE_ROW.format(
        r.workload,
        r.peer,
        f"{r.n:,}",
        f"{r.seconds:.4f}",
        f"{r.warmup_seconds:.3f}",
        f"{r.steps_per_second:.2e}",
        f"{r.max_error:.1e}",
        f"{r.error_bound:.0e}",
        ratio,
        traced_text,
        peak_text,
        r.note,
    ).rstrip()


def format_report(
    records: list[Record],
    skips: list[Skip],
    memory,
    peak: _roofline.Peak | None = None,
) -> list[str]:
    """Return the lines of the ``fastode bench`` report after the header.

    ``memory`` is the output of `memory_scaling` and ``peak`` that of
    `machine_peak`.
    """
    lines = []
    for skip in skips:
        label = "GPU rows skipped" if "GPU" in skip.peer else f"{skip.peer} skipped"
        lines.append(f"{label}: {skip.reason}")
    lines.append(
        TABLE_ROW.format(
            "workload",
            "backend / peer",
            "N",
            "seconds",
            "warm-up s",
            "steps/s",
            "max error",
            "bound",
            "x NumPy",
            "B/traj",
            "% peak",
            "note",
        ).rstrip()
    )
    lines.extend(_format_record(record) for record in records)
    lines.extend(_legend(memory))
    lines.extend(_roofline_lines(peak))
    for r in records:
        if not r.max_error <= r.error_bound:
            lines.append(
                f"ERROR ABOVE BOUND: {r.workload} / {r.peer}: "
                f"{r.max_error:.1e} > {r.error_bound:.0e}"
            )
    return lines


def _legend(memory) -> list[str]:
    scaling = ", ".join(f"N={n:,}: {per:.0f} B" for n, per in memory)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    timing = (
        "seconds: best timed run, scaled to N for sampled entries; warm-up s: "
        "the first, untimed run (compilation included), of the sample only."
    )
    rate = (
        "steps/s: N times the steps per trajectory over seconds. Adaptive "
        "workloads count fastode's mean steps per trajectory for every entry, "
        "so their steps/s compare equal work."
    )
    error = (
        "max error: largest absolute difference of the final states from the "
        "closed form (oscillator; Kepler after one period) or from a float64 "
        f"RK4 reference at a tenth of the step on {CHECKED} trajectories "
        "(Lorenz, MLP). x NumPy: NumPy time / entry time."
    )
    traced = (
        "B/traj: tracemalloc peak of one fastode call per trajectory (NumPy "
        "buffers and Python objects, not C++ scratch memory)."
    )
    scaling_line = (
        "final-state-only memory, oscillator rk4 (d = 2, 16 B of state), "
        f"tracemalloc peak per trajectory: {scaling}. Bytes per trajectory "
        "that do not grow with N mean O(N d) memory."
    )
    rss_line = (
        f"peak resident memory of this process (getrusage): {rss / 2**20:.0f} MiB"
    )
    return [timing, rate, error, traced, scaling_line, rss_line]


def _roofline_lines(peak: _roofline.Peak | None) -> list[str]:
    if peak is None:
        return ["% peak: not measured, because Numba is not installed."]
    return [
        "% peak: flops per trajectory-step times steps/s over the float64 peak of "
        f"{peak.float64 / 1e9:.1f} GFLOP/s = {peak.threads} x "
        f"{peak.per_core / 1e9:.1f} GFLOP/s, the best per-core rate of a "
        "Numba FMA loop; float32 rows use twice that peak. The loop reached "
        f"{peak.single_thread / 1e9:.1f} GFLOP/s on one thread and "
        f"{peak.all_threads / 1e9:.1f} GFLOP/s on {peak.threads} at once.",
        f"flops per trajectory-step (FMA = 2 flops): {_flop_counts_text()}.",
    ]


def _flop_counts_text() -> str:
    return "; ".join(
        f"{name}: {flops}" for name, flops in _roofline.FLOPS_PER_STEP.items()
    )


def json_document(
    version: str,
    started,
    threads: int,
    records,
    skips,
    memory,
    peak: _roofline.Peak | None = None,
) -> dict:
    """Return the raw figures of a run as a JSON-serializable dict.

    Times are in seconds, memory in bytes, rates in flop/s.
    """
    return {
        "fastode_version": version,
        "started_utc": started.isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average": list(os.getloadavg()),
        "sizes": sorted({record.n for record in records}),
        "records": [asdict(record) for record in records],
        "skipped": [asdict(skip) for skip in skips],
        "memory_scaling": [
            {"n": n, "traced_bytes_per_trajectory": per} for n, per in memory
        ],
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak": None if peak is None else _peak_document(peak),
    }


def _peak_document(peak: _roofline.Peak) -> dict:
    return {
        "float64_flops_per_second": peak.float64,
        "per_core_flops_per_second": peak.per_core,
        "single_thread_flops_per_second": peak.single_thread,
        "all_threads_measured_flops_per_second": peak.all_threads,
        "threads": peak.threads,
        "method": "best of short runs of a Numba FMA loop, float64",
    }
