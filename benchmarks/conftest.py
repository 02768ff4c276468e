"""Ratio report of the fastode benchmarks.

Each benchmark stores its minimum time over rounds through the ``record``
fixture. At the end of the run a table gives each peer's time as a multiple
of fastode's time measured in the same run. The table also shows the load
average, because other processes on a shared machine slow every entry.
"""

import os

import pytest

_TIMINGS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    parser.addoption(
        "--bench-threads",
        type=int,
        default=None,
        help=(
            "threads of fastode and of the Numba peer (default: all cores); "
            "NumPy and scipy peers run on one thread either way"
        ),
    )


def pytest_configure(config):
    config.stash[_TIMINGS] = {}


@pytest.fixture(scope="session")
def threads(request):
    """Thread count of the parallel entries, or None for all cores."""
    return request.config.getoption("--bench-threads")


@pytest.fixture
def record(request, benchmark):
    """Return a function that stores the benchmark's minimum time for the table.

    Its ``scale`` multiplies the measured time, for peers timed on a sample
    of the batch, its ``note`` is printed next to the peer's time, and
    ``warmup`` is the untimed first call (compilation included), in seconds.
    """

    def store(case, peer, error, scale=1.0, note="", warmup=None):
        benchmark.extra_info.update(max_error=error, scale=scale, warmup=warmup)
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return
        seconds = benchmark.stats.stats.min * scale
        request.config.stash[_TIMINGS].setdefault(case, {})[peer] = (
            seconds,
            error,
            warmup,
            note,
        )

    return store


def pytest_terminal_summary(terminalreporter, config):
    timings = config.stash.get(_TIMINGS, {})
    if not timings:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fastode ratios (peer time / fastode time, same run)")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    threads = config.getoption("--bench-threads") or os.cpu_count()
    write(f"{os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")
    write(
        f"threads: fastode, Numba and torch {threads}; NumPy and scipy 1; "
        "JAX uses XLA's own thread pool"
    )
    for case, peers in timings.items():
        write(case)
        reference = peers.get("fastode", (None,))[0]
        for peer, (seconds, error, warmup, note) in peers.items():
            ratio = f"{seconds / reference:9.1f}x" if reference else "      n/a"
            warm = f"warm-up {warmup:7.3f} s" if warmup is not None else ""
            extra = f"  ({note})" if note else ""
            write(
                f"  {peer:<28} {seconds:10.4f} s {ratio}  max error {error:.1e}"
                f"  {warm}{extra}"
            )
