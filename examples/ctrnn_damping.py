"""A continuous-time RNN unit as a damped oscillator, h'' + b h' + k h = 0.

The sign of b² - 4k decides the regime: under-damped (it rings), critically
damped (fastest return without overshoot) and over-damped. One call runs all
three, one damping value per trajectory, from h(0) = 1, h'(0) = 0.
"""

import numpy as np

import fastode
from _plot import save_figure

k = 4.0
b = np.array([1.0, 4.0, 10.0])  # b² - 4k = -15, 0, 84
t = np.linspace(0.0, 6.0, 121)


def exact(b, t):
    """h(t) from h(0) = 1, h'(0) = 0 in each regime."""
    disc = b * b - 4 * k
    if disc < 0:
        omega = np.sqrt(-disc) / 2
        return np.exp(-b * t / 2) * (np.cos(omega * t) + b / (2 * omega) * np.sin(omega * t))
    if disc == 0:
        return (1 + b * t / 2) * np.exp(-b * t / 2)
    r1, r2 = (-b + np.sqrt(disc)) / 2, (-b - np.sqrt(disc)) / 2
    return (r1 * np.exp(r2 * t) - r2 * np.exp(r1 * t)) / (r1 - r2)


sol = fastode.solve(fastode.Oscillator(k=k, b=b), np.tile([1.0, 0.0], (3, 1)), (0.0, 6.0),
                    t_eval=t, rtol=1e-10, atol=1e-12)
for n, name in enumerate(["under-damped", "critically damped", "over-damped"]):
    error = np.max(np.abs(sol.y[n, :, 0] - exact(b[n], t)))
    print(f"{name:18s} b = {b[n]:4.1f}, b² - 4k = {b[n] ** 2 - 4 * k:5.1f}: max error {error:.2e}")


def draw(plt):
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for n, name in enumerate(["under-damped", "critical", "over-damped"]):
        axes.plot(t, sol.y[n, :, 0], label=f"{name} (b = {b[n]:g})")
    axes.axhline(0.0, color="0.7", lw=0.8)
    axes.set(title=f"h'' + b h' + {k:g} h = 0", xlabel="t", ylabel="h")
    axes.legend()
    return figure


save_figure(draw, "ctrnn_damping.png")
