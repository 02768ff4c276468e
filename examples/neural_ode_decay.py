"""Neural ODE hidden state: dh/dt = f(h) with the linear field f = -k h.

A one-layer MLP with the identity activation and weight -k I is the field
whose flow is h(t) = h0 e^(-kt). A batch of inputs goes through it in one call.
"""

import numpy as np

import fastode
from _plot import save_figure

k, d = 1.5, 4
mlp = fastode.MLP([-k * np.eye(d)], [np.zeros(d)], activation="identity")
rng = np.random.default_rng(0)
h0 = rng.normal(size=(10_000, d))
t = np.linspace(0.0, 2.0, 41)

h = fastode.neural_ode(mlp, h0, (0.0, 2.0), t_eval=t, method="rk4", dt=0.01)
exact = h0[:, None, :] * np.exp(-k * t)[None, :, None]
print(f"neural ODE decay, {len(h0)} inputs, rk4 dt=0.01: max error {np.max(np.abs(h - exact)):.2e}")

# The same call with a nonlinear field: a random tanh network, time as input.
widths = [d + 1, 32, d]
weights = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths, widths[1:])]
tanh_mlp = fastode.MLP(weights, [np.zeros(32), np.zeros(d)], activation="tanh", time_input=True)
h_tanh = fastode.neural_ode(tanh_mlp, h0[:5], (0.0, 2.0), t_eval=t, rtol=1e-8, atol=1e-10)


def draw(plt):
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for n in range(3):
        left.plot(t, h[n, :, 0], label=f"input {n}")
        left.plot(t, exact[n, :, 0], "k:", lw=1)
    left.set(title="linear field: h0 e^(-kt) (dotted)", xlabel="t", ylabel="h[0]")
    for n in range(5):
        right.plot(t, h_tanh[n, :, 0])
    right.set(title="random tanh field, time input", xlabel="t")
    return figure


save_figure(draw, "neural_ode_decay.png")
