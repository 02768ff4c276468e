"""Floating-point work per step and the CPU's measured FMA peak, for ``fastode bench``.

Counting rule for ``FLOPS_PER_STEP``: a fused multiply-add counts 2 flops and
every other add, subtract, multiply, divide or square root counts 1. The
count follows the arithmetic that the C++ kernels perform for one
trajectory-step: the right-hand side at every stage, the stage states
y + dt sum_j a_sj k_j and the update y + dt sum_j b_j k_j with the zero
tableau coefficients dropped, and for adaptive methods the error norm. GCC
compiles ``acc = 0; acc += a * k`` to an FMA with a zero addend (or an add of
zero where a = 1), so the first term of every such sum counts 2 flops.
Comparisons, absolute values and the step-size controller are not counted,
and tanh counts 1. Only the oscillator rk4 count was checked against the
disassembly (GCC 12, -O3 -march=native); the others are counted from the
source by the same rule.

The peak is measured, not looked up: `measure_fma_peak` runs independent
chains x = x * a + b in a Numba loop, which LLVM compiles to packed FMAs of
the widest vector unit. The best of many short runs is kept, so a short
moment with a free core is enough on a shared machine.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

#: Flops per trajectory-step of each ``fastode bench`` workload, by the rule
#: in the module docstring. Adaptive counts are per accepted step and leave
#: out rejected steps.
FLOPS_PER_STEP = {
    # Per 8 lanes the kernel executes 24 FMAs, 4 multiplies and 2 adds: the
    # rhs -k x - b v (multiply + FMA) at 4 stages, 2 FMAs per component for
    # the first two stage states, an add and an FMA for the third, and 5
    # FMAs per component for the update. Without the zero addends it is 46.
    "oscillator rk4 dt 0.01": 54,
    # 6 new rhs evaluations (18), stage states (92 + 12 zero addends),
    # update (24), error norm with its divide and square root (42).
    "oscillator dopri5 rtol 1e-6": 188,
    # rhs 8 flops at 4 stages (32), stage states and update (63).
    "Lorenz rk4 dt 0.001 float32": 95,
    # 6 new rhs evaluations (48), stage states (162), update (42), error
    # norm (68).
    "Lorenz tsit5 rtol 1e-8 float64": 320,
    # Kick-drift-kick with merged kicks: 4 kicks of 13 (r^2 as multiply +
    # FMA, sqrt, r^3, divide, 2 multiplies, 2 FMAs, the kick length) and 3
    # drifts of 5 (2 FMAs and the drift length).
    "Kepler yoshida4 1000 steps/orbit": 67,
    # Per rhs: 4 -> 64 layer as 256 FMAs (512), 64 tanh (64), 64 -> 4 layer
    # as 256 FMAs (512), at 4 stages (4352); stage states and update (84).
    "MLP 4-64-4 tanh rk4 dt 0.01": 4436,
}

#: Independent chains per thread: 8 vectors of 8 doubles, enough to cover
#: the FMA latency on both pipes of current x86 cores.
CHAINS = 64
#: FMA rounds of one timed run (about 5 ms at 60 GFLOP/s per core).
ROUNDS = 2_000_000
#: Timed runs; the best is kept.
REPEATS = 50


@dataclass
class Peak:
    """The measured float64 FMA rate of this CPU, in flop/s."""

    single_thread: float
    all_threads: float
    threads: int

    @property
    def per_core(self) -> float:
        """Best rate of one core: alone, or its share of the all-thread run."""
        return max(self.single_thread, self.all_threads / self.threads)

    @property
    def float64(self) -> float:
        """Peak of ``threads`` cores: threads times the per-core rate.

        Other jobs on a shared machine lower the all-thread rate more than
        the best short single-thread run, so this is the machine's peak, not
        what this run could get.
        """
        return self.threads * self.per_core

    def for_dtype(self, dtype: str) -> float:
        """Peak for ``dtype``: float32 vectors hold twice as many lanes."""
        return 2.0 * self.float64 if dtype == "float32" else self.float64


@functools.cache
def _fma_kernels():
    import numba

    # CHAINS is a compile-time constant inside the kernels, so LLVM unrolls
    # the inner loop and keeps every chain in a vector register.
    @numba.njit(fastmath={"contract"}, cache=False)
    def chains(rounds, a, b, x):
        acc = np.empty(CHAINS)
        for j in range(CHAINS):
            acc[j] = x[j]
        for _ in range(rounds):
            for j in range(CHAINS):
                acc[j] = acc[j] * a + b
        for j in range(CHAINS):
            x[j] = acc[j]

    @numba.njit(parallel=True, fastmath={"contract"}, cache=False)
    def chains_parallel(rounds, a, b, x):
        for p in numba.prange(x.shape[0]):
            acc = np.empty(CHAINS)
            for j in range(CHAINS):
                acc[j] = x[p, j]
            for _ in range(rounds):
                for j in range(CHAINS):
                    acc[j] = acc[j] * a + b
            for j in range(CHAINS):
                x[p, j] = acc[j]

    return numba, chains, chains_parallel


def _best_rate(run, flops: float) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flops / best


@functools.cache
def measure_fma_peak(threads: int) -> Peak | None:
    """Measure the float64 FMA rate on one thread and on ``threads`` threads.

    Returns None when Numba is not installed. The result is cached per
    thread count, so one ``fastode bench`` run measures once.
    """
    try:
        numba, chains, chains_parallel = _fma_kernels()
    except ImportError:
        return None
    x = np.full(CHAINS, 0.5)
    chains(10, 0.999999, 1e-7, x)  # compile
    single = _best_rate(
        lambda: chains(ROUNDS, 0.999999, 1e-7, x), 2.0 * CHAINS * ROUNDS
    )
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        block = np.full((threads, CHAINS), 0.5)
        chains_parallel(10, 0.999999, 1e-7, block)  # compile
        parallel = _best_rate(
            lambda: chains_parallel(ROUNDS, 0.999999, 1e-7, block),
            2.0 * CHAINS * ROUNDS * threads,
        )
    finally:
        numba.set_num_threads(previous)
    return Peak(single_thread=single, all_threads=parallel, threads=threads)


def fraction_of_peak(
    workload: str, dtype: str, steps_per_second: float, peak: Peak | None
) -> float | None:
    """Return flop/s reached over the peak, or None when either is unknown."""
    flops = FLOPS_PER_STEP.get(workload)
    if flops is None or peak is None:
        return None
    return flops * steps_per_second / peak.for_dtype(dtype)
