"""The MLP field, neural ODEs and continuous normalizing flows, checked
against NumPy evaluations of the same network and closed forms."""

import numpy as np
import pytest
import scipy.linalg

import fastode
from fastode._neural import ACTIVATIONS, _FlowSystem, _rademacher

TIGHT = {"method": "dopri5", "rtol": 1e-12, "atol": 1e-12}


def random_mlp(rng, d, hidden, activation="tanh", time_input=False, scale=1.0):
    widths = [d + int(time_input), *hidden, d]
    weights = [scale * rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(widths, widths[1:])]
    biases = [0.1 * rng.normal(size=o) for o in widths[1:]]
    return fastode.MLP(weights, biases, activation=activation, time_input=time_input)


class FakeTensor:
    """The few methods of a PyTorch tensor that fastode.MLP uses."""

    def __init__(self, array):
        self.array = np.asarray(array)

    def detach(self):
        return self

    def cpu(self):
        return self

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)


# --- the field ----------------------------------------------------------------


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("time_input", [False, True])
def test_mlp_field_matches_numpy(activation, time_input):
    rng = np.random.default_rng(7)
    mlp = random_mlp(rng, 3, [16, 9], activation, time_input, scale=2.0)
    y = 2.0 * rng.normal(size=(41, 3))
    t = rng.normal(size=41)
    expected = mlp.rhs(t, y)
    scale = np.max(np.abs(expected))

    compiled = mlp.evaluate(t, y)
    assert compiled.dtype == np.float64
    np.testing.assert_allclose(compiled, expected, rtol=0, atol=1e-14 * scale)

    single = mlp.evaluate(t, y.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, expected, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "sigmoid", "relu"])
def test_activation_extreme_inputs(activation):
    x = np.array([-1e3, -50, -20, -1, -1e-10, 0, 1e-10, 1e-3, 0.3, 5, 20, 50, 1e3])[:, None]
    mlp = fastode.MLP([[[1.0]], [[1.0]]], activation=activation)
    expected = mlp.rhs(0.0, x)
    compiled = mlp.evaluate(0.0, x)
    # exp(-1000) underflows in NumPy, and the compiled code clamps at exp(-700).
    # The NumPy sigmoid exp(-log(1 + e^-x)) itself loses |x| ulp at x = -20.
    np.testing.assert_allclose(compiled, expected, rtol=4e-15, atol=1e-300)


def test_mlp_deep_and_wide_network():
    rng = np.random.default_rng(3)
    mlp = random_mlp(rng, 8, [256, 7, 256, 33], "softplus", time_input=True)
    y = rng.normal(size=(20, 8))
    expected = mlp.rhs(0.4, y)
    np.testing.assert_allclose(mlp.evaluate(0.4, y), expected, rtol=0, atol=1e-13)


def test_mlp_field_threads_agree():
    rng = np.random.default_rng(4)
    mlp = random_mlp(rng, 2, [32])
    y = rng.normal(size=(1001, 2))
    np.testing.assert_array_equal(mlp.evaluate(0.0, y, threads=2), mlp.evaluate(0.0, y))


def test_mlp_accepts_tensors():
    rng = np.random.default_rng(5)
    weights = [rng.normal(size=(5, 2)), rng.normal(size=(2, 5))]
    biases = [rng.normal(size=5), rng.normal(size=2)]
    plain = fastode.MLP(weights, biases)
    tensors = fastode.MLP([FakeTensor(w) for w in weights], [FakeTensor(b) for b in biases])
    y = rng.normal(size=(4, 2))
    np.testing.assert_array_equal(tensors.evaluate(0.0, y), plain.evaluate(0.0, y))


# --- run-time dimension path (d > 8 or layers wider than 256) ---------------------


