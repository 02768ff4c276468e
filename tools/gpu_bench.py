"""Compare ``backend="cupy"`` with the C++ core over batch sizes 8 to 8 388 608.

Workloads, final state only (no t_eval):

- The Lorenz ensemble that GPU ODE solvers publish figures for: sigma = 10,
  beta = 8/3, rho = linspace(0, 21, N), y0 = (1, 0, 0), t in [0, 1],
  float32. Its fixed-step case is tsit5 with dt = 0.001
  (``adaptive=False``, 6 evaluations of f per step, 1000 steps). Its
  adaptive case is tsit5 with rtol = atol = 1e-8. float32 cannot resolve that rtol, and
  fastode raises it to 100 machine epsilon (1.19e-5), so the case also runs
  in float64 at 1e-8.
- The damped oscillator x'' + 0.1 x' + k x = 0, k = linspace(0.5, 4, N),
  rk4, dt = 0.01, 1000 steps, float64.
- A Neural-ODE forward pass: an MLP 32-256-32 with tanh, rk4, dt = 0.01 over
  [0, 1], float32, N up to 2**20. On the GPU it takes the batched path (one
  matrix product per layer for the whole batch).

Figures are trajectory-steps per second: attempted steps summed over all
trajectories, divided by the wall time of the solve call. GPU runs keep y0
and the per-trajectory parameter on the device, so they time the kernel and
the launch; an untimed N = 8 call compiles the kernel first. Each GPU row also gives the ratio to the CPU core
at the same N, or at the largest N the CPU ran (marked ``*``), and the
largest |GPU - CPU| difference of the final states at that N relative to
max(1, |y|).

``--dry-run`` runs only the CPU rows at N <= 4096 with one repeat, so the
script can be checked on a machine without a GPU. Run it for real through
``tools/gpu-check.sh``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

import fastode

SIZES = [8**k for k in range(1, 8)] + [2**23]


def _on_host(array):
    return array


def _lorenz(n, dtype, place=_on_host):
    """Return the system and y0. `place` moves the per-trajectory rho, to
    the GPU for GPU rows, so that the timing excludes a parameter upload."""
    rho = place(np.linspace(0.0, 21.0, n).astype(dtype))
    y0 = np.tile(np.array([1.0, 0.0, 0.0], dtype=dtype), (n, 1))
    return fastode.Lorenz(sigma=10.0, rho=rho, beta=8.0 / 3.0), y0


def _mlp(n, dtype, place=_on_host):
    """Return an MLP 32-256-32, weights scaled by 1 / sqrt(fan-in), and y0.

    `place` is unused because the solve call uploads the weights."""
    rng = np.random.default_rng(0)
    shapes = [(256, 32), (32, 256)]
    weights = [rng.standard_normal(shape) / np.sqrt(shape[1]) for shape in shapes]
    y0 = rng.standard_normal((n, 32)).astype(dtype)
    return fastode.MLP(weights, activation="tanh"), y0


def _oscillator(n, dtype, place=_on_host):
    k = place(np.linspace(0.5, 4.0, n).astype(dtype))
    y0 = np.tile(np.array([1.0, 0.0], dtype=dtype), (n, 1))
    return fastode.Oscillator(k=k, b=0.1), y0


#: name: (system builder, dtype, solve keyword arguments)
CASES = {
    "lorenz tsit5 f32 fixed dt=1e-3": (
        _lorenz,
        np.float32,
        {"method": "tsit5", "adaptive": False, "dt": 1e-3, "t_span": (0.0, 1.0)},
    ),
    "lorenz tsit5 f32 tol=1e-8 (rtol->1.19e-5)": (
        _lorenz,
        np.float32,
        {"method": "tsit5", "rtol": 1e-8, "atol": 1e-8, "t_span": (0.0, 1.0)},
    ),
    "lorenz tsit5 f64 tol=1e-8": (
        _lorenz,
        np.float64,
        {"method": "tsit5", "rtol": 1e-8, "atol": 1e-8, "t_span": (0.0, 1.0)},
    ),
    "oscillator rk4 f64 dt=1e-2": (
        _oscillator,
        np.float64,
        {"method": "rk4", "dt": 1e-2, "t_span": (0.0, 10.0)},
    ),
    "mlp 32-256-32 tanh rk4 f32 dt=1e-2": (
        _mlp,
        np.float32,
        {"method": "rk4", "dt": 1e-2, "t_span": (0.0, 1.0)},
    ),
}

#: Largest N of a case on either side, and on the CPU, where the full range
#: would take too long (the CPU runs this MLP at about 4e5 steps/s per core).
CASE_MAX_N = {"mlp 32-256-32 tanh rk4 f32 dt=1e-2": 2**20}
CASE_CPU_MAX_N = {"mlp 32-256-32 tanh rk4 f32 dt=1e-2": 2**15}


@dataclass
class Row:
    case: str
    backend: str
    n: int
    seconds: float
    steps_per_second: float
    ratio: float | None = None
    ratio_cpu_n: int | None = None
    max_difference: float | None = None


def _solve(system, y0, backend, kwargs):
    with warnings.catch_warnings():
        # The float32 case requests rtol below the float32 floor on purpose.
        warnings.filterwarnings("ignore", "rtol=", UserWarning)
        return fastode.solve(system, y0, backend=backend, **kwargs)


def _time_cpu(system, y0, kwargs, repeats):
    best, sol = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        sol = _solve(system, y0, "cpp", kwargs)
        best = min(best, time.perf_counter() - start)
    return best, sol


def _time_gpu(cupy, system, y0, kwargs, repeats):
    y0_device = cupy.asarray(y0)
    best, sol = np.inf, None
    for _ in range(repeats):
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        sol = _solve(system, y0_device, "cupy", kwargs)
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
    return best, sol


def _steps(sol) -> int:
    return int(np.asarray(sol.stats["n_steps"]).sum())


def _difference(gpu_y, cpu_y) -> float:
    scale = np.maximum(np.abs(cpu_y), 1.0)
    return float(np.max(np.abs(gpu_y - cpu_y) / scale))


def _print(row: Row) -> None:
    ratio = ""
    if row.ratio is not None:
        mark = "*" if row.ratio_cpu_n != row.n else " "
        ratio = f"{row.ratio:9.1f}{mark}"
    difference = f"{row.max_difference:11.2e}" if row.max_difference is not None else ""
    print(
        f"{row.case:42s} {row.backend:5s} {row.n:9d} {row.seconds:9.4f} "
        f"{row.steps_per_second:13.3e} {ratio:>10s} {difference:>11s}",
        flush=True,
    )


def _run_case(name, cupy, sizes, cpu_max_n, repeats) -> list[Row]:
    build, dtype, kwargs = CASES[name]
    rows, cpu = [], {}
    sizes = [n for n in sizes if n <= CASE_MAX_N.get(name, n)]
    cpu_max_n = min(cpu_max_n, CASE_CPU_MAX_N.get(name, cpu_max_n))
    for n in sizes:
        if n > cpu_max_n:
            continue
        system, y0 = build(n, dtype)
        seconds, sol = _time_cpu(system, y0, kwargs, repeats)
        cpu[n] = (_steps(sol) / seconds, np.asarray(sol.y))
        rows.append(Row(name, "cpu", n, seconds, cpu[n][0]))
        _print(rows[-1])
    if cupy is None:
        return rows
    small_system, small_y0 = build(8, dtype, cupy.asarray)
    _solve(small_system, cupy.asarray(small_y0), "cupy", kwargs)
    for n in sizes:
        system, y0 = build(n, dtype, cupy.asarray)
        seconds, sol = _time_gpu(cupy, system, y0, kwargs, repeats)
        row = Row(name, "gpu", n, seconds, _steps(sol) / seconds)
        if cpu:
            row.ratio_cpu_n = n if n in cpu else max(cpu)
            cpu_rate, cpu_y = cpu[row.ratio_cpu_n]
            row.ratio = row.steps_per_second / cpu_rate
            if row.ratio_cpu_n == n:
                row.max_difference = _difference(cupy.asnumpy(sol.y), cpu_y)
        rows.append(row)
        _print(row)
    return rows


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-n",
        type=int,
        default=SIZES[-1],
        help=f"largest batch size (default {SIZES[-1]})",
    )
    parser.add_argument(
        "--cpu-max-n",
        type=int,
        default=2**21,
        help="largest batch size the CPU core runs (default 2097152)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per row, best kept (default 3)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU rows only, N <= 4096, one repeat: checks the script without a GPU",
    )
    return parser.parse_args()


def main() -> None:
    args = _parse()
    cupy = None
    max_n, repeats = args.max_n, args.repeats
    if args.dry_run:
        max_n, repeats = min(max_n, 4096), 1
        print("dry run: CPU rows only")
    else:
        import cupy
    info = fastode.info()
    print(f"GPU: {info['gpu']['devices']}")
    print(f"CPU core: {info['openmp_threads']} OpenMP threads, {info['compiler']}")
    print(
        f"{'case':42s} {'where':5s} {'N':>9s} {'seconds':>9s} {'traj-steps/s':>13s} "
        f"{'GPU/CPU':>10s} {'max |diff|':>11s}"
    )
    sizes = [n for n in SIZES if n <= max_n]
    rows = []
    for name in CASES:
        rows += _run_case(name, cupy, sizes, args.cpu_max_n, repeats)
    print("* ratio against the CPU core at the largest N it ran")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump([asdict(row) for row in rows], file, indent=1)


if __name__ == "__main__":
    main()
