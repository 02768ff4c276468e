"""Neural ODEs and continuous normalizing flows on the compiled MLP field."""

from __future__ import annotations

import numpy as np

from . import _core
from ._solve import solve
from ._systems import Linear, System, _per_trajectory, _rows

__all__ = ["MLP", "cnf", "log_prob", "neural_ode"]

#: Activation names and their codes in the C++ core (`fastode::Activation`).
ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2, "softplus": 3, "sigmoid": 4}

TRACES = ("exact", "hutchinson")


def _tensor_view(name: str, tensor) -> np.ndarray:
    """Return a NumPy view of a CPU PyTorch tensor's memory, detached from autograd.

    A tensor on another device raises, because a silent device-to-host copy
    would hide the transfer and stop in-place updates from reaching the field.
    """
    device = getattr(tensor, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        msg = (
            f"{name} is a PyTorch tensor on device {device}; the C++ core reads host "
            f"memory, so pass {name}.cpu() (an explicit copy)"
        )
        raise ValueError(msg)
    try:
        return tensor.detach().numpy()
    except (TypeError, RuntimeError) as error:
        msg = f"{name} is a PyTorch tensor that NumPy cannot view ({error}); convert it to float32 or float64"
        raise TypeError(msg) from error


def _reject_grad_tensor(name: str, value) -> None:
    """Raise TypeError for a PyTorch tensor that requires grad.

    fastode computes with NumPy and returns NumPy arrays, so no gradient
    flows back to such an input. Raising here keeps a training loop from
    losing that gradient silently. `MLP` weights are the exception, because
    `MLP` detaches them on purpose to share their memory.
    """
    if getattr(value, "requires_grad", False) is True:
        msg = (
            f"{name} is a PyTorch tensor that requires grad, but fastode computes with "
            f"NumPy and no gradient flows back to it; pass {name}.detach()"
        )
        raise TypeError(msg)


def _is_tensor(value) -> bool:
    return hasattr(value, "detach") and hasattr(value, "numpy")


def _as_array(name: str, value) -> np.ndarray:
    """Return ``value`` as a float32 or float64 array, without a copy where possible.

    float64 and float32 arrays, and CPU PyTorch tensors of those types, are
    viewed, not copied: a tensor requiring grad is detached first, and its
    memory is shared. Other real types are converted to float64.
    """
    if _is_tensor(value):
        value = _tensor_view(name, value)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must contain real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        msg = f"{name} contains NaN or infinity"
        raise ValueError(msg)
    return array


def _activate(activation: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the activation of z and its derivative, with NumPy."""
    if activation == "tanh":
        a = np.tanh(z)
        return a, 1.0 - a * a
    if activation == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(z.dtype)
    if activation == "softplus":
        sigmoid = np.exp(-np.logaddexp(0.0, -z))
        return np.logaddexp(0.0, z), sigmoid
    if activation == "sigmoid":
        s = np.exp(-np.logaddexp(0.0, -z))
        return s, s * (1.0 - s)
    return z, np.ones_like(z)


class MLP(System):
    """The neural-ODE vector field dh/dt = f(h, t), a multilayer perceptron.

    f(h, t) = W_L σ(… σ(W_1 x + b_1) …) + b_L with x = h, or x = (h, t) when
    ``time_input`` is set. Every trajectory shares the weights.

    Parameters
    ----------
    weights : sequence of array_like
        W_1 … W_L, each of shape (out, in) as in PyTorch's ``nn.Linear``.
        W_1 takes d inputs (d + 1 with ``time_input``) and W_L returns d.
        NumPy arrays and CPU PyTorch tensors are accepted. float32 and float64
        values are kept as views of the caller's memory (a tensor requiring
        grad is detached), so in-place updates of the weights, such as an
        optimizer step, reach the next solve. PyTorch tensors are viewed
        again at every use, so a parameter that PyTorch moves to new memory
        (``module.double()``) is read there. A CUDA tensor raises ValueError;
        pass ``tensor.cpu()``.
    biases : sequence of array_like, optional
        b_1 … b_L, each of shape (out,); zero when omitted.
    activation : {"tanh", "relu", "softplus", "sigmoid", "identity"}
        σ, applied after every layer except the last.
    time_input : bool
        Append the time t as one more input of the first layer.

    Notes
    -----
    A field with d <= 8 and hidden widths up to 256 runs on kernels compiled
    for its d. Any other field, with every layer width (d included) up to
    4096, runs on kernels with a run-time dimension. Each solve packs the
    weights into one contiguous buffer of the solve dtype, which is the one
    copy the kernels read. The ReLU derivative at 0 is taken as 0.

    ``backend="cupy"`` runs fields with d <= 8 and hidden widths up to 256,
    one GPU thread per trajectory, and raises ValueError for larger ones.
    ``backend="auto"`` keeps MLP fields on the CPU.
    NOTE: the GPU kernels compile to PTX in the tests but have not run on a
    GPU yet.
    """

    _kernel = "solve_mlp"

    def __init__(self, weights, biases=None, activation="tanh", time_input=False):
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            msg = f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            raise ValueError(msg)
        self.activation = activation
        self.time_input = bool(time_input)
        self._layers = _check_layers(weights, biases, self.time_input)
        # Keep the tensors themselves: PyTorch gives a parameter new memory
        # when its dtype or device changes, and a view of the old one goes stale.
        self._tensors = None
        if any(_is_tensor(v) for v in [*weights, *(biases if biases is not None else [])]):
            self._tensors = (list(weights), None if biases is None else list(biases))

    @property
    def weights(self) -> list[np.ndarray]:
        """W_1 … W_L as arrays, views of the caller's memory where possible."""
        return self._current_layers()[0]

    @property
    def biases(self) -> list[np.ndarray]:
        """b_1 … b_L as arrays."""
        return self._current_layers()[1]

    def _current_layers(self):
        if self._tensors is not None:
            self._layers = _check_layers(*self._tensors, self.time_input)
        return self._layers

    @property
    def dim(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def widths(self) -> list[int]:
        """Input width, each hidden width, and the output width d."""
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    def _params(self, dtype) -> np.ndarray:
        """Weights and biases in one buffer, layer by layer (W_k row-major, b_k).

        Packed at every call, not cached, so that the kernels see in-place
        updates of weights that are views of the caller's arrays or tensors.
        """
        weights, biases = self._current_layers()
        parts = [p for w, b in zip(weights, biases) for p in (w.ravel(), b)]
        return np.concatenate(parts, dtype=dtype)

    def _core_arguments(self, n, dtype):
        return {
            "params": self._params(dtype),
            "widths": np.asarray(self.widths, dtype=np.int32),
            "activation": ACTIVATIONS[self.activation],
            "time_input": self.time_input,
        }

    def _input(self, t, y) -> np.ndarray:
        if not self.time_input:
            return y
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (len(y),))
        return np.concatenate([y, t[:, None]], axis=1)

    def rhs(self, t, y):
        weights, biases = self._current_layers()
        x = self._input(t, np.asarray(y, dtype=np.float64))
        for w, b in zip(weights[:-1], biases[:-1]):
            x, _ = _activate(self.activation, x @ w.T + b)
        return x @ weights[-1].T + biases[-1]

    def jacobian(self, t, y) -> np.ndarray:
        """Compute the exact Jacobian ∂f/∂h with NumPy: shape (N, d, d) for
        states ``y`` (N, d), or (d, d) for one state (d,)."""
        batch, single = _check_states("y", y, self.dim, finite=False)
        jac = self._batch_jacobian(t, batch.astype(np.float64))
        return jac[0] if single else jac

    def _batch_jacobian(self, t, y: np.ndarray) -> np.ndarray:
        weights, biases = self._current_layers()
        x = self._input(t, y)
        d = self.dim
        # M = ∂(layer output)/∂h, carried through the layers by the chain rule.
        jac = np.broadcast_to(weights[0][:, :d], (len(y), *weights[0][:, :d].shape))
        for k, (w, b) in enumerate(zip(weights[:-1], biases[:-1])):
            x, slope = _activate(self.activation, x @ w.T + b)
            jac = slope[:, :, None] * jac
            jac = np.einsum("ij,njk->nik", weights[k + 1], jac)
        return np.array(jac)

    def evaluate(self, t, y, threads=1) -> np.ndarray:
        """Evaluate f(h, t) in compiled code for states ``y`` (N, d) or one
        state (d,), returning an array of the same shape.

        ``t`` is a scalar or one time per row. float32 states are evaluated
        in float32, everything else in float64.
        """
        y, t, single = _state_and_time(y, t, self.dim)
        args = self._core_arguments(len(y), y.dtype)
        dy = _core.eval_mlp(y, t, threads=threads, **args)["dy"]
        return dy[0] if single else dy

    def unit_trace(self) -> np.ndarray:
        """c_i = sum_j (W_1)_ij (W_2)_ji over the state inputs j, for one hidden layer.

        With s_i the activation slope of hidden unit i, tr(∂f/∂h) =
        tr(W_2 diag(s) W_1[:, :d]) = sum_i s_i c_i, which is what the compiled
        CNF sums.
        """
        weights = self.weights
        if len(weights) != 2:
            msg = f"unit_trace needs exactly one hidden layer, this MLP has {len(weights) - 1}"
            raise ValueError(msg)
        w1, w2 = (w.astype(np.float64, copy=False) for w in weights)
        return np.einsum("ij,ji->i", w1[:, : self.dim], w2)

    def __repr__(self):
        widths = "-".join(str(w) for w in self.widths)
        return f"MLP({widths}, activation={self.activation!r}, time_input={self.time_input})"


def _check_layers(weights, biases, time_input):
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__") or len(weights) == 0:
        msg = "weights must be a non-empty sequence of 2-D arrays, one per layer"
        raise TypeError(msg)
    weights = [_as_array(f"weights[{k}]", w) for k, w in enumerate(weights)]
    if biases is None:
        biases = [np.zeros(w.shape[0]) for w in weights]
    elif len(biases) != len(weights):
        msg = f"biases has {len(biases)} entries but weights has {len(weights)}; give one per layer"
        raise ValueError(msg)
    biases = [_as_array(f"biases[{k}]", b) for k, b in enumerate(biases)]
    for k, w in enumerate(weights):
        if w.ndim != 2 or min(w.shape) == 0:
            msg = f"weights[{k}] must be a non-empty 2-D array (out, in), got shape {w.shape}"
            raise ValueError(msg)
        if k > 0 and w.shape[1] != weights[k - 1].shape[0]:
            msg = (
                f"weights[{k}] has {w.shape[1]} inputs but weights[{k - 1}] has "
                f"{weights[k - 1].shape[0]} outputs"
            )
            raise ValueError(msg)
        if biases[k].shape != (w.shape[0],):
            msg = f"biases[{k}] must have shape ({w.shape[0]},), got {biases[k].shape}"
            raise ValueError(msg)
        if max(w.shape) > _core.MLP_MAX_WIDE_WIDTH:
            msg = (
                f"weights[{k}] has shape {w.shape}; layer widths, the state "
                f"dimension included, may be at most {_core.MLP_MAX_WIDE_WIDTH}"
            )
            raise ValueError(msg)
    d = weights[-1].shape[0]
    n_input = d + (1 if time_input else 0)
    if weights[0].shape[1] != n_input:
        extra = " plus 1 for the time" if time_input else ""
        msg = (
            f"weights[0] has {weights[0].shape[1]} inputs; the first layer must take "
            f"the state dimension {d}{extra} = {n_input}"
        )
        raise ValueError(msg)
    return weights, biases


def _check_states(name: str, value, dim: int, finite: bool = True) -> tuple[np.ndarray, bool]:
    """Return ``value`` as a batch (N, dim) and whether it was 1-D.

    The checks run here so that messages name the caller's argument, not the
    ``y0`` of the `solve` call underneath.
    """
    _reject_grad_tensor(name, value)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        msg = f"{name} must contain real numbers, got dtype {array.dtype}"
        raise TypeError(msg)
    single = array.ndim == 1
    batch = array[None] if single else array
    if batch.ndim != 2 or batch.shape[1] != dim:
        msg = f"{name} must have shape ({dim},) or (N, {dim}), got {array.shape}"
        raise ValueError(msg)
    if finite and not np.all(np.isfinite(batch)):
        rows = np.flatnonzero(~np.all(np.isfinite(batch), axis=1))
        msg = f"{name} contains NaN or infinity in rows {rows[:10].tolist()}"
        raise ValueError(msg)
    return batch, single


def _state_and_time(y, t, dim):
    """Return states (N, dim), times and whether ``y`` was one 1-D state."""
    y, single = _check_states("y", y, dim, finite=False)
    dtype = np.float32 if y.dtype == np.float32 else np.float64
    y = np.ascontiguousarray(y, dtype=dtype)
    t = np.ascontiguousarray(np.atleast_1d(np.asarray(t, dtype=dtype)))
    if t.shape not in ((1,), (len(y),)):
        msg = f"t must be a scalar or have shape ({len(y)},), got {t.shape}"
        raise ValueError(msg)
    return y, t, single


def neural_ode(mlp, h0, t_span, **solve_kwargs):
    """Integrate a neural ODE dh/dt = f(h, t) for a batch of inputs.

    Parameters
    ----------
    mlp : MLP
        The vector field.
    h0 : array_like, shape (N, d) or (d,)
        Initial hidden states.
    t_span : pair of float
        (t0, t1).
    **solve_kwargs
        Passed to `fastode.solve` (``method``, ``dt``, ``rtol``, ``t_eval`` …).

    Returns
    -------
    ndarray
        h(t1), shape (N, d) or (d,); with ``t_eval``, h at each output time,
        shape (N, T, d).

    Raises
    ------
    IntegrationError
        When a trajectory fails (non-finite state, ``max_steps`` exhausted).
    """
    if not isinstance(mlp, MLP):
        msg = f"mlp must be a fastode.MLP, got {type(mlp).__name__}"
        raise TypeError(msg)
    _check_states("h0", h0, mlp.dim)
    return solve(mlp, h0, t_span, **solve_kwargs).raise_on_failure().y


class _FlowSystem(System):
    """An MLP field with its log-density change: state (z, a), da/dt = -tr(∂f/∂z)."""

    _kernel = "solve_mlp_cnf"

    def __init__(self, mlp: MLP, trace: str, probes: np.ndarray | None):
        self.mlp = mlp
        self.trace = trace
        self.use_unit_trace = trace == "exact" and len(mlp.weights) == 2
        if trace == "exact" and not self.use_unit_trace:
            probes = np.eye(mlp.dim)
        self.probes = probes
        self.probe_scale = 1.0 if trace == "exact" else 1.0 / probes.shape[-2]

    @property
    def dim(self) -> int:
        return self.mlp.dim + 1

    def _core_arguments(self, n, dtype):
        args = self.mlp._core_arguments(n, dtype)
        d = self.mlp.dim
        if self.use_unit_trace:
            args["probes"] = np.zeros((1, 1, d), dtype=dtype)
            args["n_probes"] = 1
            args["unit_trace"] = np.ascontiguousarray(self.mlp.unit_trace(), dtype=dtype)
        else:
            n_probes = self.probes.shape[-2]
            args["probes"] = _per_trajectory("probes", self.probes, n, (n_probes, d), dtype)
            args["n_probes"] = n_probes
            args["unit_trace"] = np.zeros(0, dtype=dtype)
        args["probe_scale"] = self.probe_scale
        args["use_unit_trace"] = self.use_unit_trace
        return args

    def rhs(self, t, y):
        y = np.asarray(y, dtype=np.float64)
        d = self.mlp.dim
        z = y[:, :d]
        jac = self.mlp.jacobian(t, z)
        if self.trace == "exact":
            trace = np.trace(jac, axis1=1, axis2=2)
        else:
            probes = np.broadcast_to(self.probes, (len(y), *self.probes.shape[-2:]))
            trace = np.einsum("npi,nij,npj->n", probes, jac, probes) * self.probe_scale
        return np.concatenate([self.mlp.rhs(t, z), -trace[:, None]], axis=1)

    def evaluate(self, t, y, threads=1) -> np.ndarray:
        """Evaluate the compiled (f, -trace) at augmented states ``y`` (N, d + 1)."""
        y, t, single = _state_and_time(y, t, self.dim)
        args = self._core_arguments(len(y), y.dtype)
        dy = _core.eval_mlp_cnf(y, t, threads=threads, **args)["dy"]
        return dy[0] if single else dy


def _rademacher(n: int, n_probes: int, d: int, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n, n_probes, d)).astype(np.float64) * 2.0 - 1.0