@pytest.mark.parametrize(
    ("d", "hidden", "activation", "time_input"),
    [
        (16, [32], "tanh", False),
        (64, [48, 40], "softplus", True),
        (300, [64], "sigmoid", False),
        (4, [300], "relu", True),
        (9, [8, 300, 5], "identity", False),
    ],
)
def test_wide_mlp_field_matches_numpy(d, hidden, activation, time_input):
    rng = np.random.default_rng(d)
    mlp = random_mlp(rng, d, hidden, activation, time_input, scale=2.0)
    # 37 rows: one full block of 32 lanes and one padded block.
    y = 2.0 * rng.normal(size=(37, d))
    t = rng.normal(size=37)
    expected = mlp.rhs(t, y)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(mlp.evaluate(t, y), expected, rtol=0, atol=1e-13 * scale)
    single = mlp.evaluate(t, y.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(mlp.evaluate(t, y, threads=2), mlp.evaluate(t, y))


def test_neural_ode_wide_linear_layer_is_expm():
    rng = np.random.default_rng(17)
    d = 200
    A = -0.5 * np.eye(d) + 0.8 * rng.normal(size=(d, d)) / np.sqrt(d)
    mlp = fastode.MLP([A], activation="identity")
    h0 = rng.normal(size=(40, d))
    h = fastode.neural_ode(mlp, h0, (0.0, 1.0), **TIGHT)
    np.testing.assert_allclose(h, h0 @ scipy.linalg.expm(A).T, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("method", "dt", "tol"),
    [("euler", 1e-4, 5e-4), ("heun", 1e-3, 1e-5), ("rk4", 1e-2, 1e-8),
     ("bs3", None, 1e-6), ("dopri5", None, 1e-9), ("tsit5", None, 1e-9)],
)
def test_neural_ode_wide_outputs_match_expm(method, dt, tol):
    # d = 12 runs on the run-time dimension drivers, including dense output.
    rng = np.random.default_rng(18)
    d = 12
    A = -0.3 * np.eye(d) + rng.normal(size=(d, d)) / np.sqrt(d)
    mlp = fastode.MLP([A], activation="identity")
    h0 = rng.normal(size=(5, d))
    t_eval = np.array([0.0, 0.13, 0.5, 0.77, 1.0])
    kwargs = {"method": method, "dt": dt} if dt else {"method": method, "rtol": 1e-11, "atol": 1e-11}
    sol = fastode.solve(mlp, h0, (0.0, 1.0), t_eval=t_eval, **kwargs)
    assert np.all(sol.status == fastode.Status.SUCCESS)
    for j, t in enumerate(t_eval):
        exact = h0 @ scipy.linalg.expm(t * A).T
        np.testing.assert_allclose(sol.y[:, j], exact, rtol=0, atol=tol)


def test_neural_ode_wide_failures_are_per_trajectory():
    d = 10
    mlp = fastode.MLP([np.eye(d)], activation="identity")
    h0 = np.ones((3, d))
    h0[1, 4] = np.nan
    sol = fastode.solve(mlp, h0, (0.0, 1.0), method="rk4", dt=0.1)
    assert list(sol.status) == [fastode.Status.SUCCESS, fastode.Status.NON_FINITE,
                                fastode.Status.SUCCESS]
    np.testing.assert_allclose(sol.y[0], np.exp(1.0), rtol=1e-5)
    with pytest.warns(fastode.StiffnessWarning):
        limited = fastode.solve(mlp, h0[:1], (0.0, 1.0), max_steps=3)
    assert limited.status[0] == fastode.Status.MAX_STEPS


@pytest.mark.parametrize("with_t_eval", [False, True], ids=["final_only", "t_eval"])
def test_neural_ode_wide_overflow_reports_last_finite_state(with_t_eval):
    """Euler on dh/dt = 1000 h with dt = 1e-3 doubles h each step: from h_0 = 8,
    h_k = 2^(k + 3) (to rounding). f = 1000 h first overflows from h_1012 =
    2^1015, so step 1013 fails, between two finiteness checks (every 8 steps),
    and the row stops at t = 1.012 with h = 2^1015. d = 9 runs on the
    run-time dimension driver."""
    d = 9
    mlp = fastode.MLP([1000.0 * np.eye(d), np.eye(d)], activation="identity")
    # The zero row never fails and shares the failing row's block.
    h0 = np.stack([np.full(d, 8.0), np.zeros(d)])
    t_eval = np.linspace(0.0, 2.0, 201) if with_t_eval else None
    sol = fastode.solve(mlp, h0, (0.0, 2.0), method="euler", dt=1e-3, t_eval=t_eval)
    assert sol.status[0] == fastode.Status.NON_FINITE
    assert sol.stats["n_steps"][0] == 1013
    assert sol.stats["n_accepted"][0] == 1012
    assert sol.t_final[0] == pytest.approx(1.012, rel=1e-12)
    assert sol.status[1] == fastode.Status.SUCCESS
    assert sol.stats["n_steps"][1] == 2000
    if not with_t_eval:
        assert sol.stats["n_rhs"][0] == 1013
        np.testing.assert_allclose(sol.y[0], 2.0**1015, rtol=1e-12)
        np.testing.assert_array_equal(sol.y[1], 0.0)
        return
    # One evaluation per step, plus f at the step end for each of the 101
    # steps before the failure that reach an output time (0.01 .. 1.01).
    assert sol.stats["n_rhs"][0] == 1013 + 101
    kept = t_eval <= 1.012 + 1e-12
    assert np.all(np.isfinite(sol.y[0, kept]))
    assert np.all(np.isnan(sol.y[0, ~kept]))
    np.testing.assert_allclose(sol.y[0, t_eval == 1.0], 2.0**1003, rtol=1e-12)
    np.testing.assert_array_equal(sol.y[1], 0.0)


def test_mlp_jacobian_matches_differences():
    rng = np.random.default_rng(6)
    mlp = random_mlp(rng, 3, [12, 12], "tanh", time_input=True)
    y = rng.normal(size=(3,))
    step = 1e-6
    columns = [
        (mlp.rhs(0.2, (y + step * e)[None]) - mlp.rhs(0.2, (y - step * e)[None]))[0] / (2 * step)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(mlp.jacobian(0.2, y[None])[0], np.array(columns).T, atol=1e-8)


@pytest.mark.parametrize(
    ("weights", "biases", "kwargs", "error", "match"),
    [
        ([np.ones((4, 2)), np.ones((2, 3))], None, {}, ValueError, "has 3 inputs"),
        ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(4)], {}, ValueError, "one per layer"),
        ([np.ones((4, 2)), np.ones((2, 4))], [np.ones(4), np.ones(3)], {}, ValueError, r"biases\[1\]"),
        ([np.ones((4097, 2)), np.ones((2, 4097))], None, {}, ValueError, "at most 4096"),
        ([np.ones((4, 2)), np.ones((2, 4))], None, {"time_input": True}, ValueError, "plus 1"),
        ([np.ones((2, 2))], None, {"activation": "gelu"}, ValueError, "activation"),
        ([np.full((2, 2), np.nan)], None, {}, ValueError, "NaN"),
        ([np.ones((2, 2), dtype=complex)], None, {}, TypeError, "real"),
        (np.ones((2, 2)), None, {}, TypeError, "sequence"),
    ],
)
def test_mlp_rejects_bad_layers(weights, biases, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastode.MLP(weights, biases, **kwargs)


# --- neural ODEs -----------------------------------------------------------------


@pytest.mark.parametrize(("method", "dt", "tol"), [("dopri5", None, 1e-10), ("rk4", 1e-3, 1e-10)])
def test_neural_ode_linear_layer_is_expm(method, dt, tol):
    rng = np.random.default_rng(8)
    A = 0.6 * rng.normal(size=(4, 4))
    mlp = fastode.MLP([A], [np.zeros(4)], activation="identity")
    h0 = rng.normal(size=(50, 4))
    kwargs = TIGHT if method == "dopri5" else {"method": "rk4", "dt": dt}
    h = fastode.neural_ode(mlp, h0, (0.0, 1.5), **kwargs)
    np.testing.assert_allclose(h, h0 @ scipy.linalg.expm(1.5 * A).T, rtol=0, atol=tol)


def test_neural_ode_decay_closed_form():
    k = 0.8
    mlp = fastode.MLP([[[-k]]], activation="identity")
    h = fastode.neural_ode(mlp, [2.0], (0.0, 3.0), t_eval=[1.0, 3.0], **TIGHT)
    np.testing.assert_allclose(h[:, 0], 2.0 * np.exp(-k * np.array([1.0, 3.0])), rtol=1e-10)


def test_neural_ode_time_input_closed_form():
    # dh/dt = a h + c t has h(t) = (h0 + c/a²) e^(at) - c t / a - c / a².
    a, c, h0 = -0.7, 1.3, 0.4
    mlp = fastode.MLP([[[a, c]]], activation="identity", time_input=True)
    h = fastode.neural_ode(mlp, [h0], (0.0, 2.0), **TIGHT)
    exact = (h0 + c / a**2) * np.exp(2 * a) - 2 * c / a - c / a**2
    assert h[0] == pytest.approx(exact, rel=1e-10)


def test_neural_ode_matches_scipy():
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(9)
    mlp = random_mlp(rng, 2, [24, 24], "softplus", time_input=True)
    h0 = rng.normal(size=(3, 2))
    h = fastode.neural_ode(mlp, h0, (0.0, 1.0), **TIGHT)
    for row in range(3):
        reference = solve_ivp(
            lambda t, y: mlp.rhs(t, y[None])[0], (0.0, 1.0), h0[row], rtol=1e-12, atol=1e-12
        )
        np.testing.assert_allclose(h[row], reference.y[:, -1], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    ("function", "A", "states", "error", "match"),
    [
        (fastode.neural_ode, None, np.ones((3, 3)), ValueError, r"h0 must have shape \(2,\)"),
        (fastode.neural_ode, None, [np.nan, 1.0], ValueError, r"h0 contains NaN .* rows \[0\]"),
        (fastode.cnf, None, ["a", "b"], TypeError, "z0 must contain real numbers"),
        (fastode.log_prob, None, np.ones((3, 3)), ValueError, r"x must have shape \(2,\)"),
        (fastode.cnf, -np.eye(2), np.ones((3, 3)), ValueError, r"z0 must have shape"),
        (fastode.cnf, np.stack([-np.eye(2)] * 3), np.ones((4, 2)), ValueError,
         "field.A has 3 matrices but z0 has 4 rows"),
    ],
)
def test_messages_name_caller_arguments(function, A, states, error, match):
    # A is None for the MLP field, else the matrix of a Linear field.
    field = fastode.MLP([-np.eye(2)], activation="identity") if A is None else fastode.Linear(A)
    with pytest.raises(error, match=match) as raised:
        function(field, states, (0.0, 1.0))
    assert "y0" not in str(raised.value)


def test_neural_ode_rejects_other_systems():
    with pytest.raises(TypeError, match="fastode.MLP"):
        fastode.neural_ode(fastode.Linear([[-1.0]]), [1.0], (0.0, 1.0))


# --- continuous normalizing flows -------------------------------------------------


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_cnf_linear_mlp_log_density(trace):
    k, d, T = 0.7, 3, 2.0
    mlp = fastode.MLP([-k * np.eye(d)], activation="identity")
    z0 = np.random.default_rng(10).normal(size=(20, d))
    z, delta = fastode.cnf(mlp, z0, (0.0, T), trace=trace, seed=1, **TIGHT)
    np.testing.assert_allclose(z, z0 * np.exp(-k * T), rtol=1e-10)
    # For a diagonal field every Rademacher probe gives the exact trace.
    np.testing.assert_allclose(delta, d * k * T, rtol=1e-10)


def test_cnf_linear_system_closed_form():
    k, d, T = 0.5, 2, 1.5
    field = fastode.Linear(-k * np.eye(d))
    z0 = np.ones((4, d))
    z, delta = fastode.cnf(field, z0, (0.0, T), **TIGHT)
    np.testing.assert_allclose(z, z0 * np.exp(-k * T), rtol=1e-10)
    np.testing.assert_allclose(delta, np.full(4, d * k * T), rtol=1e-14)

    z, delta = fastode.cnf(field, z0[0], (0.0, T), t_eval=[0.5, 1.5], **TIGHT)
    np.testing.assert_allclose(delta, d * k * np.array([0.5, 1.5]), rtol=1e-14)


def test_log_prob_linear_flow():
    k, d, T = 0.4, 2, 1.0
    mlp = fastode.MLP([-k * np.eye(d)], activation="identity")
    x = np.random.default_rng(11).normal(size=(6, d))
    z = x * np.exp(k * T)
    expected = -0.5 * np.sum(z**2, axis=1) - d * np.log(2 * np.pi) / 2 + d * k * T
    np.testing.assert_allclose(fastode.log_prob(mlp, x, (0.0, T), **TIGHT), expected, rtol=1e-10)


def flow_map_log_det(mlp, z0, T, step=1e-5):
    """log |det ∂z(T)/∂z0| by central differences of the integrated flow."""
    d = len(z0)
    shifted = np.concatenate([z0 + step * np.eye(d), z0 - step * np.eye(d)])
    z = fastode.neural_ode(mlp, shifted, (0.0, T), **TIGHT)
    jacobian = ((z[:d] - z[d:]) / (2 * step)).T
    return np.linalg.slogdet(jacobian)[1]


@pytest.mark.parametrize(("hidden", "time_input"), [([32], False), ([16, 16], True)])
def test_cnf_mlp_matches_flow_jacobian(hidden, time_input):
    rng = np.random.default_rng(12)
    mlp = random_mlp(rng, 3, hidden, "tanh", time_input, scale=1.5)
    z0 = rng.normal(size=(4, 3))
    z, delta = fastode.cnf(mlp, z0, (0.0, 1.0), **TIGHT)
    np.testing.assert_allclose(z, fastode.neural_ode(mlp, z0, (0.0, 1.0), **TIGHT), rtol=1e-10)
    # Densities are pushed forward, so log p changes by -log |det ∂z(T)/∂z0|.
    for row in range(4):
        assert delta[row] == pytest.approx(-flow_map_log_det(mlp, z0[row], 1.0), abs=1e-8)


def test_cnf_compiled_trace_matches_numpy():
    rng = np.random.default_rng(13)
    y = np.concatenate([rng.normal(size=(30, 3)), np.zeros((30, 1))], axis=1)
    for hidden in ([20], [20, 11], [8, 8, 8]):
        mlp = random_mlp(rng, 3, hidden, "sigmoid", time_input=True)
        for trace, probes in (("exact", None), ("hutchinson", _rademacher(30, 4, 3, 0))):
            system = _FlowSystem(mlp, trace, probes)
            np.testing.assert_allclose(
                system.evaluate(0.3, y), system.rhs(0.3, y), rtol=0, atol=1e-13
            )


def test_cnf_hutchinson_within_standard_error():
    rng = np.random.default_rng(14)
    mlp = random_mlp(rng, 4, [24], "tanh", scale=2.0)
    z0 = np.repeat(rng.normal(size=(1, 4)), 4000, axis=0)
    _, exact = fastode.cnf(mlp, z0[:1], (0.0, 1.0), **TIGHT)
    _, estimates = fastode.cnf(mlp, z0, (0.0, 1.0), trace="hutchinson", seed=3, **TIGHT)
    spread = np.std(estimates)
    assert spread > 1e-3  # the probes really differ
    standard_error = spread / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - exact[0]) < 4 * standard_error


