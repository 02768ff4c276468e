"""fastode.info() and `fastode info`: every field present, with a real and a
mocked GPU report (no GPU here)."""

from __future__ import annotations

import sys

import pytest
from cupy_standin import StandIn

import fastode
from fastode import __main__ as cli
from fastode import _core
from fastode._cupy import _device

BACKENDS = ("cpp", "numba", "numba-cuda", "cupy")


def test_info_fields():
    report = fastode.info()
    assert report["version"] == fastode.__version__
    assert report["openmp"] is bool(_core.openmp)
    assert report["openmp_threads"] == _core.max_threads()
    assert set(report["backends"]) == set(BACKENDS)
    for name in BACKENDS:
        row = report["backends"][name]
        assert set(row) == {"available", "version", "problem"}
        # A backend that cannot run reports why.
        assert row["available"] or row["problem"]
    assert report["backends"]["cpp"]["available"]
    assert set(report["gpu"]) >= {"cupy", "cuda_runtime", "devices", "available", "nvrtc"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF only")
def test_compiler_read_from_extension():
    compiler = fastode.info()["compiler"]
    assert compiler is not None
    assert "GCC" in compiler or "clang" in compiler


def test_info_without_cupy(monkeypatch):
    def missing():
        raise ImportError("no module named cupy")

    monkeypatch.setattr(_device, "import_cupy", missing)
    row = fastode.info()["backends"]["cupy"]
    assert not row["available"]
    assert row["version"] is None
    assert "no module named cupy" in row["problem"]


@pytest.fixture
def standin_gpu(monkeypatch):
    standin = StandIn()
    monkeypatch.setattr(_device, "import_cupy", lambda: standin)
    return standin


def test_info_with_mocked_gpu(standin_gpu):
    report = fastode.info()
    assert report["backends"]["cupy"] == {
        "available": True,
        "version": standin_gpu.__version__,
        "problem": None,
    }
    assert report["gpu"]["devices"] == [
        {
            "index": 0,
            "name": "Stand-in H200",
            "compute_capability": "9.0",
            "memory_bytes": 141 * 2**30,
        }
    ]
    assert report["gpu"]["cuda_runtime"] == 13000


def test_cli_info_prints_gpu_and_compiler(standin_gpu, capsys):
    assert cli.main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "GPU: Stand-in H200 (cc 9.0, 141 GiB); CuPy 14.0.0 (stand-in)" in printed
    assert "cupy: 14.0.0 (stand-in) (available)" in printed
    assert f"OpenMP threads: {_core.max_threads()}" in printed
    assert "compiler: " in printed
    assert "numba-cuda: " in printed


def test_device_failure_is_reported(monkeypatch):
    standin = StandIn()

    def no_driver():
        raise standin.cuda.runtime.CUDARuntimeError("cudaErrorNoDevice")

    standin.cuda.runtime.getDeviceCount = no_driver
    monkeypatch.setattr(_device, "import_cupy", lambda: standin)
    gpu = fastode.info()["gpu"]
    assert not gpu["available"]
    assert "cudaErrorNoDevice" in gpu["problem"]
