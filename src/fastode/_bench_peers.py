"""Runs of the torch and JAX peers of ``fastode bench``: torchdiffeq, torchode, diffrax.

Each ``*_run`` function imports its package, builds the solver once and
returns a callable that integrates the batch ``y0`` from 0 to ``t1`` and
returns the final states as a NumPy array. Callers check importability
first. Method names follow fastode's: "rk4" is fixed-step with ``dt``,
"dopri5" and "tsit5" are adaptive with ``rtol`` and ``atol``.

torchode and diffrax ship no classic RK4, so both get it here as an explicit
Runge-Kutta tableau (Kutta 1901: c = (0, 1/2, 1/2, 1), b = (1, 2, 2, 1) / 6).
torchdiffeq's "rk4" is the 3/8 rule.
"""

from __future__ import annotations

import functools

import numpy as np

RK4_C = [0.0, 0.5, 0.5, 1.0]
RK4_A = [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]]
RK4_B = [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0]


def torchdiffeq_run(field, y0: np.ndarray, t1: float, method: str, **options):
    """Return a run of ``torchdiffeq.odeint`` on the whole batch as one state."""
    import torch
    import torchdiffeq

    y0_tensor = torch.from_numpy(np.ascontiguousarray(y0))
    t = torch.tensor([0.0, t1], dtype=y0_tensor.dtype)

    def run():
        with torch.no_grad():
            y = torchdiffeq.odeint(field, y0_tensor, t, method=method, **options)
        return y[-1].numpy()

    return run


@functools.cache
def _torchode_rk4():
    import torch
    from torchode.interpolation import ThirdOrderPolynomialInterpolation
    from torchode.single_step_methods.runge_kutta import (
        ButcherTableau,
        ExplicitRungeKutta,
    )

    # torchode's step classes require an embedded pair; a fixed-step
    # controller never reads it, so the low-order weights repeat b.
    tableau = ButcherTableau.from_lists(c=RK4_C, a=RK4_A, b=RK4_B, b_low_order=RK4_B)

    class RK4(ExplicitRungeKutta):
        def __init__(self, term=None):
            super().__init__(term, tableau)

        @torch.jit.export
        def convergence_order(self):
            return 4

        @torch.jit.export
        def build_interpolation(self, data):
            return ThirdOrderPolynomialInterpolation.from_k(
                data.t0, data.dt, data.y0, data.y1, data.k
            )

    return RK4


def torchode_run(field, y0, t1, method, dt=None, rtol=None, atol=None):
    """Return a run of torchode's ``AutoDiffAdjoint`` with a step per trajectory."""
    import torch
    import torchode

    y0_tensor = torch.from_numpy(np.ascontiguousarray(y0))
    n = y0_tensor.shape[0]
    t_eval = torch.tensor([[0.0, t1]], dtype=y0_tensor.dtype).repeat(n, 1)
    term = torchode.ODETerm(field)
    dt0 = None
    if method == "rk4":
        step = _torchode_rk4()(term)
        control = torchode.FixedStepController()
        dt0 = torch.full((n,), dt, dtype=y0_tensor.dtype)
    else:
        step = {"dopri5": torchode.Dopri5, "tsit5": torchode.Tsit5}[method](term=term)
        control = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(step, control)
    problem = torchode.InitialValueProblem(y0=y0_tensor, t_eval=t_eval)

    def run():
        with torch.no_grad():
            sol = solver.solve(problem, dt0=dt0)
        return sol.ys[:, -1].numpy()

    return run


@functools.cache
def _diffrax_rk4():
    import diffrax

    rk4_tableau = diffrax.ButcherTableau(
        c=np.array(RK4_C[1:]),
        b_sol=np.array(RK4_B),
        b_error=np.zeros(4),
        a_lower=tuple(np.array(row) for row in RK4_A[1:]),
    )

    class RK4(diffrax.AbstractERK):
        tableau = rk4_tableau
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    return RK4


def diffrax_run(field, y0, t1, method, dt=None, rtol=None, atol=None):
    """Return a run of ``jax.jit(jax.vmap(diffeqsolve))`` over the batch.

    ``field(t, y, args)`` takes one trajectory's state. Enables JAX's
    float64 mode for the whole process, because the workloads are float64.
    The first call compiles.
    """
    import diffrax
    import jax

    jax.config.update("jax_enable_x64", True)
    term = diffrax.ODETerm(field)
    if method == "rk4":
        solver = _diffrax_rk4()()
        controller = diffrax.ConstantStepSize()
        # Rounding of t may leave one last short step.
        options = {"dt0": dt, "max_steps": round(t1 / dt) + 2}
    else:
        solver = {"dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5}[method]()
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        options = {"dt0": None, "max_steps": 100_000}

    def solve_one(y):
        sol = diffrax.diffeqsolve(
            term,
            solver,
            0.0,
            t1,
            y0=y,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            **options,
        )
        return sol.ys[-1]

    batched = jax.jit(jax.vmap(solve_one))
    y0_jax = jax.numpy.asarray(y0)

    def run():
        return np.asarray(batched(y0_jax).block_until_ready())

    return run


def torch_oscillator(k: float, b: float):
    """Return the damped oscillator as a batched torch field."""
    import torch

    def field(t, y):
        return torch.stack([y[:, 1], -k * y[:, 0] - b * y[:, 1]], dim=1)

    return field


def torch_lorenz(rho: np.ndarray):
    """Return the Lorenz field (sigma 10, beta 8/3) with one rho per row."""
    import torch

    rho_t = torch.from_numpy(rho)

    def field(t, y):
        x, u, z = y[:, 0], y[:, 1], y[:, 2]
        return torch.stack(
            [10.0 * (u - x), x * (rho_t - z) - u, x * u - 8.0 / 3.0 * z], dim=1
        )

    return field


def torch_mlp(weights, biases):
    """Return the field of a float64 tanh MLP with one hidden layer (``torch.nn``)."""
    import torch

    (w1, w2), (b1, b2) = weights, biases
    network = torch.nn.Sequential(
        torch.nn.Linear(w1.shape[1], w1.shape[0]),
        torch.nn.Tanh(),
        torch.nn.Linear(w2.shape[1], w2.shape[0]),
    ).double()
    with torch.no_grad():
        for layer, w, b in ((network[0], w1, b1), (network[2], w2, b2)):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))

    def field(t, h):
        return network(h)

    return field


def jax_oscillator(k: float, b: float):
    """Return the damped oscillator as a field of one state for diffrax."""
    import jax.numpy as jnp

    def field(t, y, args):
        return jnp.stack([y[1], -k * y[0] - b * y[1]])

    return field


def jax_lorenz():
    """Return the Lorenz field of a state (x, y, z, rho) for diffrax.

    vmap maps over the state only, so rho rides along as a fourth, constant
    component.
    """
    import jax.numpy as jnp

    def field(t, y, args):
        x, u, z, r = y
        return jnp.stack(
            [10.0 * (u - x), x * (r - z) - u, x * u - 8.0 / 3.0 * z, 0.0 * r]
        )

    return field


def jax_mlp(weights, biases):
    """Return the tanh MLP field of one state for diffrax."""
    import jax.numpy as jnp

    (w1, w2), (b1, b2) = weights, biases

    # The weights become JAX arrays when jit traces the field, after
    # diffrax_run has switched JAX to float64.
    def field(t, h, args):
        hidden = jnp.tanh(jnp.asarray(w1) @ h + jnp.asarray(b1))
        return jnp.asarray(w2) @ hidden + jnp.asarray(b2)

    return field
