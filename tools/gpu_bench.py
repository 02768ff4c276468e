"""Compare ``backend="cupy"`` with the C++ core on three ensembles.

Prints trajectory-steps per second (the sum of attempted steps over all
trajectories, divided by wall time) for each backend. GPU runs keep y0 and
the results on the device, so the time is the kernel plus launch overhead.
An untimed warm-up call compiles the kernel first. Run it through
``tools/gpu-check.sh`` on a machine with an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastode


def _lorenz(n, dtype):
    rho = np.linspace(0.0, 21.0, n)
    y0 = np.tile(np.array([1.0, 0.0, 0.0], dtype=dtype), (n, 1))
    return fastode.Lorenz(rho=rho), y0


def _oscillator(n, dtype):
    k = np.linspace(0.5, 4.0, n)
    y0 = np.tile(np.array([1.0, 0.0], dtype=dtype), (n, 1))
    return fastode.Oscillator(k=k, b=0.1), y0


#: name: (system builder, dtype, solve keyword arguments)
CASES = {
    "lorenz rk4 float32 dt=1e-3 t=0..1": (
        _lorenz,
        np.float32,
        {"method": "rk4", "dt": 1e-3, "t_span": (0.0, 1.0)},
    ),
    # float32 cannot meet 1e-8 (fastode raises rtol to 100 eps), so float64.
    "lorenz tsit5 float64 rtol=atol=1e-8 t=0..1": (
        _lorenz,
        np.float64,
        {"method": "tsit5", "rtol": 1e-8, "atol": 1e-8, "t_span": (0.0, 1.0)},
    ),
    "oscillator rk4 float64 dt=1e-3 t=0..10": (
        _oscillator,
        np.float64,
        {"method": "rk4", "dt": 1e-3, "t_span": (0.0, 10.0)},
    ),
}


def _time_cpu(system, y0, kwargs):
    start = time.perf_counter()
    sol = fastode.solve(system, y0, backend="cpp", **kwargs)
    return time.perf_counter() - start, int(sol.stats["n_steps"].sum())


def _time_gpu(cupy, system, y0, kwargs, repeats=3):
    y0_device = cupy.asarray(y0)
    best = np.inf
    for _ in range(repeats):
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        sol = fastode.solve(system, y0_device, backend="cupy", **kwargs)
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
    return best, int(sol.stats["n_steps"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n-cpu",
        type=int,
        default=1 << 15,
        help="trajectories per CPU run (default 32768)",
    )
    parser.add_argument(
        "--n-gpu",
        type=int,
        default=1 << 20,
        help="trajectories per GPU run (default 1048576)",
    )
    args = parser.parse_args()

    import cupy

    from fastode._cupy import gpu_info

    print(gpu_info())
    print(
        f"{'case':46s} {'backend':8s} {'N':>9s} {'seconds':>9s} {'traj-steps/s':>13s}"
    )
    for name, (build, dtype, kwargs) in CASES.items():
        # A small untimed run compiles the GPU kernel and warms both backends.
        small_system, small_y0 = build(8, dtype)
        fastode.solve(small_system, small_y0, backend="cpp", **kwargs)
        fastode.solve(small_system, cupy.asarray(small_y0), backend="cupy", **kwargs)
        for backend, n in (("cpp", args.n_cpu), ("cupy", args.n_gpu)):
            system, y0 = build(n, dtype)
            if backend == "cpp":
                seconds, steps = _time_cpu(system, y0, kwargs)
            else:
                seconds, steps = _time_gpu(cupy, system, y0, kwargs)
            print(
                f"{name:46s} {backend:8s} {n:9d} {seconds:9.3f} {steps / seconds:13.3e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
