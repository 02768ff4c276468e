"""Scale checks too slow for the test suite, run by hand and reported.

``memmap``: solve N damped oscillators (float32, 100 output times) into a
memory-mapped .npy file under a memory budget, then compare a sample of rows
with an in-memory run of those rows alone. Prints run time, peak RSS and the
file size. Check free disk first: the file takes N * 800 bytes.

``bad-rows``: a batch of ordinary oscillators with rows of NaN, inf and huge
initial states and stiff rows (k = 1e12, b = 1e7: decay rates of about 1e5
and 1e7 per unit time); the non-finite and stiff rows get failure
statuses and the others equal the same rows solved without them, bit for bit.

Usage: python tools/scale_check.py memmap --n 10000000 --dir /tmp
       python tools/scale_check.py bad-rows --n 10000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np

import fastode

T_EVAL = np.linspace(0.0, 10.0, 100)


def oscillators(n, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    k = rng.uniform(0.5, 2.0, n).astype(dtype)
    y0 = rng.standard_normal((n, 2)).astype(dtype)
    return k, y0


def peak_rss_gib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def check_memmap(n, directory, max_memory, sample):
    k, y0 = oscillators(n)
    path = os.path.join(directory, "fastode_scale_y.npy")
    print(f"before the run: peak RSS {peak_rss_gib():.2f} GiB (inputs included)")
    start = time.perf_counter()
    sol = fastode.solve(
        fastode.Oscillator(k, b=0.1),
        y0,
        (0.0, 10.0),
        t_eval=T_EVAL,
        rtol=1e-4,
        atol=1e-6,
        out=path,
        max_memory=max_memory,
        progress=True,
    )
    elapsed = time.perf_counter() - start
    print(
        f"{n} trajectories in {elapsed:.1f} s; peak RSS {peak_rss_gib():.2f} GiB; "
        f"file {os.path.getsize(path) / 2**30:.2f} GiB; "
        f"statuses {np.bincount(sol.status, minlength=4).tolist()}"
    )
    rows = np.sort(np.random.default_rng(1).choice(n, sample, replace=False))
    alone = fastode.solve(
        fastode.Oscillator(k[rows], b=0.1),
        y0[rows],
        (0.0, 10.0),
        t_eval=T_EVAL,
        rtol=1e-4,
        atol=1e-6,
    )
    stored = np.load(path, mmap_mode="r")
    same = np.array_equal(stored[rows], alone.y)
    print(f"{sample} sampled rows equal an in-memory run of those rows: {same}")
    del sol, stored
    os.unlink(path)
    return same


def check_bad_rows(n):
    k, y0 = oscillators(n, dtype=np.float64)
    bad = {0: [np.nan, 0.0], 1: [np.inf, 1.0], 2: [1e300, 1e300], 3: [-np.inf, np.nan]}
    stiff = [4, n // 2, n - 1]
    k_bad, y0_bad = k.copy(), y0.copy()
    for row, state in bad.items():
        y0_bad[row] = state
    k_bad[stiff] = 1e12
    b_bad = np.full(n, 0.1)
    b_bad[stiff] = 1e7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = fastode.solve(
            fastode.Oscillator(k_bad, b=b_bad),
            y0_bad,
            (0.0, 10.0),
            t_eval=T_EVAL,
            max_steps=20_000,
        )
    good = np.setdiff1d(np.arange(n), [*bad, *stiff])
    clean = fastode.solve(
        fastode.Oscillator(k[good], b=0.1), y0[good], (0.0, 10.0), t_eval=T_EVAL
    )
    print("statuses of the bad rows:", {row: int(sol.status[row]) for row in bad})
    print("statuses of the stiff rows:", {row: int(sol.status[row]) for row in stiff})
    print("warnings:", [str(w.message)[:80] for w in caught])
    same = all(
        np.array_equal(sol.stats[name][good], clean.stats[name]) for name in clean.stats
    )
    same = same and np.array_equal(sol.y[good], clean.y) and np.all(clean.status == 0)
    print(
        f"{good.size} ordinary rows bit-identical to a run without the bad ones: {same}"
    )
    return same


def main():
    parser = argparse.ArgumentParser(description="fastode scale checks")
    sub = parser.add_subparsers(dest="check", required=True)
    memmap = sub.add_parser("memmap")
    memmap.add_argument("--n", type=int, default=10_000_000, help="trajectories")
    memmap.add_argument("--dir", default="/tmp", help="folder of the output file")
    memmap.add_argument("--max-memory", type=float, default=2 * 2**30, help="bytes")
    memmap.add_argument("--sample", type=int, default=2000, help="rows compared")
    bad = sub.add_parser("bad-rows")
    bad.add_argument("--n", type=int, default=10_000, help="ordinary trajectories")
    args = parser.parse_args()
    if args.check == "memmap":
        ok = check_memmap(args.n, args.dir, args.max_memory, args.sample)
    else:
        ok = check_bad_rows(args.n)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
