"""The ``fastode`` command line: ``fastode demo``, ``fastode info`` and ``fastode bench``.

Also runs as ``python -m fastode``. Library code never prints, so all output
of the package goes through this module.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import time

from . import __version__, _bench, _chunks, _core
from ._demo import ATOL, DT, RTOL, T1, CaseResult, run_cases
from ._info import info
from ._systems import POTENTIALS
from ._validation import METHODS, check_threads

#: Smallest --n: the damped oscillator needs one trajectory per regime.
MIN_TRAJECTORIES = 3

#: Trajectories per demo case when --n is not given.
DEFAULT_TRAJECTORIES = 1_000_000

#: Peak bytes the demo uses per trajectory: about 210 measured with
#: tracemalloc for --n 300000 on x86-64 Linux, rounded up.
DEMO_BYTES_PER_TRAJECTORY = 256

#: Seed of the demo when --seed is not given.
DEFAULT_SEED = 0

#: Column layout of the demo table.
ROW = "{:<46} {:<9} {:>13} {:>10} {:>10} {:>8}"


def _integer(text: str, minimum: int) -> int:
    """Parse an integer option (underscores allowed) of at least `minimum`."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = None
    if value is None or value < minimum:
        msg = f"expected an integer >= {minimum}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _trajectory_count(text: str) -> int:
    return _integer(text, MIN_TRAJECTORIES)


def _thread_count(text: str) -> int:
    try:
        return check_threads(_integer(text, 1))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seed(text: str) -> int:
    return _integer(text, 0)


def _repeat_count(text: str) -> int:
    return _integer(text, 1)


def _usage_error(command: str, message: str):
    """Print an error as argparse does and exit with its status 2."""
    print(f"fastode {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the ``fastode`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="fastode",
        description="Batched ODE integration for millions of trajectories.",
    )
    parser.add_argument("--version", action="version", version=f"fastode {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="integrate ODEs with closed forms and print error and speed",
        description=(
            "Integrate batches of ODEs from deep learning that have closed-form "
            "solutions, over t in [0, 10], and print for each the maximum "
            "absolute error of the final state against the closed form, the "
            "trajectory-steps per second and the wall time of the solve call."
        ),
    )
    demo.add_argument(
        "--n",
        type=_trajectory_count,
        default=None,
        help=(
            f"trajectories per case (default {DEFAULT_TRAJECTORIES}); the damped oscillator "
            f"splits them over its three regimes, so at least {MIN_TRAJECTORIES}"
        ),
    )
    demo.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help="OpenMP threads of each solve (default: OMP_NUM_THREADS or all cores)",
    )
    demo.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help=f"seed of the random initial states and parameters (default {DEFAULT_SEED})",
    )
    demo.add_argument(
        "--examples",
        action="store_true",
        help=(
            "run every script in examples/ instead of the table: each prints its "
            "error against a closed form and saves a PNG plot in the current folder; "
            "--n, --threads and --seed do not apply"
        ),
    )
    demo.set_defaults(handler=_run_demo)

    info = commands.add_parser(
        "info",
        help="show the version, threads, methods, systems and optional backends",
        description=(
            "Print the fastode version, the OpenMP threads available, the "
            "methods and systems, and whether numba and cupy import."
        ),
    )
    info.set_defaults(handler=_run_info)
    _add_bench_parser(commands)
    return parser


def _add_bench_parser(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="time fastode against NumPy, Numba, scipy and other ODE packages",
        description=(
            "Time the standard workloads (damped oscillator with rk4 and "
            "dopri5, Lorenz ensemble with rk4 in float32 and tsit5 in float64, "
            "Kepler with yoshida4, MLP neural-ODE forward pass) on every "
            "fastode backend present and on each peer that imports, and print "
            "seconds, trajectory-steps per second, the max error against a "
            "closed form or a tight-tolerance reference, and the speed-up "
            "over a vectorized NumPy solver of the same workload. Each entry "
            "runs once untimed (compilation, warm-up), then the best of "
            "--repeats runs is reported."
        ),
    )
    bench.add_argument(
        "--n",
        type=_trajectory_count,
        default=_bench.QUICK_N,
        help=(
            f"trajectories per workload of the quick run (default {_bench.QUICK_N}); "
            "ignored with --full"
        ),
    )
    bench.add_argument(
        "--full",
        action="store_true",
        help=(
            "run batch sizes of 100, 1000, ... 1000000 trajectories, as far as "
            "half the physical memory allows; the NumPy and torch peers take "
            "time in proportion to N, so this runs far longer than the quick run"
        ),
    )
    bench.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help=(
            "threads of fastode, Numba and torch (default: all cores); NumPy "
            "elementwise code and scipy use one thread"
        ),
    )
    bench.add_argument(
        "--repeats",
        type=_repeat_count,
        default=3,
        help="timed runs per entry after the warm-up run; the minimum is kept (default 3)",
    )
    bench.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write every record (times in seconds, memory in bytes) as JSON to PATH",
    )
    bench.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help=(
            "save trajectory-steps per second against batch size as a log-log "
            "PNG to PATH (needs matplotlib)"
        ),
    )
    # A few hundred trajectories and one timed run, for the test suite.
    bench.add_argument("--quick-test", action="store_true", help=argparse.SUPPRESS)
    bench.set_defaults(handler=_run_bench)


