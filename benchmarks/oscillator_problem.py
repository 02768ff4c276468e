"""The benchmark problem: damped oscillators with a closed-form solution.

Every benchmark integrates x'' + b x' + k x = 0 with k = 1 and b = 0.5 over
t in [0, 10] from the same random initial states, and checks its final
states against the closed form so that no entry wins by being wrong.
"""

import numpy as np

K, B = 1.0, 0.5
T1 = 10.0


def initial_states(n: int, seed: int = 0) -> np.ndarray:
    """Return n random initial states (x0, v0) in [-1, 1]², shape (n, 2)."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 2))


def exact_final_states(y0: np.ndarray) -> np.ndarray:
    """Return the exact states at T1 of the underdamped oscillator (b² < 4k)."""
    alpha = -0.5 * B
    omega = np.sqrt(K - alpha**2)
    x0, v0 = y0[:, 0], y0[:, 1]
    c = (v0 - alpha * x0) / omega
    cos, sin, decay = np.cos(omega * T1), np.sin(omega * T1), np.exp(alpha * T1)
    x = decay * (x0 * cos + c * sin)
    v = decay * ((alpha * x0 + omega * c) * cos + (alpha * c - omega * x0) * sin)
    return np.stack([x, v], axis=1)


def max_error(y: np.ndarray, y0: np.ndarray) -> float:
    """Return the maximum absolute difference of final states y from the closed form."""
    return float(np.max(np.abs(y - exact_final_states(y0))))