def test_cnf_hutchinson_probes_reduce_variance():
    rng = np.random.default_rng(15)
    mlp = random_mlp(rng, 4, [24], "tanh", scale=2.0)
    z0 = np.repeat(rng.normal(size=(1, 4)), 2000, axis=0)
    _, one = fastode.cnf(mlp, z0, (0.0, 1.0), trace="hutchinson", seed=4, **TIGHT)
    _, eight = fastode.cnf(mlp, z0, (0.0, 1.0), trace="hutchinson", n_probes=8, seed=4, **TIGHT)
    # Averaging 8 independent probes divides the variance by 8.
    assert np.var(eight) == pytest.approx(np.var(one) / 8, rel=0.25)


def test_cnf_backward_inverts_forward():
    rng = np.random.default_rng(16)
    mlp = random_mlp(rng, 2, [16], "tanh")
    z0 = rng.normal(size=(5, 2))
    z1, forward = fastode.cnf(mlp, z0, (0.0, 1.0), **TIGHT)
    back, backward = fastode.cnf(mlp, z1, (1.0, 0.0), **TIGHT)
    np.testing.assert_allclose(back, z0, atol=1e-9)
    np.testing.assert_allclose(backward, -forward, atol=1e-9)


def test_cnf_single_sample_shape():
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    z, delta = fastode.cnf(mlp, [1.0, 2.0], (0.0, 1.0), **TIGHT)
    assert z.shape == (2,)
    assert np.ndim(delta) == 0


