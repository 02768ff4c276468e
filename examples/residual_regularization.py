"""ODE-residual regularization: fit noisy data of y' = -k y with a penalty.

A polynomial model y_θ(x) is fitted to a few noisy samples of y = e^(-kx),
minimizing L = L_data + λ L_ODE, where L_ODE is `fastode.ode_residual` of the
model on a fine grid. The penalty pulls the fit toward the ODE's solution
between and beyond the data points.
"""

import numpy as np

import fastode
from _plot import save_figure

k, degree = 1.2, 8
rng = np.random.default_rng(3)
x_data = np.sort(rng.uniform(0.0, 2.0, size=12))
y_data = np.exp(-k * x_data) + 0.03 * rng.normal(size=12)
grid = np.linspace(0.0, 3.0, 301)


def model(theta, x):
    return np.polynomial.chebyshev.chebval(x / 1.5 - 1.0, theta)


def decay(x, y):
    return -k * y


def loss(theta, lam):
    l_data = np.mean((model(theta, x_data) - y_data) ** 2)
    residual = fastode.ode_residual(model(theta, grid), grid, decay)
    return fastode.regularized_loss(l_data, residual, lam)


def minimize_quadratic(function, n):
    """Return the minimizer of a quadratic function of n parameters.

    The model is linear in θ and the ODE is linear in y, so L(θ) =
    ½ θᵀ H θ + gᵀ θ + c. Differences with unit steps give g and H exactly,
    up to rounding, and the minimizer is θ* = -H⁻¹ g: one Newton step.
    """
    basis = np.eye(n)
    at_zero = function(np.zeros(n))
    plus = np.array([function(e) for e in basis])
    minus = np.array([function(-e) for e in basis])
    gradient = 0.5 * (plus - minus)
    hessian = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            hessian[i, j] = function(basis[i] + basis[j]) - plus[i] - plus[j] + at_zero
    return np.linalg.solve(hessian, -gradient)


exact = np.exp(-k * grid)
fits = {}
for lam in [0.0, 1e-2, 1.0]:
    theta = minimize_quadratic(lambda theta: loss(theta, lam), degree + 1)
    fits[lam] = model(theta, grid)
    error = np.max(np.abs(fits[lam] - exact))
    residual = fastode.ode_residual(fits[lam], grid, decay)
    print(f"λ = {lam:5.2f}: max error against e^(-kx) on [0, 3] {error:.2e}, L_ODE {residual:.2e}")
print(f"exact solution: L_ODE {fastode.ode_residual(exact, grid, decay):.1e} (finite-difference error only)")


def draw(plt):
    figure, axes = plt.subplots(figsize=(5.5, 3.5))
    axes.plot(x_data, y_data, "ko", label="data")
    axes.plot(grid, exact, "k:", label="e^(-kx)")
    for lam, fit in fits.items():
        axes.plot(grid, fit, label=f"λ = {lam:g}")
    axes.set(ylim=(-0.5, 1.5), xlabel="x", ylabel="y", title="L_data + λ L_ODE")
    axes.legend()
    return figure


save_figure(draw, "residual_regularization.png")
