"""Built-in systems whose right-hand sides run entirely in compiled code."""

from __future__ import annotations

import numpy as np

__all__ = ["Hamiltonian", "Linear", "Lorenz", "Oscillator", "System"]

#: Largest state dimension of the compiled `Linear` system.
LINEAR_MAX_DIM = 8


class System:
    """Base class of the systems `fastode.solve` integrates.

    A subclass stores its parameters as given and turns them into arrays of
    the solve dtype in `_core_arguments`, each shaped ``(1, ...)`` when all
    trajectories share it or ``(N, ...)`` with one row per trajectory.
    """

    #: Name of the `fastode._core` function that integrates this system.
    _kernel: str = ""
    #: Whether the system is a separable Hamiltonian (symplectic methods apply).
    separable = False

    @property
    def dim(self) -> int:
        """Number of state components of one trajectory."""
        raise NotImplementedError

    def _core_arguments(self, n: int, dtype: np.dtype) -> dict:
        raise NotImplementedError

    def rhs(self, t, y):
        """Evaluate dy/dt for states ``y`` of shape (N, dim) with NumPy.

        A slow reference used by tests and examples, not by the solvers.
        """
        raise NotImplementedError


def _per_trajectory(name: str, value, n: int, tail: tuple, dtype) -> np.ndarray:
    """Return ``value`` as an array of shape (1, *tail) or (n, *tail)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must be real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    array = array.astype(dtype, copy=False)
    if array.shape == tail:
        return np.ascontiguousarray(array.reshape((1, *tail)))
    if array.shape == (n, *tail):
        return np.ascontiguousarray(array)
    shared = tail if tail else "a scalar"
    msg = (
        f"{name} has shape {array.shape}; expected {shared} (shared by all "
        f"trajectories) or {(n, *tail)} (one per trajectory of this batch of {n})"
    )
    if n == 1 and array.ndim == len(tail) + 1:
        rows = array.shape[0]
        msg += f"; to start all {rows} from the same state, pass np.tile(y0, ({rows}, 1))"
    raise ValueError(msg)


def _check_scalar_params(params: dict) -> dict:
    """Return copies of the parameters after checking that each is a real
    scalar or a 1-D array (one value per trajectory), so a bad value fails
    where it was given rather than at the first solve."""
    from ._cupy._device import is_device_array

    checked = {}
    for name, value in params.items():
        if is_device_array(value):
            # Checked by backend="cupy" at solve time, without a host copy.
            checked[name] = value
            continue
        array = np.array(value)
        if array.dtype.kind not in "biuf":
            msg = f"{name} must be a real number or a 1-D array of them, got {value!r}"
            raise TypeError(msg)
        if array.ndim > 1:
            msg = (
                f"{name} must be a scalar or have shape (N,) with one value per "
                f"trajectory, got shape {array.shape}"
            )
            raise ValueError(msg)
        # A copy, so later changes to the caller's array do not change the system.
        checked[name] = array.item() if array.ndim == 0 else array
    return checked


def _rows(value, n: int) -> np.ndarray:
    """Broadcast a parameter stored as (1, ...) or (n, ...) against n states."""
    return np.broadcast_to(value, (n, *value.shape[1:]))


class Linear(System):
    """dy/dt = A y + b.

    Parameters
    ----------
    A : array_like, shape (d, d) or (N, d, d)
        One matrix shared by all trajectories, or one per trajectory.
    b : array_like, shape (d,) or (N, d), optional
        Constant forcing; zero when omitted.

    Notes
    -----
    The C++ core compiles this system for 1 <= d <= 8.
    """

    _kernel = "solve_linear"

    def __init__(self, A, b=None):
        A = np.array(A)
        if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2] or A.shape[-1] == 0:
            msg = f"A must have shape (d, d) or (N, d, d) with d >= 1, got {A.shape}"
            raise ValueError(msg)
        if not np.isrealobj(A):
            msg = f"A must be real, got dtype {A.dtype}; complex systems are not supported"
            raise TypeError(msg)
        self.A = A
        self.b = None if b is None else self._checked_b(np.array(b))

    def _checked_b(self, b):
        d = self.dim
        if b.dtype.kind not in "biuf":
            msg = f"b must be real numbers, got dtype {b.dtype}"
            raise TypeError(msg)
        if b.ndim not in (1, 2) or b.shape[-1] != d:
            msg = f"b must have shape ({d},) or (N, {d}) to match A, got {b.shape}"
            raise ValueError(msg)
        return b

    @property
    def dim(self) -> int:
        return self.A.shape[-1]

    def _core_arguments(self, n, dtype):
        d = self.dim
        if d > LINEAR_MAX_DIM:
            msg = (
                f"Linear is compiled for 1 <= d <= {LINEAR_MAX_DIM}, got d = {d}; for a "
                "larger linear system use scipy.linalg.expm"
            )
            raise ValueError(msg)
        A = _per_trajectory("A", self.A, n, (d, d), dtype)
        has_b = self.b is not None
        b = _per_trajectory("b", self.b if has_b else np.zeros(d), n, (d,), dtype)
        return {"A": A, "b": b, "has_b": has_b}

    def rhs(self, t, y):
        args = self._core_arguments(len(y), np.float64)
        return np.einsum("nij,nj->ni", _rows(args["A"], len(y)), y) + args["b"]

    def __repr__(self):
        shared = "shared" if self.A.ndim == 2 else f"{self.A.shape[0]} matrices"
        return f"Linear(d={self.dim}, A={shared}, b={'yes' if self.b is not None else 'no'})"


class _ScalarParameters(System):
    """A system whose parameters, in ``self.params``, are each a scalar or an
    array of shape (N,)."""

    params: dict

    def _core_arguments(self, n, dtype):
        return {
            name: _per_trajectory(name, value, n, (), dtype)
            for name, value in self.params.items()
        }

    def _numpy_params(self, n: int) -> dict:
        """Return each parameter as an (n,) float64 array, for NumPy references."""
        args = self._core_arguments(n, np.float64)
        return {name: _rows(args[name], n) for name in self.params}

    def __repr__(self):
        params = ", ".join(f"{name}={_short(value)}" for name, value in self.params.items())
        return f"{type(self).__name__}({params})"


class Oscillator(_ScalarParameters):
    """x'' + b x' + k x = force cos(omega t), with state (x, v).

    Each parameter is a scalar shared by every trajectory or an array of
    shape (N,) with one value per trajectory.

    Parameters
    ----------
    k : float or array_like
        Stiffness over mass; k > 0 oscillates, k < 0 diverges.
    b : float or array_like, default 0
        Damping over mass; b² < 4k is underdamped, b² = 4k critical.
    force, omega : float or array_like, default 0
        Amplitude and angular frequency of the forcing.
    """

    _kernel = "solve_oscillator"

    def __init__(self, k, b=0.0, force=0.0, omega=0.0):
        self.params = _check_scalar_params({"k": k, "b": b, "force": force, "omega": omega})

    @property
    def dim(self) -> int:
        return 2

    def rhs(self, t, y):
        p = self._numpy_params(len(y))
        x, v = y[:, 0], y[:, 1]
        a = -p["k"] * x - p["b"] * v + p["force"] * np.cos(p["omega"] * t)
        return np.stack([v, a], axis=1)



class Lorenz(_ScalarParameters):
    """The Lorenz (1963) system x' = σ(y - x), y' = x(ρ - z) - y, z' = xy - βz.

    Each parameter is a scalar or an array of shape (N,).
    """

    _kernel = "solve_lorenz"

    def __init__(self, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
        self.params = _check_scalar_params({"sigma": sigma, "rho": rho, "beta": beta})

    @property
    def dim(self) -> int:
        return 3

    def rhs(self, t, y):
        p = self._numpy_params(len(y))
        x, u, z = y[:, 0], y[:, 1], y[:, 2]
        return np.stack(
            [p["sigma"] * (u - x), x * (p["rho"] - z) - u, x * u - p["beta"] * z], axis=1
        )



#: Degrees of freedom of each built-in potential.
POTENTIALS = {"harmonic": 1, "pendulum": 1, "kepler": 2, "henon_heiles": 2}


class Hamiltonian(_ScalarParameters):
    """A separable Hamiltonian H(q, p) = |p|² / (2 m) + V(q), state (q, p).

    Parameters
    ----------
    potential : {"harmonic", "pendulum", "kepler", "henon_heiles"}
        ``harmonic``: V = k q² / 2 (one degree of freedom).
        ``pendulum``: V = k (1 - cos q), with k = g / L (one).
        ``kepler``: V = -k / |q| in the plane, with k = G M (two).
        ``henon_heiles``: V = (x² + y²) / 2 + k (x² y - y³ / 3) (two).
    k : float or array_like, shape (N,)
        Strength of the potential, default 1.
    mass : float or array_like, shape (N,)
        Mass m, default 1.
    """

    _kernel = "solve_hamiltonian"
    separable = True

    def __init__(self, potential, mass=1.0, k=1.0):
        if potential not in POTENTIALS:
            msg = f"potential must be one of {sorted(POTENTIALS)}, got {potential!r}"
            raise ValueError(msg)
        self.potential = potential
        self.params = _check_scalar_params({"k": k, "mass": mass})
        self._check_mass(self.params["mass"])

    @staticmethod
    def _check_mass(mass):
        if not isinstance(mass, (float, int, np.ndarray)):
            return  # a device array, which is not copied to the host to check
        masses = np.asarray(mass)
        if not np.all(masses > 0):
            bad = masses.reshape(-1)[np.flatnonzero(~(masses.reshape(-1) > 0))[0]].item()
            msg = f"mass must be > 0, got {bad!r}"
            raise ValueError(msg)

    @property
    def dof(self) -> int:
        """Degrees of freedom: the length of q and of p."""
        return POTENTIALS[self.potential]

    @property
    def dim(self) -> int:
        return 2 * self.dof

    def _core_arguments(self, n, dtype):
        return {**super()._core_arguments(n, dtype), "potential": self.potential}

    def _k_and_mass(self, n):
        params = self._numpy_params(n)
        return params["k"], params["mass"]

    def potential_energy(self, q):
        """V(q) for positions of shape (N, dof)."""
        k, _ = self._k_and_mass(len(q))
        return self._potential(q, k)

    def _potential(self, q, k):
        if self.potential == "harmonic":
            return 0.5 * k * q[:, 0] ** 2
        if self.potential == "pendulum":
            return k * (1.0 - np.cos(q[:, 0]))
        if self.potential == "kepler":
            return -k / np.hypot(q[:, 0], q[:, 1])
        x, u = q[:, 0], q[:, 1]
        return 0.5 * (x**2 + u**2) + k * (x**2 * u - u**3 / 3.0)

    def energy(self, y):
        """H(q, p) for states of shape (dim,), (N, dim) or (N, T, dim).

        These are the shapes of `Solution.y`. A per-trajectory k or mass
        belongs to the first axis, N."""
        y = np.asarray(y, dtype=np.float64)
        n = y.shape[0] if y.ndim > 1 else 1
        # Dense output has T states per trajectory, so each parameter row
        # repeats T times in the flattened (N * T, dim) states.
        per_trajectory = int(np.prod(y.shape[1:-1])) if y.ndim > 2 else 1
        k, mass = (np.repeat(value, per_trajectory) for value in self._k_and_mass(n))
        flat = y.reshape(-1, self.dim)
        q, p = flat[:, : self.dof], flat[:, self.dof :]
        kinetic = 0.5 * np.sum(p**2, axis=1) / mass
        return (kinetic + self._potential(q, k)).reshape(y.shape[:-1])

    def rhs(self, t, y):
        k, mass = self._k_and_mass(len(y))
        q, p = y[:, : self.dof], y[:, self.dof :]
        if self.potential == "harmonic":
            grad = k[:, None] * q
        elif self.potential == "pendulum":
            grad = k[:, None] * np.sin(q)
        elif self.potential == "kepler":
            r3 = np.hypot(q[:, 0], q[:, 1]) ** 3
            grad = k[:, None] * q / r3[:, None]
        else:
            x, u = q[:, 0], q[:, 1]
            grad = np.stack([x + 2 * k * x * u, u + k * (x**2 - u**2)], axis=1)
        return np.concatenate([p / mass[:, None], -grad], axis=1)

    def __repr__(self):
        params = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"Hamiltonian({self.potential!r}, {params})"


def _short(value) -> str:
    array = np.asarray(value)
    return repr(array.item()) if array.ndim == 0 else f"<{array.shape[0]} values>"