@pytest.mark.parametrize(
    ("field", "kwargs", "error", "match"),
    [
        (fastode.MLP([-np.eye(2)]), {"trace": "stochastic"}, ValueError, "trace"),
        (fastode.MLP([-np.eye(2)]), {"n_probes": 0}, ValueError, "n_probes"),
        (fastode.MLP([-np.eye(2)]), {"n_probes": 65}, ValueError, "n_probes"),
        (fastode.Oscillator(k=1.0), {}, TypeError, "field"),
    ],
)
def test_cnf_rejects_bad_arguments(field, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastode.cnf(field, np.ones((2, 2)), (0.0, 1.0), **kwargs)


# --- CNF on the run-time dimension path ------------------------------------------


@pytest.mark.parametrize("hidden", [[64], [24, 24]])
def test_cnf_wide_exact_trace_matches_flow_jacobian(hidden):
    # One hidden layer uses the per-unit trace, two use 32 unit-vector probes.
    rng = np.random.default_rng(19)
    d = 32
    mlp = random_mlp(rng, d, hidden, "tanh", scale=1.5)
    z0 = rng.normal(size=(2, d))
    z, delta = fastode.cnf(mlp, z0, (0.0, 1.0), **TIGHT)
    np.testing.assert_allclose(z, fastode.neural_ode(mlp, z0, (0.0, 1.0), **TIGHT), rtol=1e-10)
    for row in range(2):
        assert delta[row] == pytest.approx(-flow_map_log_det(mlp, z0[row], 1.0), abs=1e-7)


def test_cnf_wide_compiled_trace_matches_numpy():
    rng = np.random.default_rng(20)
    d = 20
    y = np.concatenate([rng.normal(size=(35, d)), np.zeros((35, 1))], axis=1)
    for hidden in ([40], [30, 11]):
        mlp = random_mlp(rng, d, hidden, "softplus", time_input=True)
        for trace, probes in (("exact", None), ("hutchinson", _rademacher(35, 3, d, 0))):
            system = _FlowSystem(mlp, trace, probes)
            expected = system.rhs(0.3, y)
            scale = np.max(np.abs(expected))
            np.testing.assert_allclose(system.evaluate(0.3, y), expected, rtol=0, atol=1e-13 * scale)


def test_cnf_hutchinson_wide_within_standard_error():
    # Every sample starts at the same z0 with its own Rademacher probes, so the
    # estimates are independent draws whose mean is the exact trace integral.
    # With a fixed-step method z(t) does not depend on the probes, and the rk4
    # quadrature is linear in the trace, so the estimator is unbiased for the
    # rk4 value of the exact trace as well.
    # W_2 = -W_1^T / 2 makes the Jacobian -W_1^T diag(s) W_1 / 2, whose trace
    # is large next to its off-diagonal part, so the standard error is a few
    # percent of the trace and a biased estimator would fail.
    rng = np.random.default_rng(21)
    d, n = 256, 600
    w1 = rng.normal(size=(64, d)) / np.sqrt(d)
    mlp = fastode.MLP([w1, -0.5 * w1.T], [0.1 * rng.normal(size=64), np.zeros(d)])
    z0 = np.repeat(rng.normal(size=(1, d)), n, axis=0)
    rk4 = {"method": "rk4", "dt": 0.1}
    _, exact = fastode.cnf(mlp, z0[:1], (0.0, 1.0), **rk4)
    _, estimates = fastode.cnf(mlp, z0, (0.0, 1.0), trace="hutchinson", n_probes=2, seed=5, **rk4)
    standard_error = np.std(estimates, ddof=1) / np.sqrt(n)
    assert standard_error > 0  # the probes really differ
    assert standard_error < 0.05 * abs(exact[0])
    # 4 standard errors: a fresh seed fails with probability about 6e-5.
    assert abs(np.mean(estimates) - exact[0]) < 4 * standard_error


# --- PyTorch weights ---------------------------------------------------------------


def test_mlp_views_torch_weights():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(22)
    arrays = [rng.normal(size=(6, 3)), rng.normal(size=(3, 6))]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    mlp = fastode.MLP(tensors)
    for weight, tensor in zip(mlp.weights, tensors):
        assert np.shares_memory(weight, tensor.detach().numpy())
    y = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(mlp.evaluate(0.0, y), fastode.MLP(arrays).evaluate(0.0, y))

    # An optimizer step updates the tensor in place, and the next solve reads it.
    with torch.no_grad():
        tensors[1].mul_(2.0)
    np.testing.assert_allclose(mlp.evaluate(0.0, y), 2.0 * fastode.MLP(arrays).evaluate(0.0, y),
                               rtol=1e-15, atol=1e-15)


def test_mlp_views_float32_torch_weights():
    torch = pytest.importorskip("torch")
    tensor = torch.tensor([[-0.5, 0.25], [0.0, -1.0]], dtype=torch.float32)
    mlp = fastode.MLP([tensor], activation="identity")
    assert mlp.weights[0].dtype == np.float32
    assert np.shares_memory(mlp.weights[0], tensor.numpy())
    h = fastode.neural_ode(mlp, [1.0, 1.0], (0.0, 1.0), **TIGHT)
    A = tensor.numpy().astype(np.float64)
    np.testing.assert_allclose(h, scipy.linalg.expm(A) @ [1.0, 1.0], rtol=1e-10)


def test_mlp_rejects_tensor_off_cpu():
    torch = pytest.importorskip("torch")
    # The meta device has no memory, like a CUDA tensor seen from the CPU.
    tensor = torch.empty((2, 2), device="meta")
    with pytest.raises(ValueError, match=r"weights\[0\] is a PyTorch tensor on device meta"):
        fastode.MLP([tensor])


def test_neural_ode_float32():
    k = 0.5
    mlp = fastode.MLP([[[-k, 0.0], [0.0, -2 * k]]], activation="identity")
    h0 = np.ones((3, 2), dtype=np.float32)
    h = fastode.neural_ode(mlp, h0, (0.0, 1.0), method="rk4", dt=0.01)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h[0], [np.exp(-k), np.exp(-2 * k)], rtol=1e-6)