def _check_trace(trace, n_probes):
    if trace not in TRACES:
        msg = f"trace must be one of {list(TRACES)}, got {trace!r}"
        raise ValueError(msg)
    if isinstance(n_probes, bool) or not isinstance(n_probes, (int, np.integer)):
        msg = f"n_probes must be an integer, got {n_probes!r}"
        raise TypeError(msg)
    if not 1 <= n_probes <= _core.MLP_MAX_PROBES:
        msg = f"n_probes must be in 1 .. {_core.MLP_MAX_PROBES}, got {n_probes}"
        raise ValueError(msg)


def cnf(field, z0, t_span, trace="exact", n_probes=1, seed=None, **solve_kwargs):
    """Push samples through a continuous normalizing flow dz/dt = f(z, t).

    Integrates z together with the instantaneous change of variables
    d log p(z(t)) / dt = -tr(∂f/∂z) (Chen et al., "Neural Ordinary Differential
    Equations", 2018).

    Parameters
    ----------
    field : MLP or Linear
        The vector field. For `Linear`, the trace is the constant tr A and z
        is integrated on its own.
    z0 : array_like, shape (N, d) or (d,)
        Samples at t0.
    t_span : pair of float
        (t0, t1); t1 < t0 runs the flow backwards.
    trace : {"exact", "hutchinson"}
        ``exact``: the full trace. For an MLP with one hidden layer it is the
        sum over hidden units of the activation slope times (W_1 W_2)_ii.
        For deeper MLPs it costs d Jacobian-vector products per evaluation.
        ``hutchinson``: the unbiased estimate (1/P) sum_p v_p^T (∂f/∂z) v_p with
        P = ``n_probes`` Rademacher vectors per sample, drawn once and kept
        fixed over the span (as FFJORD does), so one forward-mode product
        per probe.
    n_probes : int
        Number of Hutchinson probes per sample, 1 to 64.
    seed : int or numpy.random.Generator, optional
        Seed of the Hutchinson probes.
    **solve_kwargs
        Passed to `fastode.solve`. The log-density change is part of the
        integrated state, so adaptive methods control its error too.

    Returns
    -------
    z : ndarray, shape (N, d)
        z(t1) (with ``t_eval``: shape (N, T, d)).
    delta_log_p : ndarray, shape (N,)
        log p_t1(z(t1)) - log p_t0(z0) (with ``t_eval``: shape (N, T)).

    Raises
    ------
    IntegrationError
        When a trajectory fails.
    """
    return _flow(field, "z0", z0, t_span, trace, n_probes, seed, solve_kwargs)


