"""A continuous normalizing flow that turns a standard Gaussian into a ring.

The target field is radial, v(z) = α z (R² - |z|²): it pushes points toward
the circle |z| = R. A tanh MLP fitted to it (random first layer, output layer
by least squares) is the CNF field. `fastode.cnf` carries each sample's
log-density along, and the check is Liouville's formula: the change of
log-density equals -log |det ∂z(T)/∂z0|, here from finite differences of the
integrated flow. The exact radial flow (s = |z|² obeys a logistic ODE) gives
a second, closed-form reference that measures the fit of the MLP.
"""

import numpy as np

import fastode
from _plot import save_figure

alpha, R, T, hidden = 0.25, 2.0, 2.0, 128
rng = np.random.default_rng(2)

# Fit the MLP field on the disk |z| < 4, where the samples travel.
W1 = rng.normal(size=(hidden, 2)) * 0.8
b1 = rng.uniform(-3.0, 3.0, size=hidden)
points = rng.uniform(-4.0, 4.0, size=(20_000, 2))
points = points[np.hypot(*points.T) < 4.0]
target = alpha * points * (R**2 - np.sum(points**2, axis=1, keepdims=True))
features = np.tanh(points @ W1.T + b1)
design = np.concatenate([features, np.ones((len(points), 1))], axis=1)
coef, *_ = np.linalg.lstsq(design, target, rcond=None)
mlp = fastode.MLP([W1, coef[:-1].T], [b1, coef[-1]], activation="tanh")
fit_error = np.max(np.abs(mlp.rhs(0.0, points) - target)) / np.max(np.abs(target))
print(f"MLP fit of the radial field on |z| < 4: relative max error {fit_error:.1e}")

z0 = rng.normal(size=(5000, 2))
tight = {"rtol": 1e-10, "atol": 1e-10}
z, delta = fastode.cnf(mlp, z0, (0.0, T), **tight)

# Liouville check on a few samples: finite-difference Jacobian of the flow map.
step = 1e-5
errors = []
for row in range(5):
    shifted = np.concatenate([z0[row] + step * np.eye(2), z0[row] - step * np.eye(2)])
    moved = fastode.neural_ode(mlp, shifted, (0.0, T), **tight)
    jacobian = ((moved[:2] - moved[2:]) / (2 * step)).T
    errors.append(abs(delta[row] + np.linalg.slogdet(jacobian)[1]))
print(f"log-density change vs finite-difference log det: max error {max(errors):.1e}")

# The exact radial flow: s = |z|² with s' = 2α s (R² - s), and det = ds/ds0.
s0 = np.sum(z0**2, axis=1)
growth = np.exp(2 * alpha * R**2 * T)
s = R**2 * s0 * growth / (R**2 + s0 * (growth - 1))
exact_delta = -(np.log(R**4 * growth) - 2 * np.log(R**2 + s0 * (growth - 1)))
radius_error = np.max(np.abs(np.hypot(*z.T) - np.sqrt(s)))
delta_error = np.max(np.abs(delta - exact_delta))
print(f"against the exact radial flow (limited by the fit): radius error {radius_error:.1e}, "
      f"log-density error {delta_error:.1e}")
_, estimate = fastode.cnf(mlp, z0[:1000], (0.0, T), trace="hutchinson", seed=0, **tight)
bias = np.mean(estimate - delta[:1000])
print(f"Hutchinson's estimate, 1 probe per sample: mean error over 1000 samples {bias:.1e}")


def draw(plt):
    grid = np.linspace(-3.5, 3.5, 81)
    X, Y = np.meshgrid(grid, grid)
    x = np.stack([X.ravel(), Y.ravel()], axis=1)
    density = np.exp(fastode.log_prob(mlp, x, (0.0, T), rtol=1e-6, atol=1e-8)).reshape(X.shape)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.6))
    left.scatter(*z0[:3000].T, s=1, alpha=0.4)
    left.set(title="samples at t = 0", aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
    middle.scatter(*z[:3000].T, s=1, alpha=0.4, c=delta[:3000], cmap="viridis")
    middle.set(title="samples at t = T (colour: Δ log p)", aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
    right.imshow(density, extent=(-3.5, 3.5, -3.5, 3.5), origin="lower", cmap="magma")
    right.set(title="model density p(x) by log_prob")
    return figure


save_figure(draw, "cnf_ring.png")
