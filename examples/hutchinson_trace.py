"""Hutchinson's trace estimator in a continuous normalizing flow with d = 256.

The exact log-density change of a flow costs one Jacobian-vector product per
dimension when the network is deep. Hutchinson's estimator replaces the trace
by v^T (df/dz) v for a few random sign vectors v, which is unbiased. Every
sample here starts at the same point with its own probes, so the spread of the
estimates is the estimator's noise and their mean converges to the exact value.
"""

import numpy as np

import fastode
from _plot import save_figure

d, hidden, n = 256, 64, 1000
rng = np.random.default_rng(0)
# W_2 = -W_1^T / 2 gives a contracting flow whose Jacobian has a large trace.
w1 = rng.normal(size=(hidden, d)) / np.sqrt(d)
mlp = fastode.MLP([w1, -0.5 * w1.T], [0.1 * rng.normal(size=hidden), np.zeros(d)])
z0 = np.repeat(rng.normal(size=(1, d)), n, axis=0)
rk4 = {"method": "rk4", "dt": 0.1}

_, exact = fastode.cnf(mlp, z0[:1], (0.0, 1.0), **rk4)
estimates = {}
for n_probes in (1, 8):
    _, estimates[n_probes] = fastode.cnf(
        mlp, z0, (0.0, 1.0), trace="hutchinson", n_probes=n_probes, seed=1, **rk4
    )
    values = estimates[n_probes]
    standard_error = np.std(values, ddof=1) / np.sqrt(n)
    print(
        f"d = {d}, {n_probes} probe(s): exact {exact[0]:.4f}, mean of {n} estimates "
        f"{np.mean(values):.4f}, error {abs(np.mean(values) - exact[0]):.2e} "
        f"({abs(np.mean(values) - exact[0]) / standard_error:.1f} standard errors)"
    )


def draw(plt):
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for n_probes, values in estimates.items():
        axes.hist(values, bins=60, alpha=0.6, label=f"{n_probes} probe(s)")
    axes.axvline(exact[0], color="k", label="exact")
    axes.set(title=f"Hutchinson estimates of the log-density change, d = {d}",
             xlabel="delta log p")
    axes.legend()
    return figure


save_figure(draw, "hutchinson_trace.png")
