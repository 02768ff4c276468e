"""Neural-ODE forward pass: a tanh MLP field (d = 4, one hidden layer of 64),
10 000 inputs, rk4 with dt = 0.01 over [0, 1], float64.

Peers: torchdiffeq's ``odeint(method="rk4")`` on a ``torch.nn.Sequential`` of
the same weights (skipped when torch or torchdiffeq is not installed), and a
NumPy RK4 vectorized over the batch. Every entry's final states are compared
with a NumPy RK4 run at dt = 0.001 on the first 500 inputs.
"""

import os

import numpy as np
import pytest

import fastode

N, D, HIDDEN = 10_000, 4, 64
T1, DT = 1.0, 0.01
CASE = f"MLP {D}-{HIDDEN}-{D} tanh, rk4 dt {DT}, [0, {T1:g}], {N:,} inputs, float64"
CHECKED = 500
#: Classic RK4 and torchdiffeq's rk4 (the 3/8 rule) both reach about 1e-10
#: here; the bound still catches a wrong network or a wrong step.
ERROR_BOUND = 1e-7


def make_weights():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(HIDDEN, D)) / np.sqrt(D)
    w2 = rng.normal(size=(D, HIDDEN)) / np.sqrt(HIDDEN)
    return [w1, w2], [0.1 * rng.normal(size=HIDDEN), 0.1 * rng.normal(size=D)]


def numpy_rk4(weights, biases, h0, dt):
    (w1, w2), (b1, b2) = weights, biases

    def f(h):
        return np.tanh(h @ w1.T + b1) @ w2.T + b2

    h = h0.copy()
    for _ in range(round(T1 / dt)):
        k1 = f(h)
        k2 = f(h + 0.5 * dt * k1)
        k3 = f(h + 0.5 * dt * k2)
        k4 = f(h + dt * k3)
        h = h + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return h


@pytest.fixture(scope="module")
def problem():
    weights, biases = make_weights()
    h0 = np.random.default_rng(1).normal(size=(N, D))
    reference = numpy_rk4(weights, biases, h0[:CHECKED], DT / 10)
    return weights, biases, h0, reference


def max_error(h, reference):
    return float(np.max(np.abs(h[:CHECKED] - reference)))


def test_mlp_rk4_fastode(benchmark, record, problem, threads):
    weights, biases, h0, reference = problem
    mlp = fastode.MLP(weights, biases, activation="tanh")
    benchmark.group = CASE

    def run():
        return fastode.neural_ode(mlp, h0, (0.0, T1), method="rk4", dt=DT, threads=threads)

    h = benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    error = max_error(h, reference)
    record(CASE, "fastode", error)
    assert error < ERROR_BOUND


def test_mlp_rk4_numpy(benchmark, record, problem):
    weights, biases, h0, reference = problem
    benchmark.group = CASE
    h = benchmark.pedantic(numpy_rk4, args=(weights, biases, h0, DT), rounds=3, iterations=1)
    error = max_error(h, reference)
    record(CASE, "NumPy RK4 (batched)", error)
    assert error < ERROR_BOUND


def test_mlp_rk4_torchdiffeq(benchmark, record, problem, threads):
    torch = pytest.importorskip("torch")
    torchdiffeq = pytest.importorskip("torchdiffeq")
    weights, biases, h0, reference = problem
    torch.set_num_threads(threads or os.cpu_count())

    network = torch.nn.Sequential(
        torch.nn.Linear(D, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, D)
    ).double()
    with torch.no_grad():
        network[0].weight.copy_(torch.from_numpy(weights[0]))
        network[0].bias.copy_(torch.from_numpy(biases[0]))
        network[2].weight.copy_(torch.from_numpy(weights[1]))
        network[2].bias.copy_(torch.from_numpy(biases[1]))

    def field(t, h):
        return network(h)

    h0_tensor = torch.from_numpy(h0)
    t = torch.tensor([0.0, T1], dtype=torch.float64)

    def run():
        with torch.no_grad():
            path = torchdiffeq.odeint(
                field, h0_tensor, t, method="rk4", options={"step_size": DT}
            )
        return path[-1].numpy()

    benchmark.group = CASE
    h = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    error = max_error(h, reference)
    record(CASE, f"torchdiffeq {torchdiffeq.__version__}", error, note=f"torch {torch.__version__}")
    assert error < ERROR_BOUND