def _print_row(result: CaseResult) -> None:
    print(
        ROW.format(
            result.name,
            result.method,
            f"{result.n:,}",
            f"{result.max_error:.2e}",
            f"{result.steps_per_second:.2e}",
            f"{result.wall:.2f}",
        )
    )
    if result.note:
        print(f"    {result.note}")


def _run_examples(args: argparse.Namespace) -> int:
    table_options = {"--n": args.n, "--threads": args.threads, "--seed": args.seed}
    passed = [option for option, value in table_options.items() if value is not None]
    if passed:
        _usage_error(
            "demo",
            f"{', '.join(passed)} set the table of cases and do not apply to --examples; "
            "the example scripts use their own sizes",
        )
    from ._examples import examples_dir, run_examples

    try:
        examples_dir()
    except FileNotFoundError as error:
        print(f"fastode demo: error: {error}", file=sys.stderr)
        return 1
    return 1 if run_examples() else 0


def _check_demo_memory(n: int) -> None:
    """Exit when n trajectories per case would not fit in available memory,
    so that a mistyped --n fails at once instead of swapping."""
    needed = n * DEMO_BYTES_PER_TRAJECTORY
    available = _chunks.available_memory()
    if needed > available:
        largest = available // DEMO_BYTES_PER_TRAJECTORY
        _usage_error(
            "demo",
            f"--n {n} needs about {needed / 2**30:.1f} GiB but {available / 2**30:.1f} GiB "
            f"of memory is available; choose --n {largest} or less",
        )


def _run_demo(args: argparse.Namespace) -> int:
    if args.examples:
        return _run_examples(args)
    n = args.n if args.n is not None else DEFAULT_TRAJECTORIES
    _check_demo_memory(n)
    seed = args.seed if args.seed is not None else DEFAULT_SEED
    threads = args.threads if args.threads is not None else _core.max_threads()
    print(
        f"fastode {__version__} demo: {n:,} trajectories per case, "
        f"t in [0, {T1:g}], {threads} OpenMP threads"
    )
    print(
        f"adaptive methods: rtol {RTOL:g}, atol {ATOL:g}; "
        f"fixed-step and symplectic methods: dt {DT:g}"
    )
    print(
        ROW.format("case", "method", "trajectories", "max error", "steps/s", "wall s")
    )
    start = time.perf_counter()
    for result in run_cases(n, threads=threads, seed=seed):
        _print_row(result)
        sys.stdout.flush()
    print(
        "max error: largest absolute difference of the final state from the "
        "closed form; steps/s: trajectory-steps per second of the solve call."
    )
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    return 0


def _gpu_status(gpu: dict) -> str:
    if not gpu["available"]:
        return f"not available ({gpu['problem']})"
    runtime = gpu["cuda_runtime"]
    devices = ", ".join(
        f"{row['name']} (cc {row['compute_capability']}, "
        f"{row['memory_bytes'] / 2**30:.0f} GiB)"
        for row in gpu["devices"]
    )
    return f"{devices}; CuPy {gpu['cupy']}, CUDA runtime {runtime}"


def _backend_status(row: dict) -> str:
    version = row["version"] or "not installed"
    if row["available"]:
        return f"{version} (available)"
    return f"{version}, not available ({row['problem']})"


