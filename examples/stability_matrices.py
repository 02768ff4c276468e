"""Stability of dx/dt = A x for a few matrices, with a Lyapunov function.

Stable exactly when every eigenvalue has a negative real part; then
P solving Aᵀ P + P A = -I gives V(x) = xᵀ P x, which decreases along every
trajectory. The check: the residual of the Lyapunov equation and the decay
of V along integrated trajectories.
"""

import numpy as np

import fastode
from _plot import save_figure

# fastode.stability solves the Lyapunov equation with SciPy, which
# `pip install .` does not bring; without it, only the verdicts are checked.
try:
    import scipy.linalg  # noqa: F401
except ImportError:
    print("SciPy is not installed, so no Lyapunov functions (pip install scipy)")
    with_lyapunov = False
else:
    with_lyapunov = True

matrices = {
    "damped spiral": np.array([[-0.2, 1.0], [-1.0, -0.2]]),
    "center": np.array([[0.0, 1.0], [-1.0, 0.0]]),
    "saddle": np.array([[1.0, 0.0], [0.0, -1.0]]),
    "node": np.array([[-1.0, 0.5], [0.0, -2.0]]),
    "Jordan block": np.array([[0.0, 1.0], [0.0, 0.0]]),
}

for name, A in matrices.items():
    report = fastode.stability(A, lyapunov=with_lyapunov)
    # A 2 x 2 matrix has eigenvalues tr/2 ± sqrt(tr²/4 - det).
    half_trace = np.trace(A) / 2
    root = np.sqrt(complex(half_trace**2 - np.linalg.det(A)))
    abscissa_error = abs(report.spectral_abscissa - (half_trace + root).real)
    line = (
        f"{name:13s} eigenvalues {np.round(report.eigenvalues, 3)}: {report.verdict}, "
        f"max Re λ error {abscissa_error:.1e}"
    )
    if report.verdict == "asymptotically stable" and with_lyapunov:
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
        verdict = fastode.stability(A, lyapunov=False).verdict
        ax.set(title=f"{name}\n{verdict}", xlim=(-2.5, 2.5), ylim=(-2.5, 2.5))
        ax.set_aspect("equal")
    return figure


save_figure(draw, "stability_matrices.png")