def _flow(field, name, z0, t_span, trace, n_probes, seed, solve_kwargs):
    """Integrate a flow as `cnf` does; ``name`` is the caller's name for z0 in messages."""
    _check_trace(trace, n_probes)
    if not isinstance(field, (MLP, Linear)):
        msg = f"field must be a fastode.MLP or fastode.Linear, got {type(field).__name__}"
        raise TypeError(msg)
    batch, single = _check_states(name, z0, field.dim)
    if isinstance(field, Linear):
        return _linear_cnf(field, name, batch, single, t_span, trace, n_probes, seed, solve_kwargs)
    probes = None
    if trace == "hutchinson":
        probes = _rademacher(len(batch), n_probes, field.dim, seed)
    system = _FlowSystem(field, trace, probes)
    dtype = np.float32 if batch.dtype == np.float32 else np.float64
    augmented = np.concatenate([batch.astype(dtype), np.zeros((len(batch), 1), dtype)], axis=1)
    y = solve(system, augmented, t_span, **solve_kwargs).raise_on_failure().y
    z, delta = y[..., : field.dim], y[..., field.dim]
    return (z[0], delta[0]) if single else (z, delta)


def _linear_cnf(field, name, batch, single, t_span, trace, n_probes, seed, solve_kwargs):
    """CNF of dz/dt = A z + b: the trace is constant, so the log-density
    change is -tr(A) (t1 - t0), or its Hutchinson estimate, in closed form."""
    n = len(batch)
    if field.A.ndim == 3 and field.A.shape[0] not in (1, n):
        msg = (
            f"field.A has {field.A.shape[0]} matrices but {name} has {n} rows; give one "
            f"matrix shared by all samples or one per sample"
        )
        raise ValueError(msg)
    z = solve(field, batch, t_span, **solve_kwargs).raise_on_failure().y
    A = _rows(_per_trajectory("A", field.A, n, (field.dim, field.dim), np.float64), n)
    if trace == "exact":
        rate = np.trace(A, axis1=1, axis2=2)
    else:
        probes = _rademacher(n, n_probes, field.dim, seed)
        rate = np.einsum("npi,nij,npj->n", probes, A, probes) / n_probes
    t0, t1 = (float(v) for v in t_span)
    t_out = solve_kwargs.get("t_eval")
    elapsed = (np.asarray(t_out, dtype=np.float64) if t_out is not None else t1) - t0
    delta = (-np.multiply.outer(rate, elapsed)).astype(z.dtype)
    return (z[0], delta[0]) if single else (z, delta)


def log_prob(field, x, t_span, trace="exact", n_probes=1, seed=None, **solve_kwargs):
    """Log-density of data under a flow from a standard-normal base.

    The model draws z ~ N(0, I) at t0 = ``t_span[0]`` and flows it to
    t1 = ``t_span[1]``. Each x is flowed backwards to its base point z, and
    log p(x) = log N(z; 0, I) - ∫_{t0}^{t1} tr(∂f/∂z) dt.

    Parameters are those of `cnf`, except ``t_eval``, which raises
    TypeError: the density is defined at t1 only. Returns an array of
    shape (N,), or a scalar for a single 1-D ``x``.
    """
    if "t_eval" in solve_kwargs:
        msg = (
            "log_prob does not accept t_eval, because it returns log p(x) at t_span[1] "
            "only. Call fastode.cnf with t_eval for the flow at intermediate times"
        )
        raise TypeError(msg)
    t0, t1 = t_span
    z, delta = _flow(field, "x", x, (t1, t0), trace, n_probes, seed, solve_kwargs)
    d = np.shape(z)[-1]
    log_base = -0.5 * np.sum(np.square(z), axis=-1) - 0.5 * d * np.log(2.0 * np.pi)
    return log_base - delta