def _run_info(args: argparse.Namespace) -> int:
    report = info()
    print(f"fastode {__version__}")
    openmp = "" if report["openmp"] else " (built without OpenMP)"
    print(f"OpenMP threads: {report['openmp_threads']}{openmp}")
    print(f"compiler: {report['compiler'] or 'unknown (no ELF .comment section)'}")
    nvrtc = report["gpu"]["nvrtc"]
    print(f"NVRTC (cuda-bindings): {nvrtc or 'not installed'}")
    print("methods:")
    for kind in ("fixed", "adaptive", "symplectic"):
        names = [name for name, k in METHODS.items() if k == kind]
        print(f"  {kind:<11} {', '.join(names)}")
    print("systems:")
    print("  Linear        dy/dt = A y + b, 1 <= d <= 8 on the C++ core")
    print("  Oscillator    x'' + b x' + k x = force cos(omega t)")
    print("  Lorenz        sigma, rho, beta")
    print(f"  Hamiltonian   separable; potentials {', '.join(POTENTIALS)}")
    print("  MLP           neural-ODE field, layer widths (d included) up to 4096")
    print("  fastode.ode   a Python right-hand side compiled by Numba")
    print("backends:")
    print("  cpp           built-in systems on the CPU (compiled into this install)")
    print("  numba         fastode.ode systems on the CPU, needs numba")
    print("  numba-cuda    fastode.ode systems on an NVIDIA GPU, needs numba-cuda")
    print("  cupy          built-in systems on an NVIDIA GPU, needs CuPy")
    for name in ("numba", "numba-cuda", "cupy"):
        print(f"{name}: {_backend_status(report['backends'][name])}")
    print(f"GPU: {_gpu_status(report['gpu'])}")
    return 0


def _bench_sizes(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    """Return the batch sizes of the timing run and of the memory check."""
    if args.quick_test:
        return [_bench.TEST_N], [100, 1_000]
    if args.full:
        return _bench.full_sizes(), [1_000, 10_000, 100_000]
    return [args.n], [1_000, 10_000, 100_000]


def _bench_progress():
    from tqdm import tqdm

    bar = tqdm(total=0, unit="entry", file=sys.stderr, leave=False)

    def on_entries(count):
        bar.total += count
        bar.refresh()

    def on_entry(label):
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    return bar, on_entries, on_entry


def _collect_bench(threads, sizes, repeats, numba_backend):
    bar, on_entries, on_entry = _bench_progress()
    records, skips = [], []
    runs = _bench.run_bench(
        sizes, threads, repeats, on_entries, on_entry, numba_backend
    )
    with bar:
        for item in runs:
            if isinstance(item, _bench.Skip):
                skips.append(item)
                continue
            records.append(item)
    return records, skips


def _check_plot_backend(path) -> None:
    if path is None:
        return
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        msg = (
            f"--plot {path} needs matplotlib, which is not installed; "
            'install it with  pip install "fastode[plot]"'
        )
        raise SystemExit(f"fastode bench: error: {msg}") from None


def _check_output_path(option: str, path) -> None:
    """Exit unless `path` can be created, before minutes of benchmarking."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        _usage_error("bench", f"{option} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        _usage_error("bench", f"{option} {path} is a folder; give a file path")


def _run_bench(args: argparse.Namespace) -> int:
    _check_output_path("--json", args.json)
    _check_output_path("--plot", args.plot)
    _check_plot_backend(args.plot)
    threads = args.threads if args.threads is not None else _core.max_threads()
    sizes, memory_sizes = _bench_sizes(args)
    repeats = 1 if args.quick_test else args.repeats
    print(_bench.format_header(__version__, threads, sizes, repeats))
    started = datetime.datetime.now(datetime.timezone.utc)
    # The quick test leaves out the numba backend, whose first compilation
    # alone takes longer than the rest of the quick test.
    records, skips = _collect_bench(threads, sizes, repeats, not args.quick_test)
    memory = _bench.memory_scaling(memory_sizes, threads)
    peak = _bench.machine_peak(threads)
    for line in _bench.format_report(records, skips, memory, peak):
        print(line)
    if args.json is not None:
        document = _bench.json_document(
            __version__, started, threads, records, skips, memory, peak
        )
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
        print(f"wrote {args.json}")
    if args.plot is not None:
        _bench.plot_throughput(records, args.plot)
        print(f"wrote {args.plot}")
    failed = any(not record.max_error <= record.error_bound for record in records)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``fastode`` command line with ``argv`` and return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        # Ctrl-C: exit as a shell does after SIGINT (128 + 2), without a traceback.
        print(f"fastode {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout closed it (`fastode info | head`). Point stdout
        # at /dev/null so that flushing at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
