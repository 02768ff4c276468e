"""Feed random arguments straight into the `fastode._core.solve_*` bindings
and check that the process never crashes.

The bindings sit below the argument checks of `fastode.solve`, so this also
sends inputs that `solve` would reject: wrong shapes, parameter arrays with
the wrong number of rows, unsorted or non-finite t_eval, zero or negative
tolerances, unknown methods. A call may raise; it may not crash, hang or (in
the sanitizer build of tools/sanitize.sh) touch memory it does not own.

A worker process runs the calls and appends each one to a log before making
it, so after a crash the last logged call is the one that crashed. The parent
records it, starts a new worker and goes on until the time is up.

Usage: python tools/fuzz_core.py --seconds 180 [--seed 1] [--valid-shapes]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

KERNELS = ("oscillator", "lorenz", "linear", "hamiltonian", "mlp", "mlp_cnf")
METHODS = ("euler", "midpoint", "heun", "rk4", "bs3", "dopri5", "tsit5")
SYMPLECTIC = ("symplectic_euler", "verlet", "yoshida4", "yoshida6")
POTENTIALS = {"harmonic": 1, "pendulum": 1, "kepler": 2, "henon_heiles": 2}
#: Bounds the work of one call, so a tiny dt over a huge span cannot hang.
MAX_STEPS = 5000
#: 1 with --skip-known: no zero-row parameter arrays and no threads < 1, the
#: inputs known to crash the bindings, so a run looks for other causes.
SKIP_KNOWN = 0
#: Exceptions a binding may raise on bad input.
EXPECTED = (TypeError, ValueError, RuntimeError, IndexError, OverflowError, MemoryError)


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


def extreme(rng):
    return pick(
        rng, [0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 5e-324]
    )


def scalar(rng, low, high, bad=0.1):
    """Return a log-uniform magnitude in [low, high], or an extreme value."""
    if rng.random() < bad:
        return float(extreme(rng))
    return float(10.0 ** rng.uniform(np.log10(low), np.log10(high)))


def state_array(rng, n, dim, dtype, valid_shapes):
    scale = 10.0 ** rng.uniform(-3, 3 if rng.random() < 0.9 else 300)
    with np.errstate(over="ignore"):
        y = (rng.standard_normal((n, dim)) * scale).astype(dtype)
    if y.size and rng.random() < 0.2:
        y.flat[int(rng.integers(y.size))] = extreme(rng)
    if valid_shapes:
        return y
    roll = rng.random()
    if roll < 0.05:
        return y.ravel()
    if roll < 0.10:
        return np.asfortranarray(y)
    if roll < 0.15 and n > 1:
        return y[::2]
    if roll < 0.18:
        return y.astype(np.int64)
    if roll < 0.20:
        return y.astype(np.complex128)
    if roll < 0.25:
        return rng.standard_normal((n, dim + int(rng.integers(1, 3)))).astype(dtype)
    return y


def rows_for(rng, n, valid_shapes):
    """Draw the rows of a parameter array: 1 (shared), n, or a wrong count."""
    if valid_shapes or rng.random() < 0.85:
        return 1 if rng.random() < 0.5 or n == 0 else n
    return pick(rng, [0, n + 1, n + 7, 2 if n != 2 else 3][SKIP_KNOWN:])


def per_trajectory(rng, n, tail, valid_shapes, low=0.1, high=4.0):
    rows = rows_for(rng, n, valid_shapes)
    values = rng.uniform(low, high, (rows, *tail))
    if values.size and rng.random() < 0.1:
        values.flat[int(rng.integers(values.size))] = extreme(rng)
    return values


def system_arguments(rng, kernel, n, valid_shapes):
    """Draw (dim, keyword arguments) of one system binding."""
    if kernel == "oscillator":
        names = ("k", "b", "force", "omega")
        return 2, {name: per_trajectory(rng, n, (), valid_shapes) for name in names}
    if kernel == "lorenz":
        names = ("sigma", "rho", "beta")
        return 3, {name: per_trajectory(rng, n, (), valid_shapes) for name in names}
    if kernel == "linear":
        d = int(rng.integers(1, 9))
        a_dim = d if valid_shapes or rng.random() < 0.9 else d + 1
        return d, {
            "A": -per_trajectory(rng, n, (a_dim, a_dim), valid_shapes, -1.0, 2.0),
            "b": per_trajectory(rng, n, (d,), valid_shapes, -1.0, 1.0),
            "has_b": bool(rng.random() < 0.5),
        }
    if kernel == "hamiltonian":
        potential = pick(rng, list(POTENTIALS))
        dim = 2 * POTENTIALS[potential]
        if not valid_shapes and rng.random() < 0.05:
            potential = "quartic"
        return dim, {
            "k": per_trajectory(rng, n, (), valid_shapes),
            "mass": per_trajectory(rng, n, (), valid_shapes),
            "potential": potential,
        }
    return mlp_arguments(rng, kernel, n, valid_shapes)


def mlp_arguments(rng, kernel, n, valid_shapes):
    d = int(rng.integers(1, 5))
    time_input = bool(rng.random() < 0.3)
    widths = (
        [d + int(time_input)]
        + [int(rng.integers(1, 9))] * int(rng.integers(0, 3))
        + [d]
    )
    n_params = sum(i * o + o for i, o in zip(widths, widths[1:], strict=False))
    if not valid_shapes and rng.random() < 0.15:
        n_params = int(rng.integers(0, n_params + 2))
    args = {
        "params": rng.standard_normal(n_params),
        "widths": np.array(widths, dtype=np.int32),
        "activation": int(rng.integers(0, 4))
        if valid_shapes
        else int(rng.integers(-1, 6)),
        "time_input": time_input,
    }
    if kernel == "mlp":
        return d, args
    n_probes = int(rng.integers(1, 4))
    args.update(
        probes=per_trajectory(rng, n, (n_probes, d), valid_shapes, -1.0, 1.0),
        n_probes=n_probes,
        probe_scale=1.0 / n_probes,
        unit_trace=np.zeros(0),
        use_unit_trace=False,
    )
    return d + 1, args


def call_arguments(rng, kernel, n, dtype, valid_shapes):
    """Draw the arguments shared by every `solve_*` binding."""
    t0 = float(rng.uniform(-10, 10)) if rng.random() > 0.05 else float(extreme(rng))
    length = pick(rng, [0.0, float(rng.uniform(1e-6, 20.0)), float(extreme(rng))])
    t1 = t0 + length * pick(rng, [1.0, -1.0])
    n_eval = int(rng.integers(0, 6))
    t_eval = (
        np.sort(rng.uniform(min(t0, t1), max(t0, t1), n_eval))
        if np.isfinite(t1)
        else (rng.standard_normal(n_eval))
    )
    if t1 < t0:
        t_eval = t_eval[::-1].copy()
    if not valid_shapes and rng.random() < 0.1:
        rng.shuffle(t_eval)
    methods = METHODS + (
        SYMPLECTIC if kernel == "hamiltonian" or not valid_shapes else ()
    )
    method = pick(rng, methods) if valid_shapes or rng.random() < 0.95 else "rk5"
    return {
        "t_eval": t_eval.astype(dtype),
        "dense": bool(n_eval > 0 or rng.random() < 0.1),
        "method": method,
        "t0": t0,
        "t1": t1,
        "dt": scalar(rng, 1e-4, 2.0) if rng.random() < 0.7 else 0.0,
        "rtol": scalar(rng, 1e-12, 1e-1),
        "atol": scalar(rng, 1e-14, 1e-1),
        "max_steps": int(rng.integers(1 if valid_shapes else -2, MAX_STEPS)),
        "controller": int(rng.integers(0, 2))
        if valid_shapes
        else int(rng.integers(-1, 4)),
        "threads": int(
            rng.integers(1, 3) if valid_shapes else rng.integers(-1 + 2 * SKIP_KNOWN, 4)
        ),
    }


def make_case(rng, valid_shapes):
    kernel = pick(rng, KERNELS)
    n = pick(rng, [0, 1, 2, 5, 31, 32, 33, 64, 65, 130])
    dtype = pick(rng, [np.float64, np.float32])
    dim, system = system_arguments(rng, kernel, n, valid_shapes)
    call = call_arguments(rng, kernel, n, dtype, valid_shapes)
    y0 = state_array(rng, n, dim, dtype, valid_shapes)
    return kernel, y0, call, system


def describe(kernel, y0, call, system) -> str:
    """Describe the call in one JSON line: arrays by shape, dtype and contents."""

    def summary(value):
        if isinstance(value, np.ndarray):
            flat = value.ravel()
            shown = flat[:8].tolist() if value.dtype.kind != "c" else str(flat[:4])
            return {"shape": value.shape, "dtype": str(value.dtype), "first": shown}
        return value

    fields = {"kernel": kernel, "y0": summary(y0)}
    fields.update({name: summary(value) for name, value in {**call, **system}.items()})
    return json.dumps(fields, default=str)


def check_outputs(out, n_rows):
    """Check the outputs of a call that returned: one entry per trajectory,
    valid statuses, no more steps than allowed."""
    status = np.asarray(out["status"])
    assert status.shape == (n_rows,), f"status shape {status.shape} for {n_rows} rows"
    assert np.all((status >= 0) & (status <= 3)), f"status values {np.unique(status)}"
    assert np.all(np.asarray(out["n_steps"]) <= MAX_STEPS), "more steps than max_steps"


def run_worker(seed, deadline, log_path, valid_shapes):
    from fastode import _core

    # Overflow in the generated values is intended; keep stderr for crashes.
    np.seterr(all="ignore")
    warnings.simplefilter("ignore", RuntimeWarning)
    rng = np.random.default_rng(seed)
    count = 0
    with open(log_path, "a", encoding="utf-8") as log:
        while time.monotonic() < deadline:
            kernel, y0, call, system = make_case(rng, valid_shapes)
            log.write(describe(kernel, y0, call, system) + "\n")
            log.flush()
            os.fsync(log.fileno())
            t_eval = call.pop("t_eval")
            dense = call.pop("dense")
            try:
                out = getattr(_core, f"solve_{kernel}")(
                    y0, t_eval, dense, **call, **system
                )
            except EXPECTED:
                pass
            else:
                check_outputs(out, y0.shape[0] if y0.ndim else 0)
            count += 1
    print(f"worker seed {seed}: {count} calls", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="total run time in s"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first worker")
    parser.add_argument(
        "--valid-shapes",
        action="store_true",
        help="only shapes that fastode.solve would pass on",
    )
    parser.add_argument(
        "--skip-known",
        action="store_true",
        help="do not send inputs already known to crash (see SKIP_KNOWN)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SKIP_KNOWN
    SKIP_KNOWN = int(args.skip_known)
    if args.worker:
        run_worker(args.seed, args.deadline, args.log, args.valid_shapes)
        return 0
    return supervise(args)


def supervise(args) -> int:
    """Run workers until the time is up; report each crash with its call."""
    deadline = time.monotonic() + args.seconds
    crashes = []
    seed = args.seed
    while time.monotonic() < deadline:
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as log:
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--seed",
                str(seed),
                "--deadline",
                str(deadline),
                "--log",
                log.name,
            ]
            if args.valid_shapes:
                command.append("--valid-shapes")
            if args.skip_known:
                command.append("--skip-known")
            # time.monotonic is shared by processes on Linux (CLOCK_MONOTONIC).
            result = subprocess.run(
                command, stderr=subprocess.PIPE, text=True, check=False
            )
            lines = open(log.name, encoding="utf-8").read().splitlines()
        os.unlink(log.name)
        print(
            result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "",
            file=sys.stderr,
        )
        if result.returncode != 0:
            crashes.append(
                (seed, result.returncode, lines[-1] if lines else "", result.stderr)
            )
            print(
                f"CRASH seed {seed}, exit code {result.returncode}, after {len(lines)} "
                f"calls; last call:\n  {lines[-1] if lines else '(none)'}",
                file=sys.stderr,
            )
        seed += 1
    print(f"{len(crashes)} crashes in {args.seconds:.0f} s", file=sys.stderr)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
