"""Stability of dx/dt = A x for a few matrices, with a Lyapunov function.

Stable exactly when every eigenvalue has a negative real part; then
P solving Aᵀ P + P A = -I gives V(x) = xᵀ P x, which decreases along every
trajectory. The check: the residual of the Lyapunov equation and the decay
of V along integrated trajectories.
"""

import numpy as np

import fastode
from _plot import save_figure

matrices = {
    "damped spiral": np.array([[-0.2, 1.0], [-1.0, -0.2]]),
    "center": np.array([[0.0, 1.0], [-1.0, 0.0]]),
    "saddle": np.array([[1.0, 0.0], [0.0, -1.0]]),
    "node": np.array([[-1.0, 0.5], [0.0, -2.0]]),
    "Jordan block": np.array([[0.0, 1.0], [0.0, 0.0]]),
}

for name, A in matrices.items():
    report = fastode.stability(A)
    line = f"{name:13s} eigenvalues {np.round(report.eigenvalues, 3)}: {report.verdict}"
    if report.verdict == "asymptotically stable":
        P = report.lyapunov
        residual = np.max(np.abs(A.T @ P + P @ A + np.eye(2)))
        sol = fastode.solve(fastode.Linear(A), [1.0, 1.0], (0.0, 5.0),
                            t_eval=np.linspace(0, 5, 51), rtol=1e-10)
        V = np.einsum("ti,ij,tj->t", sol.y, P, sol.y)
        line += f", Lyapunov residual error {residual:.1e}, V decreasing: {bool(np.all(np.diff(V) < 0))}"
    print(line)


def draw(plt):
    figure, axes = plt.subplots(1, len(matrices), figsize=(3 * len(matrices), 3))
    starts = np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])
    t = np.linspace(0.0, 4.0, 81)
    for ax, (name, A) in zip(axes, matrices.items()):
        sol = fastode.solve(fastode.Linear(A), starts, (0.0, 4.0), t_eval=t)
        for path in sol.y:
            ax.plot(path[:, 0], path[:, 1], lw=0.8)
        ax.set(title=f"{name}\n{fastode.stability(A).verdict}", xlim=(-2.5, 2.5), ylim=(-2.5, 2.5))
        ax.set_aspect("equal")
    return figure


save_figure(draw, "stability_matrices.png")
