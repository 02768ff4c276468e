"""Gradient flow dθ/dt = -∇L on the quadratic loss L = ½ θᵀ K θ.

The continuous limit of gradient descent; its exact solution is
θ(t) = expm(-K t) θ0. An ill-conditioned K shows the slow direction.
"""

import numpy as np

import fastode
from _plot import save_figure

K = np.array([[3.0, 1.0], [1.0, 0.5]])  # eigenvalues about 3.37 and 0.13
rng = np.random.default_rng(1)
theta0 = rng.uniform(-2.0, 2.0, size=(1000, 2))
t = np.linspace(0.0, 10.0, 101)

sol = fastode.gradient_flow(K, theta0, (0.0, 10.0), t_eval=t, rtol=1e-10, atol=1e-12)
# K = V diag(λ) Vᵀ is symmetric, so expm(-K t) = V diag(e^(-λ t)) Vᵀ.
rates, V = np.linalg.eigh(K)
propagators = np.einsum("ik,tk,jk->tij", V, np.exp(-np.outer(t, rates)), V)
exact = np.einsum("tij,nj->nti", propagators, theta0)
print(f"gradient flow, {len(theta0)} starts, dopri5: max error {np.max(np.abs(sol.y - exact)):.2e}")
loss = 0.5 * np.einsum("nti,ij,ntj->nt", sol.y, K, sol.y)
print(f"mean loss at t = 0: {loss[:, 0].mean():.3f}, at t = 10: {loss[:, -1].mean():.2e}")


def draw(plt):
    figure, axes = plt.subplots(figsize=(4.5, 4))
    grid = np.linspace(-2.2, 2.2, 101)
    X, Y = np.meshgrid(grid, grid)
    L = 0.5 * (K[0, 0] * X**2 + 2 * K[0, 1] * X * Y + K[1, 1] * Y**2)
    axes.contour(X, Y, L, levels=15, colors="0.8")
    for n in range(25):
        axes.plot(sol.y[n, :, 0], sol.y[n, :, 1], lw=1)
    axes.set(title="gradient flow on ½ θᵀKθ", xlabel="θ1", ylabel="θ2", aspect="equal")
    return figure


save_figure(draw, "gradient_flow.png")
