"""backend="numba" with user right-hand sides: blocks whose every lane fails
at t0, fixed steps finer than any step count, and the on-disk cache when the
user's module changes between processes."""

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_numba import SOURCE, affine, linear

import fastode
from fastode import Status
from fastode._numba import _cache, _cpu


def solve_within(seconds, *args, **options):
    """Run fastode.solve on a helper thread and fail if it has not returned
    after `seconds`: the Numba kernels release the GIL, so a kernel that
    loops forever cannot hang the test itself."""
    result = {}

    def target():
        try:
            result["solution"] = fastode.solve(*args, backend="numba", **options)
        except Exception as error:  # handed back to the test thread
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"fastode.solve did not return within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["solution"]


# --- every lane of a block fails at t0 ----------------------------------------------


@pytest.mark.parametrize("method", ["bs3", "dopri5", "tsit5"])
@pytest.mark.parametrize("n", [1, 3, 64])
def test_adaptive_block_of_failed_starts_returns(method, n):
    """f(t0, y0) is NaN on every trajectory (a NaN rate), so every lane of
    the block fails before its first step and the block has nothing to do."""
    sol = solve_within(300, linear(np.nan), np.ones((n, 1)), (0.0, 1.0), method=method,
                       t_eval=[0.0, 0.5, 1.0])
    assert np.all(sol.status == Status.NON_FINITE)
    np.testing.assert_array_equal(sol.y[:, 0, 0], np.ones(n))
    assert np.all(np.isnan(sol.y[:, 1:, :]))
    np.testing.assert_array_equal(sol.t_final, np.zeros(n))
    np.testing.assert_array_equal(sol.stats["n_steps"], np.zeros(n))
    np.testing.assert_array_equal(sol.stats["n_rhs"], np.ones(n))


def test_adaptive_infinite_derivative_at_start_returns():
    """f = y + inf: an infinite rather than a NaN derivative at t0."""
    sol = solve_within(300, linear(1.0, c=np.inf), [0.0], (0.0, 1.0))
    assert sol.status == Status.NON_FINITE
    assert sol.y[0] == 0.0


# --- fixed steps finer than any step count --------------------------------------------


@pytest.mark.parametrize("method", ["rk4", "tsit5"])
def test_tiny_fixed_step_stops_at_max_steps(method):
    """dt = 1e-30 over a span of 1 needs 1e30 steps, more than an int64 holds;
    max_steps ends the run as on the core, with no error about the user
    function."""
    options = {"adaptive": False} if method == "tsit5" else {}
    with pytest.warns(RuntimeWarning, match="stopped with MAX_STEPS"):
        sol = fastode.solve(linear(-1.0), [1.0], (0.0, 1.0), method=method, dt=1e-30,
                            max_steps=5, backend="numba", **options)
    assert sol.status == Status.MAX_STEPS
    assert sol.stats["n_steps"] == 5
    assert sol.t_final == pytest.approx(5e-30, rel=1e-12)
    assert sol.y[0] == pytest.approx(math.exp(-5e-30), rel=1e-15)


# --- the on-disk cache and the user's module ----------------------------------------

HELPER_MODULE = """
import numba
import fastode

RATE = {rate}

@numba.njit
def scaled(x):
    return {factor} * x

@fastode.ode(dim=1)
def decay(t, y, dy, p):
    dy[0] = -RATE * scaled(y[0])
"""

HELPER_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import fastode
from helper_module import decay
sol = fastode.solve(decay, [1.0], (0.0, 1.0), method="rk4", dt=0.01, backend="numba")
print(repr(float(sol.y[0])))
"""


def module_namespace(rate, factor):
    namespace = {"__name__": "helper_module"}
    exec(HELPER_MODULE.format(rate=rate, factor=factor), namespace)  # noqa: S102
    return namespace


def test_fingerprint_follows_globals():
    """The key of a cached kernel changes with the helper functions and the
    constants that the right-hand side reads as globals."""
    base = _cache.fingerprint(module_namespace(1.0, 1.0)["decay"]._compiled.python["rhs"])
    other_rate = module_namespace(2.0, 1.0)["decay"]._compiled.python["rhs"]
    other_helper = module_namespace(1.0, 2.0)["decay"]._compiled.python["rhs"]
    assert _cache.fingerprint(module_namespace(1.0, 1.0)["decay"]._compiled.python["rhs"]) == base
    assert _cache.fingerprint(other_rate) != base
    assert _cache.fingerprint(other_helper) != base


def test_fingerprint_of_recursive_helper():
    namespace = {}
    exec("def count(n):\n    return 0 if n < 1 else 1 + count(n - 1)\n", namespace)  # noqa: S102
    assert len(_cache.fingerprint(namespace["count"])) == 64


def test_second_process_sees_edited_helper(tmp_path):
    """Editing the body of a helper the right-hand side calls, or a global
    constant it reads, changes the result in the next process instead of
    loading the kernel compiled from the old source."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE), env.get("PYTHONPATH", "")])
    results = []
    for rate, factor in [(1.0, 1.0), (1.0, 2.0), (1.5, 2.0)]:
        (tmp_path / "helper_module.py").write_text(HELPER_MODULE.format(rate=rate,
                                                                        factor=factor))
        done = subprocess.run([sys.executable, "-c", HELPER_SCRIPT, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        results.append(float(done.stdout.split()[-1]))
    assert results[0] == pytest.approx(math.exp(-1.0), rel=1e-6)
    assert results[1] == pytest.approx(math.exp(-2.0), rel=1e-6)
    assert results[2] == pytest.approx(math.exp(-3.0), rel=1e-6)


# --- messages for functions that do not compile ---------------------------------------


def plain_python_factorial(n):
    return 1.0 if n <= 1 else n * plain_python_factorial(n - 1)


def calls_plain_python(t, y, dy, p):
    dy[0] = -plain_python_factorial(3) * y[0]


def test_compile_error_gives_numba_reason():
    """Numba's message starts with a generic "Failed in nopython mode
    pipeline" line; the reason that follows names the undefined global."""
    system = fastode.ode(calls_plain_python, dim=1)
    with pytest.raises(TypeError, match="Numba cannot compile calls_plain_python") as caught:
        fastode.solve(system, [1.0], (0.0, 1.0), backend="numba")
    message = str(caught.value)
    assert "Untyped global name 'plain_python_factorial'" in message
    assert "Failed in nopython mode pipeline" not in message
    assert "\x1b[" not in message
    assert "numba.njit" in message


# --- read-only inputs ----------------------------------------------------------------


def test_read_only_params_and_y0():
    """affine records t in p, so the kernel writes the parameter rows back.
    A read-only parameter array is therefore copied instead of failing to
    type, and a read-only y0 needs no second build of the kernel."""
    params = np.array([-1.0, 0.0, 0.0, 0.0, np.inf, -np.inf])
    params.flags.writeable = False
    y0 = np.array([[1.0], [2.0]])
    y0.flags.writeable = False
    sol = fastode.solve(affine(params), y0, (0.0, 1.0), method="rk4", dt=0.01,
                        backend="numba")
    np.testing.assert_allclose(sol.y[:, 0], [math.exp(-1.0), 2 * math.exp(-1.0)], rtol=1e-8)
    assert params[4] == np.inf
    kernel = _cpu.kernel(affine, "rk4", "fixed", np.dtype(np.float64))
    assert all("readonly" not in str(signature) for signature in kernel.function.signatures)
