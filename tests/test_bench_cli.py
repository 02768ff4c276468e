"""``fastode bench``: the hidden --quick-test run in a subprocess, its table,
its JSON output and the help text.

The quick-test run integrates 200 trajectories per workload once after a
warm-up; it checks correctness of every entry, never its speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastode
from fastode import _bench, _roofline

# The folder holding the fastode that pytest imported: the installed package
# in CI, where src/ has no compiled _core, or src/ in a development tree.
PACKAGE_ROOT = Path(fastode.__file__).resolve().parent.parent

WORKLOADS = [
    "oscillator rk4 dt 0.01",
    "oscillator dopri5 rtol 1e-6",
    "Lorenz rk4 dt 0.001 float32",
    "Lorenz tsit5 rtol 1e-8 float64",
    "Kepler yoshida4 1000 steps/orbit",
    "MLP 4-64-4 tanh rk4 dt 0.01",
]
COLUMNS = [
    "workload",
    "backend / peer",
    "N",
    "seconds",
    "warm-up s",
    "steps/s",
    "max error",
    "bound",
    "x NumPy",
    "B/traj",
    "% peak",
]
RECORD_KEYS = {
    "workload",
    "peer",
    "n",
    "dtype",
    "seconds",
    "warmup_seconds",
    "steps_per_second",
    "max_error",
    "error_bound",
    "ratio_to_numpy",
    "traced_bytes_per_trajectory",
    "flops_per_step",
    "fraction_of_peak",
    "note",
}
#: Peers that may be missing; each must run or be reported as skipped.
OPTIONAL_PEERS = ["torchdiffeq", "torchode", "diffrax"]


def run_cli(*args, timeout=120, extra_path=None):
    env = dict(os.environ)
    paths = [str(extra_path)] if extra_path else []
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*paths, str(PACKAGE_ROOT), env.get("PYTHONPATH")])
    )
    # One thread keeps the run short and predictable on a shared machine.
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "fastode", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    path = folder / "bench.json"
    plot = ["--plot", str(folder / "bench.png")] if has_matplotlib() else []
    result = run_cli(
        "bench", "--quick-test", "--threads", "1", "--json", str(path), *plot
    )
    return result, path


def table_rows(stdout):
    return [line for line in stdout.splitlines() if line.startswith(tuple(WORKLOADS))]


def test_quick_run_exits_zero(quick_run):
    result, _ = quick_run
    assert result.returncode == 0, result.stdout + result.stderr


def test_quick_run_header_columns(quick_run):
    result, _ = quick_run
    header = next(
        line for line in result.stdout.splitlines() if line.startswith("workload")
    )
    for column in COLUMNS:
        assert column in header


@pytest.mark.parametrize("workload", WORKLOADS)
def test_quick_run_fastode_and_numpy_rows(quick_run, workload):
    result, _ = quick_run
    rows = [row for row in table_rows(result.stdout) if row.startswith(workload)]
    assert any("fastode cpp" in row for row in rows)
    assert any("NumPy" in row for row in rows)


def test_quick_run_reports_gpu_or_skip(quick_run):
    result, _ = quick_run
    has_gpu_rows = "fastode cupy (GPU)" in result.stdout
    has_skip_line = "GPU rows skipped:" in result.stdout
    assert has_gpu_rows != has_skip_line


def test_quick_run_memory_lines(quick_run):
    result, _ = quick_run
    assert "final-state-only memory" in result.stdout
    assert "getrusage" in result.stdout


def test_quick_json_keys(quick_run):
    _, path = quick_run
    document = json.loads(path.read_text())
    for key in (
        "records",
        "skipped",
        "memory_scaling",
        "load_average",
        "threads",
        "peak",
    ):
        assert key in document
    assert document["records"]
    for record in document["records"]:
        assert set(record) == RECORD_KEYS


def test_quick_json_errors_below_bounds(quick_run):
    _, path = quick_run
    for record in json.loads(path.read_text())["records"]:
        label = f"{record['workload']} / {record['peer']}"
        assert record["max_error"] <= record["error_bound"], label


def test_quick_json_numpy_ratio_is_one(quick_run):
    _, path = quick_run
    records = json.loads(path.read_text())["records"]
    numpy_rows = [r for r in records if r["peer"].startswith("NumPy")]
    assert len(numpy_rows) == len(WORKLOADS)
    for record in numpy_rows:
        assert record["ratio_to_numpy"] == pytest.approx(1.0)


def test_quick_json_memory_is_linear(quick_run):
    # Traced peak bytes per trajectory of a final-state-only solve may carry
    # a fixed overhead at N = 100, but must not grow with N.
    _, path = quick_run
    scaling = json.loads(path.read_text())["memory_scaling"]
    small, large = scaling[0], scaling[-1]
    assert large["n"] > small["n"]
    assert large["traced_bytes_per_trajectory"] <= small["traced_bytes_per_trajectory"]
    assert large["traced_bytes_per_trajectory"] < 1000


def test_bench_help_documents_options():
    result = run_cli("bench", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("--n", "--full", "--threads", "--repeats", "--json", "--plot"):
        assert option in text
    assert "trajectories per workload" in text
    assert "in seconds" in text
    assert "memory in bytes" in text
    assert "--quick-test" not in text


def test_quick_plot_is_png(quick_run):
    if not has_matplotlib():
        pytest.skip("matplotlib is not installed")
    _, path = quick_run
    png = path.with_name("bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_clearly(tmp_path):
    # A package named matplotlib that fails to import hides the real one.
    stub = tmp_path / "stub" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result = run_cli(
        "bench",
        "--quick-test",
        "--plot",
        str(tmp_path / "a.png"),
        timeout=60,
        extra_path=stub.parent,
    )
    assert result.returncode != 0
    assert "needs matplotlib" in result.stderr
    assert "workload" not in result.stdout
    assert not (tmp_path / "a.png").exists()


def test_full_sizes_capped_by_memory():
    # Half of 1 GiB holds 10 000 trajectories of 8 KiB but not 100 000.
    assert _bench.full_sizes(2**30) == [100, 1_000, 10_000]
    assert _bench.full_sizes(2**50) == list(_bench.FULL_SIZES)


@pytest.mark.parametrize("peer", OPTIONAL_PEERS)
def test_quick_run_optional_peer_rows_or_skip(quick_run, peer):
    result, _ = quick_run
    rows = [row for row in table_rows(result.stdout) if f" {peer} " in row]
    skipped = f"{peer} skipped:" in result.stdout
    assert bool(rows) != skipped, result.stdout


def test_quick_json_fraction_of_peak(quick_run):
    _, path = quick_run
    document = json.loads(path.read_text())
    if document["peak"] is None:
        pytest.skip("numba is not installed, so the peak was not measured")
    peak = document["peak"]["float64_flops_per_second"]
    assert peak > 0.0
    for record in document["records"]:
        label = f"{record['workload']} / {record['peer']}"
        assert record["flops_per_step"] is not None, label
        factor = 2.0 if record["dtype"] == "float32" else 1.0
        expected = record["flops_per_step"] * record["steps_per_second"]
        expected /= factor * peak
        assert record["fraction_of_peak"] == pytest.approx(expected), label


def test_quick_run_peak_lines(quick_run):
    result, _ = quick_run
    assert "% peak:" in result.stdout
    assert "flops per trajectory-step (FMA = 2 flops)" in result.stdout


def test_flop_counts_cover_workloads():
    assert set(_roofline.FLOPS_PER_STEP) == set(WORKLOADS)


def test_peak_float32_doubles_float64():
    peak = _roofline.Peak(single_thread=5e10, all_threads=6e10, threads=2)
    assert peak.per_core == 5e10
    assert peak.float64 == 1e11
    assert peak.for_dtype("float32") == 2e11


def test_peak_per_core_from_all_threads():
    # A single-thread run slowed by other jobs does not lower the peak.
    peak = _roofline.Peak(single_thread=2e10, all_threads=1e11, threads=2)
    assert peak.per_core == 5e10


def test_fraction_of_peak_rule():
    peak = _roofline.Peak(single_thread=5e10, all_threads=1e11, threads=2)
    fraction = _roofline.fraction_of_peak("oscillator rk4 dt 0.01", "float64", 1e9, peak)
    assert fraction == pytest.approx(54 * 1e9 / 1e11)
    assert _roofline.fraction_of_peak("unknown", "float64", 1e9, peak) is None
    assert _roofline.fraction_of_peak("oscillator rk4 dt 0.01", "float64", 1e9, None) is None


def test_missing_peers_are_skipped(monkeypatch):
    # Hide the torch and JAX peers as if they were not installed.
    real = _bench._optional

    def optional(name):
        if name in OPTIONAL_PEERS:
            return None, f"{name} not importable (hidden by the test)"
        return real(name)

    monkeypatch.setattr(_bench, "_optional", optional)
    skips = []
    work = _bench.oscillator_dopri5(50, 1, skips)
    skipped = {skip.peer for skip in skips}
    assert set(OPTIONAL_PEERS) <= skipped
    for entry in work.entries:
        assert entry.peer.split(" ")[0] not in OPTIONAL_PEERS
