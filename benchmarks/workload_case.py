"""Time one entry of a ``fastode._bench`` workload under pytest-benchmark.

The suites in this folder build their workloads with the code behind
``fastode bench``, so both time the same entries and check them against the
same closed forms or references.
"""

import time

import pytest

#: Timed rounds of fastode entries; peers, which are slower, get fewer.
FASTODE_ROUNDS = 5


def run_entry(benchmark, record, work, skipped, peer, case, peer_rounds=1):
    """Time ``peer``'s entry of ``work`` and record its time, error and warm-up.

    The first call (compilation, jit tracing, first-touch allocation) is
    timed on its own and reported as the warm-up; the timed rounds follow.
    ``skipped`` maps a peer's package name to the reason it did not import.
    """
    entry = next((e for e in work.entries if e.peer == peer), None)
    if entry is None:
        package = peer.split(" ")[0]
        pytest.skip(skipped.get(package, skipped.get(peer, f"{peer} is not available")))
    benchmark.group = case
    start = time.perf_counter()
    entry.run()
    warmup = time.perf_counter() - start
    rounds = FASTODE_ROUNDS if peer.startswith("fastode") else peer_rounds
    y = benchmark.pedantic(entry.run, rounds=rounds, iterations=1, warmup_rounds=0)
    error = work.check(y, entry.rows)
    record(
        case,
        "fastode" if peer == "fastode cpp" else peer,
        error,
        scale=entry.scale,
        note=entry.note,
        warmup=warmup,
    )
    assert error < work.error_bound


def skip_reasons(skips):
    """Return {peer: reason} of the ``Skip`` records of a workload build."""
    return {skip.peer: skip.reason for skip in skips}


def build_workload(builder, n, threads):
    """Return ``builder(n, threads, skips)`` and the reasons of its skipped peers."""
    skips = []
    work = builder(n, threads, skips)
    return work, skip_reasons(skips)
