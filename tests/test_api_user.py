"""Inputs a first-time user gives the functions around `fastode.solve`:
the neural and analysis helpers, `fastode.distributed` and the command line.
Each case either returns the closed-form value or raises an error that
names the argument."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from example_runner import PACKAGE_ROOT, run_example

import fastode
from fastode import __main__ as cli

TIGHT = {"method": "dopri5", "rtol": 1e-12, "atol": 1e-12}


# --- stability: tol and Q ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tol", "error"),
    [(np.nan, ValueError), (-1e-10, ValueError), (np.inf, ValueError), ("1e-3", TypeError)],
)
def test_stability_rejects_bad_tol(tol, error):
    with pytest.raises(error, match="tol"):
        fastode.stability(np.eye(2), tol=tol)


def test_stability_zero_tol_keeps_verdicts():
    assert fastode.stability(np.zeros((2, 2)), tol=0.0).verdict == "marginal"
    assert fastode.stability(np.eye(2), tol=0.0).verdict == "unstable"


@pytest.mark.parametrize(
    ("Q", "match"),
    [
        ([[1.0, 2.0], [0.0, 1.0]], "Q must be symmetric"),
        ([[1.0, 0.0], [0.0, -1.0]], "Q must be positive definite"),
        ([[1.0, 0.0], [0.0, 0.0]], "Q must be positive definite"),
    ],
)
def test_stability_rejects_q_not_positive_definite(Q, match):
    with pytest.raises(ValueError, match=match):
        fastode.stability(-np.eye(2), Q=Q)


def test_stability_lyapunov_is_positive_definite_for_valid_q():
    A = np.array([[-1.0, 100.0], [0.0, -2.0]])
    Q = np.array([[2.0, 0.5], [0.5, 1.0]])
    P = fastode.stability(A, Q=Q).lyapunov
    np.testing.assert_allclose(A.T @ P + P @ A, -Q, rtol=0, atol=1e-9)
    assert np.min(np.linalg.eigvalsh(P)) > 0


# --- linearize -----------------------------------------------------------------------


@pytest.mark.parametrize("y_eq", [[np.nan, 0.0], [np.inf, 0.0]])
def test_linearize_rejects_non_finite_point(y_eq):
    mlp = fastode.MLP([-np.eye(2), np.eye(2)], activation="tanh")
    with pytest.raises(ValueError, match="y_eq"):
        fastode.linearize(mlp, y_eq)


def test_linearize_rejects_complex_point():
    with pytest.raises(TypeError, match="y_eq"):
        fastode.linearize(fastode.Oscillator(k=1.0), [1j, 0.0])


def test_linearize_names_non_finite_jacobian():
    weights = -np.eye(2)
    mlp = fastode.MLP([weights], activation="identity")
    weights[0, 0] = np.nan  # an in-place update reaches the field
    with pytest.raises(ValueError, match="Jacobian of MLP.* at y_eq .* NaN"):
        fastode.linearize(mlp, [0.0, 0.0])


def test_linearize_accepts_one_value_arrays():
    # A parameter array of one value is shared, as Linear's (1, d, d) A is.
    report = fastode.linearize(fastode.Oscillator(k=[4.0], b=[0.5]), [0.0, 0.0])
    np.testing.assert_allclose(report.jacobian, [[0.0, 1.0], [-4.0, -0.5]], rtol=0, atol=1e-9)
    assert report.verdict == "asymptotically stable"


def test_linearize_hamiltonian_one_value_mass():
    report = fastode.linearize(fastode.Hamiltonian("harmonic", k=2.0, mass=[4.0]), [0.0, 0.0])
    # dq/dt = p / m, dp/dt = -k q.
    np.testing.assert_allclose(report.jacobian, [[0.0, 0.25], [-2.0, 0.0]], rtol=0, atol=1e-9)


# --- ODE residual and regularized loss -----------------------------------------------


def test_ode_residual_rejects_complex_y():
    x = np.linspace(0.0, 1.0, 5)
    with pytest.raises(TypeError, match="y must contain real numbers"):
        fastode.ode_residual(np.exp(1j * x), x, lambda x, y: 1j * y)


def test_ode_residual_rejects_complex_f():
    x = np.linspace(0.0, 1.0, 5)
    with pytest.raises(TypeError, match="f"):
        fastode.ode_residual(np.ones(5), x, lambda x, y: 1j * y)


def test_regularized_loss_rejects_text_lam():
    with pytest.raises(TypeError, match="lam"):
        fastode.regularized_loss(0.5, 2.0, "a")


# --- neural helpers ------------------------------------------------------------------


@pytest.mark.parametrize("activation", [["tanh"], None, np.tanh])
def test_mlp_rejects_non_string_activation(activation):
    with pytest.raises((TypeError, ValueError), match="activation must be one of"):
        fastode.MLP([-np.eye(2)], activation=activation)


def test_cnf_linear_float32_keeps_dtype():
    k, d = 0.7, 3
    z0 = np.ones((4, d), dtype=np.float32)
    z, delta = fastode.cnf(fastode.Linear(-k * np.eye(d)), z0, (0.0, 2.0))
    assert z.dtype == np.float32
    assert delta.dtype == np.float32
    np.testing.assert_allclose(delta, k * d * 2.0, rtol=1e-6)


def test_log_prob_rejects_t_eval():
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    with pytest.raises(TypeError, match="t_eval"):
        fastode.log_prob(mlp, np.ones((3, 2)), (0.0, 1.0), t_eval=[1.0, 0.0])


@pytest.mark.parametrize("shape", [(2, 3, 3), (2, 3, 5)])
def test_mlp_evaluate_rejects_3d_states(shape):
    mlp = fastode.MLP([-np.eye(3)], activation="identity")
    with pytest.raises(ValueError, match=r"y must have shape \(3,\) or \(N, 3\)"):
        mlp.evaluate(0.0, np.ones(shape))


def test_mlp_evaluate_rejects_complex_states():
    mlp = fastode.MLP([-np.eye(3)], activation="identity")
    with pytest.raises(TypeError, match="y must contain real numbers"):
        mlp.evaluate(0.0, np.ones((2, 3)) * 1j)


def test_mlp_single_state_shapes():
    weights = [np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([[-1.0, 0.3], [0.2, -2.0]])]
    mlp = fastode.MLP(weights, activation="tanh")
    h = np.array([0.3, -0.7])
    # f(h) = W2 tanh(W1 h) and its Jacobian W2 diag(1 - tanh²(W1 h)) W1.
    hidden = np.tanh(weights[0] @ h)
    expected_f = weights[1] @ hidden
    expected_jacobian = weights[1] @ np.diag(1.0 - hidden**2) @ weights[0]
    np.testing.assert_allclose(mlp.evaluate(0.0, h), expected_f, rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.jacobian(0.0, h), expected_jacobian, rtol=0, atol=1e-15)
    np.testing.assert_allclose(mlp.jacobian(0.0, h[None])[0], expected_jacobian, rtol=0, atol=1e-15)


def test_mlp_jacobian_rejects_wrong_shape():
    mlp = fastode.MLP([-np.eye(3)], activation="identity")
    with pytest.raises(ValueError, match=r"y must have shape \(3,\) or \(N, 3\)"):
        mlp.jacobian(0.0, np.ones((2, 4)))


# --- PyTorch tensors that require grad -----------------------------------------------


@pytest.fixture
def grad_tensor():
    torch = pytest.importorskip("torch")
    return torch.ones((3, 2), dtype=torch.float64, requires_grad=True)


def test_neural_ode_rejects_tensor_requiring_grad(grad_tensor):
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    with pytest.raises(TypeError, match=r"h0 .* requires grad.*detach"):
        fastode.neural_ode(mlp, grad_tensor, (0.0, 1.0))


@pytest.mark.parametrize("function", [fastode.cnf, fastode.log_prob])
def test_flows_reject_tensor_requiring_grad(function, grad_tensor):
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    with pytest.raises(TypeError, match="requires grad"):
        function(mlp, grad_tensor, (0.0, 1.0))


def test_gradient_flow_rejects_tensor_requiring_grad(grad_tensor):
    with pytest.raises(TypeError, match="theta0 .* requires grad"):
        fastode.gradient_flow(np.eye(2), grad_tensor, (0.0, 1.0))


def test_ode_residual_rejects_tensor_requiring_grad():
    torch = pytest.importorskip("torch")
    x = np.linspace(0.0, 1.0, 5)
    y = torch.ones(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="y .* requires grad"):
        fastode.ode_residual(y, x, lambda x, y: 0.0 * y)


def test_mlp_follows_parameters_given_new_memory():
    """module.double() and module.to(...) give each parameter new memory;
    the next solve must read it, not the memory viewed at construction."""
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(2, 2).float()
    mlp = fastode.MLP([layer.weight], [layer.bias], activation="identity")
    layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, -2.0]], dtype=torch.float64))
        layer.bias.zero_()
    h = fastode.neural_ode(mlp, [1.0, 1.0], (0.0, 1.0), **TIGHT)
    np.testing.assert_allclose(h, [np.exp(-1.0), np.exp(-2.0)], rtol=1e-10)
    np.testing.assert_allclose(mlp.rhs(0.0, np.ones((1, 2))), [[-1.0, -2.0]], rtol=0)


def test_states_accept_tensors_without_grad():
    torch = pytest.importorskip("torch")
    h0 = torch.ones((3, 2), dtype=torch.float64)
    mlp = fastode.MLP([-np.eye(2)], activation="identity")
    np.testing.assert_allclose(
        fastode.neural_ode(mlp, h0, (0.0, 1.0), **TIGHT), np.exp(-1.0), rtol=1e-10
    )
    sol = fastode.gradient_flow(np.eye(2), h0, (0.0, 1.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.y, np.exp(-1.0), rtol=1e-10)


# --- command line --------------------------------------------------------------------


def test_bench_repeats_above_thread_limit():
    args = cli.build_parser().parse_args(["bench", "--repeats", "1000"])
    assert args.repeats == 1000


def test_bench_repeats_zero_message(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--repeats", "0"])
    message = capsys.readouterr().err
    assert "argument --repeats: expected an integer >= 1" in message
    assert "threads must be" not in message


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_checks_output_folder_first(option, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from fastode import _bench

    def run_bench(*args, **kwargs):
        raise AssertionError("the benchmark ran before the output path was checked")

    monkeypatch.setattr(_bench, "run_bench", run_bench)
    path = tmp_path / "missing" / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--quick-test", option, str(path)])
    assert exit_info.value.code == 2
    assert str(path.parent) in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--n", "1000"], ["--seed", "3"], ["--threads", "1"]])
def test_demo_examples_rejects_table_options(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--examples", *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_examples_into_closed_pipe_are_quiet(tmp_path):
    """`fastode demo --examples | head` must print no traceback, from the
    runner or from an example script. head exits after 20 bytes, and the
    script writes far more than a pipe buffer, so its writes fail."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "_plot.py").write_text("")
    (scripts / "talk.py").write_text("for i in range(20000):\n    print('max error', i)\n")
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    code = (
        "import sys, pathlib; from fastode import _examples, __main__; "
        f"_examples.examples_dir = lambda: pathlib.Path({str(scripts)!r}); "
        "sys.exit(__main__.main(['demo', '--examples']))"
    )
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} | head -c 20"
    result = subprocess.run(
        command,
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.stdout.startswith("== talk.py")
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


def test_demo_rejects_n_beyond_memory(monkeypatch, capsys):
    from fastode import _chunks

    def run_cases(*args, **kwargs):
        raise AssertionError("the demo ran before --n was checked against memory")

    monkeypatch.setattr(_chunks, "available_memory", lambda: 2**20)
    monkeypatch.setattr(cli, "run_cases", run_cases)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--n", "1000000"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "--n 1000000" in message
    assert "available" in message


@pytest.mark.parametrize(
    "script", ["gradient_flow.py", "residual_regularization.py", "stability_matrices.py"]
)
def test_example_runs_without_scipy(script, tmp_path):
    """`pip install .` brings NumPy but not SciPy, and `fastode demo
    --examples` must still run every script."""
    stub = tmp_path / "stub" / "scipy"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result = run_example(script, tmp_path, stub.parent)
    assert result.returncode == 0, result.stderr
    assert "error" in result.stdout


def test_ctrl_c_exits_quietly(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_cases", interrupted)
    assert cli.main(["demo", "--n", "3"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_demo_examples_missing_folder_message(monkeypatch, capsys):
    from fastode import _examples

    def missing():
        raise FileNotFoundError("the example scripts were not found in /nowhere")

    monkeypatch.setattr(_examples, "examples_dir", missing)
    assert cli.main(["demo", "--examples"]) == 1
    assert "fastode demo: error: the example scripts were not found" in capsys.readouterr().err
