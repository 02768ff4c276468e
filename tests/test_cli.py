"""The ``fastode`` command line, run as ``python -m fastode`` in a subprocess."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastode

#: Upper bounds on the demo's printed max error, per case, for --n 2000. The
#: adaptive cases run at rtol 1e-8 and the fixed-step ones at dt 0.02, so each
#: bound leaves a margin of about 100 over the error those settings give.
ERROR_BOUNDS = {
    "damped oscillator, underdamped": 1e-6,
    "damped oscillator, critically damped": 1e-6,
    "damped oscillator, overdamped": 1e-6,
    "Neural ODE hidden state, dh/dt = -K h": 1e-7,
    "gradient flow, dtheta/dt = -k theta": 1e-8,
    "harmonic Hamiltonian, H = p^2/2 + k q^2/2": 1e-4,
    "normalizing flow, z and log p": 1e-7,
    "stable linear system, dx/dt = A x": 1e-6,
    "unstable linear system, dx/dt = A x": 1e-3,
}

ROW = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<method>[a-z0-9_]+)\s+(?P<n>[\d,]+)\s+"
    r"(?P<error>\S+)\s+(?P<rate>\S+)\s+(?P<wall>[\d.]+)$"
)
GROWTH = re.compile(r"median \|x\(t\)\|/\|x0\| = (\S+) .*= (\S+)$")


def run_cli(*args, timeout=300):
    """Run ``python -m fastode ARGS`` against the fastode that pytest imported."""
    return run_python("-m", "fastode", *args, timeout=timeout)


def imported_fastode_env() -> dict:
    """Return os.environ with the fastode that pytest imported first on the path."""
    package_root = str(Path(fastode.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [package_root, env.get("PYTHONPATH")])
    )
    return env


def run_python(*args, timeout=300):
    """Run ``python ARGS`` with the fastode that pytest imported."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=imported_fastode_env(),
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_output():
    result = run_cli("demo", "--n", "2000")
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_rows(output: str) -> dict:
    rows = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match and match["name"] != "case":
            rows[match["name"]] = match
    return rows


def test_demo_prints_every_case(demo_output):
    rows = parse_rows(demo_output)
    assert sorted(rows) == sorted(ERROR_BOUNDS)


@pytest.mark.parametrize("name", list(ERROR_BOUNDS))
def test_demo_error_below_bound(demo_output, name):
    row = parse_rows(demo_output)[name]
    error = float(row["error"])
    assert np.isfinite(error)
    assert error < ERROR_BOUNDS[name]


def test_demo_trajectory_counts(demo_output):
    rows = parse_rows(demo_output)
    oscillator = [
        int(r["n"].replace(",", "")) for n, r in rows.items() if "oscillator" in n
    ]
    others = [
        int(r["n"].replace(",", "")) for n, r in rows.items() if "oscillator" not in n
    ]
    assert sum(oscillator) == 2000
    assert others == [2000] * len(others)


def test_demo_speed_columns_positive(demo_output):
    for row in parse_rows(demo_output).values():
        assert float(row["rate"]) > 0
        assert float(row["wall"]) >= 0


def test_demo_stability_matches_eigenvalues(demo_output):
    growth = [GROWTH.search(line) for line in demo_output.splitlines()]
    growth = [match for match in growth if match]
    assert len(growth) == 2
    observed = [float(match[1]) for match in growth]
    predicted = [float(match[2]) for match in growth]
    np.testing.assert_allclose(observed, predicted, rtol=1e-3)
    assert observed[0] < 1 < observed[1]


def test_demo_stability_verdicts(demo_output):
    verdicts = re.findall(r"fastode.stability: ([a-z ]+),", demo_output)
    assert verdicts == ["asymptotically stable", "unstable"]


def test_demo_energy_drift_small(demo_output):
    match = re.search(r"max relative energy drift (\S+)", demo_output)
    assert match is not None
    assert float(match[1]) < 1e-5


def test_demo_runs_without_optional_packages():
    # `pip install .` brings only NumPy; a None entry in sys.modules makes
    # every import of that package raise ImportError.
    code = (
        "import sys\n"
        "for name in ('scipy', 'numba', 'cupy'):\n"
        "    sys.modules[name] = None\n"
        "from fastode.__main__ import main\n"
        "sys.exit(main(['demo', '--n', '30']))\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert sorted(parse_rows(result.stdout)) == sorted(ERROR_BOUNDS)


def test_demo_rejects_too_few_trajectories():
    result = run_cli("demo", "--n", "2")
    assert result.returncode == 2
    assert "--n" in result.stderr
    assert "integer >= 3" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--threads", "100000", "threads must be at most"), ("--seed", "-1", "integer >= 0")],
)
def test_demo_rejects_bad_option(option, value, message):
    result = run_cli("demo", "--n", "3", option, value)
    assert result.returncode == 2
    assert option in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_info_into_closed_pipe_is_quiet():
    """`fastode info | head -1` must not print a BrokenPipeError traceback.
    `true` exits before Python starts, so every write meets a closed pipe."""
    command = f"{sys.executable} -m fastode info | true"
    result = subprocess.run(command, shell=True, capture_output=True, text=True,
                            env=imported_fastode_env(), timeout=120, check=False)
    assert "Traceback" not in result.stderr


def test_info_lists_methods_and_backends():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    assert f"fastode {fastode.__version__}" in result.stdout
    assert re.search(r"OpenMP threads: [1-9]\d*", result.stdout)
    for method in fastode.METHODS:
        assert method in result.stdout
    assert re.search(r"^numba: ", result.stdout, re.MULTILINE)
    assert re.search(r"^cupy: ", result.stdout, re.MULTILINE)
    assert re.search(r"^GPU: ", result.stdout, re.MULTILINE)
    for backend in ("cpp", "numba", "numba-cuda", "cupy"):
        assert re.search(rf"^  {backend} ", result.stdout, re.MULTILINE)


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["info", "--help"]])
def test_help_exits_zero(args):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "usage: fastode" in result.stdout


def test_demo_help_describes_options():
    result = run_cli("demo", "--help")
    assert "trajectories per case" in result.stdout
    assert "OpenMP threads" in result.stdout


def test_missing_command_is_an_error():
    result = run_cli()
    assert result.returncode == 2
    assert "usage: fastode" in result.stderr
