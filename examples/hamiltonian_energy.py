"""Hamiltonian oscillator H = p²/2 + k q²/2: symplectic versus RK4.

Over a thousand periods at a coarse step, RK4's energy drifts steadily while
the symplectic Verlet and Yoshida methods keep it within a bounded band.
The exact solution is q = cos(√k t), p = -√k sin(√k t).
"""

import numpy as np

import fastode
from _plot import save_figure

k, dt = 1.0, 0.2
periods = 1000
T = periods * 2 * np.pi / np.sqrt(k)
t = np.linspace(0.0, T, 2001)
system = fastode.Hamiltonian("harmonic", k=k)
y0 = [1.0, 0.0]

energies = {}
for method in ["rk4", "verlet", "yoshida4"]:
    sol = fastode.solve(system, y0, (0.0, T), t_eval=t, method=method, dt=dt)
    energy = system.energy(sol.y)
    energies[method] = energy
    drift = np.max(np.abs(energy - 0.5))
    q_error = abs(sol.y[-1, 0] - np.cos(np.sqrt(k) * T))
    print(f"{method:9s} dt = {dt}: max energy error {drift:.2e}, final q error {q_error:.2e}")


def draw(plt):
    figure, axes = plt.subplots(figsize=(5.5, 3.5))
    for method, energy in energies.items():
        axes.semilogy(t / (2 * np.pi), np.abs(energy - 0.5) + 1e-17, label=method)
    axes.set(title=f"|H - H0|, dt = {dt}", xlabel="periods", ylabel="energy error")
    axes.legend()
    return figure


save_figure(draw, "hamiltonian_energy.png")
