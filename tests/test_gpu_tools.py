"""tools/gpu-check.sh and tools/gpu_bench.py work before a GPU machine runs
them: the script parses, the benchmark's CPU rows run, and its GPU rows run
against the CuPy stand-in (tests/cupy_standin.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cupy_standin import StandIn

import fastode
from fastode._cupy import _launch

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "tools" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up while building the Row class.
    sys.modules["gpu_bench"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_parses():
    result = subprocess.run(
        ["bash", "-n", str(ROOT / "tools" / "gpu-check.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_gpu_check_rejects_unknown_option():
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu-check.sh"), "--bogus"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_bench_dry_run_prints_cpu_rows(tmp_path):
    # The fastode this test imported: the source tree in a development
    # checkout, the installed package in CI (where src/ has no _core).
    imported = Path(fastode.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(imported)}
    json_path = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_bench.py"), "--dry-run", "--max-n", "64",
         "--json", str(json_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    bench = _load_bench()
    for case in bench.CASES:
        assert result.stdout.count(case) == 2  # N = 8 and 64
    assert json_path.exists()


def test_bench_gpu_rows_with_standin(monkeypatch, capsys):
    standin = StandIn()
    monkeypatch.setattr(_launch, "import_cupy", lambda: standin)
    _launch._kernel.cache_clear()
    bench = _load_bench()
    try:
        rows = bench._run_case("lorenz tsit5 f32 fixed dt=1e-3", standin, [8, 64], 8, 1)
    finally:
        _launch._kernel.cache_clear()
    gpu = [row for row in rows if row.backend == "gpu"]
    assert [row.n for row in gpu] == [8, 64]
    # The stand-in computes with the core, so the same-N difference is 0.
    assert gpu[0].max_difference == 0.0
    assert gpu[0].ratio_cpu_n == 8
    assert gpu[1].ratio_cpu_n == 8
    assert gpu[1].max_difference is None
    assert "*" in capsys.readouterr().out
    assert np.isfinite(gpu[1].steps_per_second)


def test_gpu_tests_pass_on_standin():
    # The real-GPU tests run against the stand-in, so a mistake in the tests
    # themselves shows here instead of on the first GPU machine.
    env = {**os.environ, "FASTODE_CUPY_STANDIN": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "gpu"), "-q",
         "-p", "no:cacheprovider", "--rootdir", str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