NVRTC_KERNEL = r"""
#include "fastode/mlp.hpp"
extern "C" __global__ void field(const double* params, const int* widths, double* y, float* out) {
    fastode::MLP<double, 3> sys;
    sys.net.params = params;
    sys.net.widths = widths;
    sys.net.n_layers = 2;
    fastode::MLP<double, 3>::Lanes<1> lanes;
    lanes.load(sys, 0, 1);
    fastode::LaneVec<double, 3, 1> state, slope;
    for (int i = 0; i < 3; ++i) state.v[i] = y[i];
    double t[1] = {0.0};
    lanes.rhs(t, state, slope);
    fastode::MLPTrace<float, 3> flow;
    flow.net.params = reinterpret_cast<const float*>(params);
    flow.net.widths = widths;
    flow.net.n_layers = 2;
    fastode::MLPTrace<float, 3>::Lanes<1> flow_lanes;
    flow_lanes.load(flow, 0, 1);
    fastode::LaneVec<float, 4, 1> z, dz;
    float tf[1] = {0.0f};
    flow_lanes.rhs(tf, z, dz);
    out[0] = dz.v[3];
}
"""


def test_mlp_header_compiles_with_nvrtc():
    pytest.importorskip("cuda.bindings.nvrtc")
    from pathlib import Path

    from fastode._cupy._nvrtc import compile_ptx

    include = Path(__file__).resolve().parent.parent / "cpp" / "include"
    ptx = compile_ptx(NVRTC_KERNEL, options=[f"-I{include}", "-std=c++17"])
    assert ".entry field" in ptx
