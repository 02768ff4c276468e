// Measures the achievable double-precision FMA rate of this CPU: every
// OpenMP thread runs CHAINS independent chains x = x * a + b on 8-wide
// vectors, enough independent work to keep every FMA pipe busy.
//
// Build and run (GCC or Clang):
//   g++ -O2 -march=native -fopenmp fma_peak.cpp -o fma_peak
//   OMP_NUM_THREADS=2 ./fma_peak
// It prints the GFLOP/s of the best of REPEATS short runs, counting one FMA
// as 2 flops. Short runs let a moment with free cores count on a shared
// machine, where long runs measure the other jobs as well.
#include <omp.h>

#include <chrono>
#include <cstdio>

typedef double vec8 __attribute__((vector_size(64)));

// FMA latency (4 cycles on Zen 4) times 2 pipes needs at least 8 chains in
// flight; 12 leaves a margin without running out of the 32 vector registers.
constexpr int CHAINS = 12;

__attribute__((noinline)) double run_chains(long iterations, double a, double b) {
    vec8 x[CHAINS];
    for (int c = 0; c < CHAINS; ++c) x[c] = vec8{} + 0.5 + 0.01 * c;
    const vec8 va = vec8{} + a, vb = vec8{} + b;
    for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; ++c) x[c] = x[c] * va + vb;
    }
    double sum = 0.0;
    for (int c = 0; c < CHAINS; ++c)
        for (int l = 0; l < 8; ++l) sum += x[c][l];
    return sum;  // used, so the loop is not removed
}

constexpr int REPEATS = 200;

int main() {
    const long iterations = 2000000;  // about 7 ms at 16 flops per cycle, 3.6 GHz
    const int threads = omp_get_max_threads();
    double best = 1e30, sink = 0.0;
    for (int repeat = 0; repeat < REPEATS; ++repeat) {
        const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
        sink += run_chains(iterations, 0.999999, 1e-7);
        const std::chrono::duration<double> elapsed =
            std::chrono::steady_clock::now() - start;
        if (elapsed.count() < best) best = elapsed.count();
    }
    const double flops = 2.0 * 8 * CHAINS * double(iterations) * threads;
    std::printf("%d threads: %.1f GFLOP/s float64 FMA (best of %d runs of %.4f s, check %g)\n",
                threads, flops / best / 1e9, REPEATS, best, sink);
    return 0;
}
