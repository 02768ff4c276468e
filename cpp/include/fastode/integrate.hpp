// Drivers that advance one block of W trajectories from t0 to t1.
//
// The CPU core calls them with W = 32 (float64) or 64 (float32) lanes per
// block, one block per OpenMP task. The GPU calls them with W = 1, one
// trajectory per thread. Lanes never exchange data, so a trajectory's result
// does not depend on which block, thread or batch it ran in.
#pragma once

#include "controller.hpp"
#include "lanes.hpp"
#include "symplectic.hpp"
#include "tableaus.hpp"

namespace fastode {

/// Settings shared by every trajectory of one call.
template <class T>
struct Problem {
    T t0 = 0, t1 = 0;
    T dt = 0;  // fixed step size, or the first adaptive step (0 picks it)
    T rtol = 0, atol = 0;
    index_t max_steps = 0;
    int controller = CONTROLLER_I;
    const T* t_eval = nullptr;  // sorted in the direction of integration
    index_t n_eval = 0;         // 0 stores the final state only
    const T* y0 = nullptr;      // (N, dim)

    FASTODE_HD T direction() const { return t1 >= t0 ? T(1) : T(-1); }
    FASTODE_HD index_t n_out() const { return n_eval > 0 ? n_eval : 1; }
};

/// Output arrays, one row per trajectory.
template <class T>
struct Results {
    T* y = nullptr;                 // (N, n_out, dim)
    T* t_final = nullptr;           // (N,) time reached
    signed char* status = nullptr;  // (N,) a `Status`
    index_t* n_steps = nullptr;     // (N,) attempted steps
    index_t* n_accepted = nullptr;
    index_t* n_rejected = nullptr;
    index_t* n_rhs = nullptr;  // evaluations of f, or of grad V for symplectic methods
};

/// Bookkeeping of the W lanes of one block.
template <class T, int W>
struct LaneState {
    int status[W];
    int active[W];  // an int, not bool, so lane loops that read it vectorize
    T t[W];
    index_t n_steps[W], n_accepted[W], n_rejected[W], n_rhs[W];
    index_t n_written[W];  // outputs stored so far

    FASTODE_HD bool any_active() const {
        bool any = false;
        for (int l = 0; l < W; ++l) any = any || active[l];
        return any;
    }

    FASTODE_HD void count_rhs(index_t evals) {
        for (int l = 0; l < W; ++l) n_rhs[l] += active[l] ? evals : 0;
    }

    FASTODE_HD void fail(int l, int why) {
        status[l] = why;
        active[l] = false;
    }

    /// Puts lane l at t0 with SUCCESS, no steps taken and no outputs stored.
    FASTODE_HD void start(int l, T t0) {
        status[l] = SUCCESS;
        active[l] = true;
        t[l] = t0;
        n_steps[l] = n_accepted[l] = n_rejected[l] = n_rhs[l] = 0;
        n_written[l] = 0;
    }

    /// Copies lane l's status, final time and counters to trajectory n.
    FASTODE_HD void store(int l, const Results<T>& res, index_t n) const {
        res.status[n] = static_cast<signed char>(status[l]);
        res.t_final[n] = t[l];
        res.n_steps[n] = n_steps[l];
        res.n_accepted[n] = n_accepted[l];
        res.n_rejected[n] = n_rejected[l];
        res.n_rhs[n] = n_rhs[l];
    }
};

template <class T, int D, int W>
FASTODE_HD FASTODE_INLINE bool lane_is_finite(const LaneVec<T, D, W>& y, int l) {
    bool finite = true;
    for (int i = 0; i < D; ++i) finite = finite && math::isfinite(y(i, l));
    return finite;
}

template <class T, int D, int W>
FASTODE_HD FASTODE_INLINE void copy_lane(LaneVec<T, D, W>& to, const LaneVec<T, D, W>& from,
                                         int l) {
    for (int i = 0; i < D; ++i) to(i, l) = from(i, l);
}

/// Loads y0 into the lanes and resets their bookkeeping. A trajectory whose
/// initial state is not finite fails at once with NON_FINITE.
template <class T, int D, int W>
FASTODE_HD void start_block(const Problem<T>& prob, index_t first, int count,
                            LaneVec<T, D, W>& y, LaneState<T, W>& st) {
    for (int l = 0; l < W; ++l) {
        const index_t n = lane_source(first, count, l);
        for (int i = 0; i < D; ++i) y(i, l) = prob.y0[n * D + i];
        st.start(l, prob.t0);
        if (!lane_is_finite(y, l)) st.fail(l, NON_FINITE);
    }
}

template <class T, int D>
FASTODE_HD FASTODE_INLINE T* output_row(const Problem<T>& prob, const Results<T>& res,
                                        index_t n, index_t j) {
    return res.y + (n * prob.n_out() + j) * D;
}

/// Stores y0 at every requested time equal to t0.
template <class T, int D, int W>
FASTODE_HD void write_initial_outputs(const Problem<T>& prob, const Results<T>& res,
                                      index_t first, int count,
                                      const LaneVec<T, D, W>& y, LaneState<T, W>& st) {
    for (int l = 0; l < count; ++l) {
        index_t& j = st.n_written[l];
        while (j < prob.n_eval && prob.t_eval[j] == prob.t0) {
            T* out = output_row<T, D>(prob, res, first + l, j);
            for (int i = 0; i < D; ++i) out[i] = y(i, l);
            ++j;
        }
    }
}

/// True when output time t_out lies at or before t in the direction of travel.
template <class T>
FASTODE_HD FASTODE_INLINE bool reached(T t_out, T t, T direction) {
    return direction * (t_out - t) <= T(0);
}

/// Stores lane l's state at every pending output time up to tb: yb itself at
/// tb, and interpolate(theta, out) at ta + theta (tb - ta) before it.
template <class T, int D, int W, class Interpolate>
FASTODE_HD void write_step_outputs(const Problem<T>& prob, const Results<T>& res, index_t n,
                                   int l, T ta, T tb, const LaneVec<T, D, W>& yb,
                                   index_t& j, const Interpolate& interpolate) {
    const T direction = prob.direction();
    while (j < prob.n_eval && reached(prob.t_eval[j], tb, direction)) {
        T* out = output_row<T, D>(prob, res, n, j);
        if (prob.t_eval[j] == tb) {
            for (int i = 0; i < D; ++i) out[i] = yb(i, l);
        } else {
            interpolate((prob.t_eval[j] - ta) / (tb - ta), out);
        }
        ++j;
    }
}

/// Weights of the cubic Hermite interpolant at s in [0, 1] of a step of size
/// h: y(s) = ya y(ta) + fa f(ta) + yb y(tb) + fb f(tb).
template <class T>
struct HermiteWeights {
    T ya, fa, yb, fb;

    FASTODE_HD FASTODE_INLINE HermiteWeights(T s, T h) {
        const T s1 = T(1) - s;
        ya = (T(1) + T(2) * s) * s1 * s1;
        fa = s * s1 * s1 * h;
        yb = s * s * (T(3) - T(2) * s);
        fb = -s * s * s1 * h;
    }
};

/// Stores the cubic Hermite interpolant on [ta, tb] of lane l at every pending
/// output time up to tb: exact at both ends, with local error O(dt^4). Used by
/// the fixed-step methods and bs3, whose natural interpolant it is.
template <class T, int D, int W>
FASTODE_HD void write_outputs(const Problem<T>& prob, const Results<T>& res, index_t n,
                              int l, T ta, T tb, const LaneVec<T, D, W>& ya,
                              const LaneVec<T, D, W>& fa, const LaneVec<T, D, W>& yb,
                              const LaneVec<T, D, W>& fb, index_t& j) {
    const T h = tb - ta;
    write_step_outputs(prob, res, n, l, ta, tb, yb, j, [&](T s, T* out) {
        const HermiteWeights<T> w(s, h);
        for (int i = 0; i < D; ++i) {
            out[i] = w.ya * ya(i, l) + w.fa * fa(i, l) + w.yb * yb(i, l) + w.fb * fb(i, l);
        }
    });
}

/// Copies the lanes' outcome into the results. Output times a failed
/// trajectory never reached are NaN.
template <class T, int D, int W>
FASTODE_HD void finish_block(const Problem<T>& prob, const Results<T>& res, index_t first,
                             int count, const LaneVec<T, D, W>& y,
                             const LaneState<T, W>& st) {
    for (int l = 0; l < count; ++l) {
        const index_t n = first + l;
        st.store(l, res, n);
        if (prob.n_eval == 0) {
            T* out = output_row<T, D>(prob, res, n, 0);
            for (int i = 0; i < D; ++i) out[i] = y(i, l);
            continue;
        }
        for (index_t j = st.n_written[l]; j < prob.n_eval; ++j) {
            T* out = output_row<T, D>(prob, res, n, j);
            for (int i = 0; i < D; ++i) out[i] = math::quiet_nan<T>();
        }
    }
}

// --- evaluating f ------------------------------------------------------------

/// Whether `Lanes` evaluates f one lane at a time, `rhs(l, t, y, dy)`, rather
/// than for the whole block at once, `rhs(t, Y, dY)` (as the MLP field does).
template <class L>
FASTODE_HD constexpr auto per_lane_probe(int) -> decltype(L::per_lane, bool()) {
    return L::per_lane;
}
template <class L>
FASTODE_HD constexpr bool per_lane_probe(long) {
    return false;
}
template <class L>
constexpr bool is_per_lane = per_lane_probe<L>(0);

/// f of lane l as a callable, for the one-trajectory kernels below.
template <class Lanes>
struct LaneRhs {
    const Lanes& lanes;
    int l;

    template <class T>
    FASTODE_HD FASTODE_INLINE void operator()(T t, const T* y, T* dy) const {
        lanes.rhs(l, t, y, dy);
    }
};

template <class T, int D, int W>
FASTODE_HD FASTODE_INLINE void load_lane(const LaneVec<T, D, W>& from, int l, T* to) {
    FASTODE_UNROLL
    for (int i = 0; i < D; ++i) to[i] = from(i, l);
}

template <class T, int D, int W>
FASTODE_HD FASTODE_INLINE void store_lane(const T* from, int l, LaneVec<T, D, W>& to) {
    FASTODE_UNROLL
    for (int i = 0; i < D; ++i) to(i, l) = from[i];
}

/// dy = f(t, y) for every lane of the block, each at its own time t[l].
template <class Lanes, class T, int D, int W>
FASTODE_HD FASTODE_INLINE void block_rhs(const Lanes& lanes, const T* t,
                                         const LaneVec<T, D, W>& y, LaneVec<T, D, W>& dy) {
    if constexpr (is_per_lane<Lanes>) {
        for (int l = 0; l < W; ++l) {
            T yl[D], dyl[D];
            load_lane(y, l, yl);
            lanes.rhs(l, t[l], yl, dyl);
            store_lane(dyl, l, dy);
        }
    } else {
        lanes.rhs(t, y, dy);
    }
}

// --- one explicit Runge-Kutta step ------------------------------------------------
//
// Per-lane systems run the whole step of one trajectory in scalars inside a
// plain loop over lanes. With every inner loop unrolled, the state and the
// stages become scalars and GCC vectorizes the lane loop, which keeps them in
// registers. (`omp simd` on that loop would turn them into arrays in memory.)

/// Evaluates stages 1 .. S-1 of one trajectory, given k[0] = f(t, y), and
/// y1 = y + dt sum_j b_j k_j. Zero coefficients drop out after unrolling.
template <class Tab, class F, class T, int D>
FASTODE_HD FASTODE_INLINE void rk_step_lane(const F& f, T t, T dt, const T* y,
                                            T (&k)[Tab::stages][D], T* y1) {
    FASTODE_UNROLL
    for (int s = 1; s < Tab::stages; ++s) {
        // y_s = y + dt sum_{j<s} a_sj k_j
        T ys[D];
        FASTODE_UNROLL
        for (int i = 0; i < D; ++i) {
            T acc = T(0);
            FASTODE_UNROLL
            for (int j = 0; j < s; ++j) {
                if (Tab::a(s, j) != 0.0) acc += T(Tab::a(s, j)) * k[j][i];
            }
            ys[i] = y[i] + dt * acc;
        }
        f(t + T(Tab::c(s)) * dt, ys, k[s]);
    }

    FASTODE_UNROLL
    for (int i = 0; i < D; ++i) {
        T acc = T(0);
        FASTODE_UNROLL
        for (int j = 0; j < Tab::stages; ++j) {
            if (Tab::b(j) != 0.0) acc += T(Tab::b(j)) * k[j][i];
        }
        y1[i] = y[i] + dt * acc;
    }
}

/// RMS over components of err_i / (atol + rtol max(|y_i|, |y1_i|)), where
/// err = dt sum_j b_err_j k_j is the embedded error estimate; NaN when y1 is
/// not finite.
template <class Tab, class T, int D>
FASTODE_HD FASTODE_INLINE T error_norm_lane(const Problem<T>& prob, T dt, const T* y,
                                            const T (&k)[Tab::stages][D], const T* y1) {
    T sum = T(0);
    FASTODE_UNROLL
    for (int i = 0; i < D; ++i) {
        T err = T(0);
        FASTODE_UNROLL
        for (int j = 0; j < Tab::stages; ++j) {
            if (Tab::b_err(j) != 0.0) err += T(Tab::b_err(j)) * k[j][i];
        }
        const T scale = prob.atol + prob.rtol * math::max(math::fabs(y[i]), math::fabs(y1[i]));
        const T ratio = dt * err / scale;
        // y1 - y1 is NaN when y1 is not finite, so such a step is never accepted.
        sum += ratio * ratio + (y1[i] - y1[i]);
    }
    return math::sqrt(sum / T(D));
}

/// The same step for systems that evaluate f for the whole block: stage by
/// stage over all lanes, given k[0].
template <class Tab, class Lanes, class T, int D, int W>
FASTODE_HD void rk_step_block(const Lanes& lanes, const T* t, const T* dt,
                              const LaneVec<T, D, W>& y, LaneVec<T, D, W>* k,
                              LaneVec<T, D, W>& y1) {
    T ts[W];
    for (int s = 1; s < Tab::stages; ++s) {
        for (int i = 0; i < D; ++i) {
            for (int l = 0; l < W; ++l) {
                T acc = T(0);
                for (int j = 0; j < s; ++j) acc += T(Tab::a(s, j)) * k[j](i, l);
                y1(i, l) = y(i, l) + dt[l] * acc;
            }
        }
        for (int l = 0; l < W; ++l) ts[l] = t[l] + T(Tab::c(s)) * dt[l];
        lanes.rhs(ts, y1, k[s]);
    }

    for (int i = 0; i < D; ++i) {
        for (int l = 0; l < W; ++l) {
            T acc = T(0);
            for (int j = 0; j < Tab::stages; ++j) acc += T(Tab::b(j)) * k[j](i, l);
            y1(i, l) = y(i, l) + dt[l] * acc;
        }
    }
}

/// One step of an embedded pair for every lane of the block. Given k0 = f(t, y),
/// returns y1, k_last = f(t + dt, y1) (the pair is FSAL) and the error norm,
/// and, when `StoreStages`, every stage in `k_all` for the dense output. (A
/// run-time flag would be a branch in the lane loop, which stops GCC from
/// vectorizing it.)
template <class Tab, bool StoreStages, class Lanes, class T, int D, int W>
FASTODE_HD FASTODE_INLINE void embedded_step(const Lanes& lanes, const Problem<T>& prob,
                                             const T* t, const T* dt,
                                             const LaneVec<T, D, W>& y,
                                             const LaneVec<T, D, W>& k0,
                                             LaneVec<T, D, W>& y1,
                                             LaneVec<T, D, W>& k_last, T* norm,
                                             LaneVec<T, D, W>* k_all) {
    constexpr int S = Tab::stages;
    if constexpr (is_per_lane<Lanes>) {
        for (int l = 0; l < W; ++l) {
            T yl[D], y1l[D], k[S][D];
            load_lane(y, l, yl);
            load_lane(k0, l, k[0]);
            rk_step_lane<Tab>(LaneRhs<Lanes>{lanes, l}, t[l], dt[l], yl, k, y1l);
            norm[l] = error_norm_lane<Tab>(prob, dt[l], yl, k, y1l);
            store_lane(y1l, l, y1);
            store_lane(k[S - 1], l, k_last);
            if constexpr (StoreStages) {
                FASTODE_UNROLL
                for (int s = 0; s < S; ++s) store_lane(k[s], l, k_all[s]);
            }
        }
    } else {
        LaneVec<T, D, W> k[S];
        k[0] = k0;
        rk_step_block<Tab>(lanes, t, dt, y, k, y1);
        for (int l = 0; l < W; ++l) {
            T yl[D], y1l[D], kl[S][D];
            load_lane(y, l, yl);
            load_lane(y1, l, y1l);
            for (int s = 0; s < S; ++s) load_lane(k[s], l, kl[s]);
            norm[l] = error_norm_lane<Tab>(prob, dt[l], yl, kl, y1l);
        }
        k_last = k[S - 1];
        if constexpr (StoreStages) {
            for (int s = 0; s < S; ++s) k_all[s] = k[s];
        }
    }
}

/// Stores the method's own interpolant on [ta, tb] of lane l at every pending
/// output time up to tb: y(ta + theta dt) = y + dt sum_j b_j(theta) k_j.
template <class Tab, class T, int D, int W>
FASTODE_HD void write_dense_outputs(const Problem<T>& prob, const Results<T>& res,
                                    index_t n, int l, T ta, T tb,
                                    const LaneVec<T, D, W>& ya, const LaneVec<T, D, W>* k,
                                    const LaneVec<T, D, W>& yb, index_t& j) {
    const T h = tb - ta;
    write_step_outputs(prob, res, n, l, ta, tb, yb, j, [&](T theta, T* out) {
        T weight[Tab::stages];
        for (int s = 0; s < Tab::stages; ++s) weight[s] = dense_weight(Tab{}, s, theta);
        for (int i = 0; i < D; ++i) {
            T acc = T(0);
            for (int s = 0; s < Tab::stages; ++s) acc += weight[s] * k[s](i, l);
            out[i] = ya(i, l) + h * acc;
        }
    });
}

// --- fixed step -------------------------------------------------------------------

/// Number of steps of size |dt| that cover the span; the last one is shortened
/// to end exactly at t1. A ratio within a few ulps of an integer is rounded to
/// it, so 1 / 0.01 gives 100 steps and no sliver of a 101st.
template <class T>
FASTODE_HD index_t fixed_step_count(const Problem<T>& prob) {
    const double span = math::fabs(double(prob.t1) - double(prob.t0));
    if (span == 0.0) return 0;
    const double ratio = span / math::fabs(double(prob.dt));
    // More steps than a 64-bit counter holds: max_steps (at most 2^62) ends
    // the run first.
    if (!(ratio < 4.0e18)) return index_t(4000000000000000000LL);
    const double eps = sizeof(T) == 4 ? 1e-6 : 1e-12;
    index_t n = index_t(ratio);
    if (double(n) < ratio * (1.0 - eps)) ++n;
    return n > 0 ? n : 1;
}

template <class T>
FASTODE_HD FASTODE_INLINE T fixed_step_time(const Problem<T>& prob, index_t k, index_t n) {
    if (k >= n) return prob.t1;
    return prob.t0 + prob.direction() * T(k) * math::fabs(prob.dt);
}

/// One fixed step of an explicit Runge-Kutta method for every lane.
template <class Tab>
struct RKStep {
    static constexpr int evals = Tab::stages;

    template <class Lanes, class T, int D, int W>
    FASTODE_HD FASTODE_INLINE static void advance(const Lanes& lanes, T t, T dt,
                                                  const LaneVec<T, D, W>& y,
                                                  LaneVec<T, D, W>& y1) {
        if constexpr (is_per_lane<Lanes>) {
            for (int l = 0; l < W; ++l) {
                T yl[D], y1l[D], k[Tab::stages][D];
                load_lane(y, l, yl);
                const LaneRhs<Lanes> f{lanes, l};
                f(t, yl, k[0]);
                rk_step_lane<Tab>(f, t, dt, yl, k, y1l);
                store_lane(y1l, l, y1);
            }
        } else {
            T ts[W], dts[W];
            for (int l = 0; l < W; ++l) {
                ts[l] = t;
                dts[l] = dt;
            }
            LaneVec<T, D, W> k[Tab::stages];
            lanes.rhs(ts, y, k[0]);
            rk_step_block<Tab>(lanes, ts, dts, y, k, y1);
        }
    }
};

/// One fixed step of a symplectic method for a separable Hamiltonian.
template <class Method>
struct SymplecticStep {
    static constexpr int evals = Method::evals;

    template <class Lanes, class T, int D, int W>
    FASTODE_HD FASTODE_INLINE static void advance(const Lanes& lanes, T, T dt,
                                                  const LaneVec<T, D, W>& y,
                                                  LaneVec<T, D, W>& y1) {
        for (int l = 0; l < W; ++l) {
            T yl[D];
            load_lane(y, l, yl);
            symplectic_step<Method>(lanes, l, yl, dt);
            store_lane(yl, l, y1);
        }
    }
};

/// Stores the outputs of a fixed step [ta, tb] for every active lane; returns
/// the evaluations of f spent on the derivatives at both ends.
template <class Lanes, class T, int D, int W>
FASTODE_HD int write_fixed_outputs(const Lanes& lanes, const Problem<T>& prob,
                                   const Results<T>& res, index_t first, int count, T ta,
                                   T tb, const LaneVec<T, D, W>& y,
                                   const LaneVec<T, D, W>& y1, LaneState<T, W>& st) {
    LaneVec<T, D, W> fa, fb;
    T t[W];
    for (int l = 0; l < W; ++l) t[l] = ta;
    block_rhs(lanes, t, y, fa);
    for (int l = 0; l < W; ++l) t[l] = tb;
    block_rhs(lanes, t, y1, fb);
    for (int l = 0; l < count; ++l) {
        if (st.active[l]) {
            write_outputs(prob, res, first + l, l, ta, tb, y, fa, y1, fb, st.n_written[l]);
        }
    }
    return 2;
}

/// Fixed-step runs look for non-finite states once per this many steps, and
/// replay the steps since the last check to find the one that failed.
constexpr index_t FINITE_CHECK_INTERVAL = 8;

/// True when every component of every active lane is finite: x - x is 0 for
/// finite x and NaN for NaN and infinity, and a sum with a NaN term is NaN.
template <class T, int D, int W>
FASTODE_HD FASTODE_INLINE bool active_lanes_finite(const LaneVec<T, D, W>& y,
                                                   const LaneState<T, W>& st) {
    T probe = T(0);
    FASTODE_SIMD_SUM(probe)
    for (int e = 0; e < D * W; ++e) probe += st.active[e % W] ? y.v[e] - y.v[e] : T(0);
    return probe == T(0);
}

/// Stops lane l of a fixed-step run that became non-finite in step `step`
/// (counted from 0), which started at time ta: the lane reports ta, `evals`
/// evaluations of f, and keeps only the `out_before` outputs written before
/// that step.
template <class T, int W>
FASTODE_HD FASTODE_INLINE void stop_before_step(LaneState<T, W>& st, int l, index_t step,
                                                index_t evals, T ta, index_t out_before) {
    st.fail(l, NON_FINITE);
    st.n_steps[l] = step + 1;
    st.n_accepted[l] = step;
    st.n_rhs[l] = evals;
    st.t[l] = ta;
    st.n_written[l] = math::min(st.n_written[l], out_before);
}

/// A block's state at the last passed finiteness check, and the counters
/// there, from which the steps after it can be replayed.
template <class T, int D, int W>
struct FixedCheckpoint {
    LaneVec<T, D, W> y;
    index_t steps = 0, evals = 0, next_out = 0;
};

/// Replays the steps after checkpoint `cp`, up to `steps`, to find where each
/// active lane that is no longer finite failed. Such a lane stops at the last
/// finite state (stored in `y_stop`) and the time of it, like an adaptive run;
/// outputs written after that time are dropped, so they end up NaN. The
/// replay repeats the same arithmetic, so it finds the same values.
template <class Stepper, class Lanes, class T, int D, int W>
FASTODE_HD void locate_failures(const Lanes& lanes, const Problem<T>& prob, index_t n,
                                const FixedCheckpoint<T, D, W>& cp, index_t steps,
                                LaneState<T, W>& st, LaneVec<T, D, W>& y_stop) {
    const T direction = prob.direction();
    LaneVec<T, D, W> y = cp.y, y1;
    index_t evals = cp.evals, next_out = cp.next_out;
    for (index_t k = cp.steps; k < steps; ++k) {
        const T ta = fixed_step_time(prob, k, n);
        const T tb = fixed_step_time(prob, k + 1, n);
        Stepper::advance(lanes, ta, tb - ta, y, y1);
        evals += Stepper::evals;
        const index_t out_before = next_out;
        if (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
            evals += 2;  // the derivatives write_fixed_outputs evaluates
            while (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
                ++next_out;
            }
        }

        for (int l = 0; l < W; ++l) {
            if (!st.active[l] || lane_is_finite(y1, l)) continue;
            stop_before_step(st, l, k, evals, ta, out_before);
            copy_lane(y_stop, y, l);
        }
        y = y1;
    }
}

/// Advances a block with a fixed step: every lane shares the time grid
/// t0 + k dt, so the lanes stay in lock step and share their step counters.
template <class Stepper, class Sys, class T, int W>
FASTODE_HD void fixed_block(const Sys& sys, const Problem<T>& prob, const Results<T>& res,
                            index_t first, int count) {
    constexpr int D = Sys::dim;
    typename Sys::template Lanes<W> lanes;
    lanes.load(sys, first, count);

    LaneVec<T, D, W> y, y1;
    LaneState<T, W> st;
    start_block(prob, first, count, y, st);
    write_initial_outputs(prob, res, first, count, y, st);
    // Lanes that fail keep their last finite state here (y0 for those that
    // start non-finite, which never become active).
    LaneVec<T, D, W> y_stop = y;

    const index_t n = fixed_step_count(prob);
    const T direction = prob.direction();
    // Every lane shares the grid, so one index tracks the next output time.
    index_t next_out = st.n_written[0];
    index_t steps = 0, evals = 0;
    FixedCheckpoint<T, D, W> checkpoint{y, 0, 0, next_out};
    bool any_active = st.any_active();
    for (; steps < n && steps < prob.max_steps && any_active; ++steps) {
        const T ta = fixed_step_time(prob, steps, n);
        const T tb = fixed_step_time(prob, steps + 1, n);
        Stepper::advance(lanes, ta, tb - ta, y, y1);
        evals += Stepper::evals;

        if (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
            evals += write_fixed_outputs(lanes, prob, res, first, count, ta, tb, y, y1, st);
            while (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
                ++next_out;
            }
        }

        y = y1;
        // NaN and infinity persist through later steps, so checking every few
        // steps finds every failure at a fraction of the cost of each step.
        const bool check = (steps + 1) % FINITE_CHECK_INTERVAL == 0 || steps + 1 == n ||
                           steps + 1 == prob.max_steps;
        if (!check) continue;
        if (!active_lanes_finite(y, st)) {
            locate_failures<Stepper>(lanes, prob, n, checkpoint, steps + 1, st, y_stop);
            any_active = st.any_active();
        }
        checkpoint = {y, steps + 1, evals, next_out};
    }

    const bool finished = steps == n;
    for (int l = 0; l < W; ++l) {
        if (!st.active[l]) {
            copy_lane(y, y_stop, l);
            continue;
        }
        st.n_steps[l] = st.n_accepted[l] = steps;
        st.n_rhs[l] = evals;
        st.t[l] = fixed_step_time(prob, steps, n);
        if (!finished) st.fail(l, MAX_STEPS);
    }
    finish_block(prob, res, first, count, y, st);
}

// --- adaptive step -------------------------------------------------------------

/// Initial step size of each lane, after Hairer, Norsett and Wanner, Solving
/// Ordinary Differential Equations I (1993), Sec. II.4. Never exceeds the span,
/// so the probing evaluation of f stays inside it. Uses one evaluation of f.
template <class Tab, class Lanes, class T, int D, int W>
FASTODE_HD void initial_step(const Lanes& lanes, const Problem<T>& prob,
                             const LaneVec<T, D, W>& y, const LaneVec<T, D, W>& f0,
                             LaneVec<T, D, W>& work_y, LaneVec<T, D, W>& work_f, T* dt) {
    const T direction = prob.direction();
    const T span = math::fabs(prob.t1 - prob.t0);
    T d0[W], d1[W], h0[W], t[W];
    for (int l = 0; l < W; ++l) {
        T s0 = 0, s1 = 0;
        for (int i = 0; i < D; ++i) {
            const T scale = prob.atol + prob.rtol * math::fabs(y(i, l));
            s0 += (y(i, l) / scale) * (y(i, l) / scale);
            s1 += (f0(i, l) / scale) * (f0(i, l) / scale);
        }
        d0[l] = math::sqrt(s0 / T(D));
        d1[l] = math::sqrt(s1 / T(D));
        // Guard the ratio against a zero state or a zero derivative.
        h0[l] = (d0[l] < T(1e-5) || d1[l] < T(1e-5)) ? T(1e-6) : T(0.01) * d0[l] / d1[l];
        h0[l] = math::min(h0[l], span);
        t[l] = prob.t0 + direction * h0[l];
        for (int i = 0; i < D; ++i) work_y(i, l) = y(i, l) + direction * h0[l] * f0(i, l);
    }
    block_rhs(lanes, t, work_y, work_f);

    const T exponent = T(1) / T(Tab::error_order + 1);
    for (int l = 0; l < W; ++l) {
        T s2 = 0;
        for (int i = 0; i < D; ++i) {
            const T scale = prob.atol + prob.rtol * math::fabs(y(i, l));
            const T diff = (work_f(i, l) - f0(i, l)) / scale;
            s2 += diff * diff;
        }
        const T d2 = math::sqrt(s2 / T(D)) / h0[l];
        const T d12 = math::max(d1[l], d2);
        const T h1 = d12 <= T(1e-15) ? math::max(T(1e-6), h0[l] * T(1e-3))
                                      : math::pow(T(0.01) / d12, exponent);
        T h = math::min(T(100) * h0[l], h1);
        h = math::min(h, span);
        // math::min returns its second argument when the first is NaN, so a
        // guess spoiled by a non-finite probe becomes the span, and the
        // controller shrinks that step like any other.
        dt[l] = direction * h;
    }
}

/// Time of lane l's next output, or a time beyond t1 when none is left, so
/// that testing whether a step reached it needs no branch.
template <class T>
FASTODE_HD FASTODE_INLINE T next_output_time(const Problem<T>& prob, index_t j) {
    if (j < prob.n_eval) return prob.t_eval[j];
    return prob.t1 + prob.direction() * (T(1) + math::fabs(prob.t1 - prob.t0));
}

/// Resets the step-size controller's memory of every lane and looks up its
/// next output time, before the first step.
template <class T, int W>
FASTODE_HD FASTODE_INLINE void start_controller(const Problem<T>& prob,
                                                const LaneState<T, W>& st, T* err_prev,
                                                int* rejected_last, T* t_out) {
    for (int l = 0; l < W; ++l) {
        err_prev[l] = T(ERR_PREV_MIN);
        rejected_last[l] = false;
        t_out[l] = next_output_time(prob, st.n_written[l]);
    }
}

/// Sets dt_try to dt, shortened where needed so that no stage of the step is
/// evaluated past t1.
template <class T, int W>
FASTODE_HD FASTODE_INLINE void clip_to_end(const Problem<T>& prob, const LaneState<T, W>& st,
                                           T direction, const T* dt, T* dt_try) {
    for (int l = 0; l < W; ++l) {
        const bool past = direction * (st.t[l] + dt[l] - prob.t1) >= T(0);
        dt_try[l] = past ? prob.t1 - st.t[l] : dt[l];
    }
}

/// Outcome of one attempted step of every lane, decided without branches.
template <class T, int W>
struct StepDecision {
    // int, not bool: GCC 12 does not vectorize loops mixing bool and double.
    int accepted[W];
    int rejected[W];
    int event[W];  // needs the scalar pass: output, end of span or failure
    int finished[W];
    T t_new[W];
    T dt_next[W];
};

/// Accepts or rejects the step of every lane and picks the next step size.
/// The common case stays in one vectorized loop. Lanes with an output due, at
/// the end of the span or failing are flagged for a scalar pass.
template <class Tab, class T, int W>
FASTODE_HD FASTODE_INLINE bool decide_steps(const Problem<T>& prob, const LaneState<T, W>& st,
                                            const T* dt, const T* dt_try, const T* norm,
                                            const T* err_prev, const int* rejected_last,
                                            const T* t_out, StepDecision<T, W>& d) {
    const T direction = prob.direction();
    // Bitwise & and | instead of && and ||: short-circuit operators are
    // branches, and a branch keeps GCC from vectorizing the loop.
    int any_event = 0;
    for (int l = 0; l < W; ++l) {
        const bool active = st.active[l];
        const bool ok = norm[l] <= T(1);  // false for NaN, which a non-finite y1 gives
        const bool at_end = direction * (st.t[l] + dt[l] - prob.t1) >= T(0);
        const T t_new = at_end ? prob.t1 : st.t[l] + dt_try[l];

        T factor = step_factor(norm[l], Tab::error_order, prob.controller, err_prev[l],
                               rejected_last[l] != 0);
        factor = ok ? factor : math::min(factor, T(1));
        const T t_after = ok ? t_new : st.t[l];
        const T dt_next = dt_try[l] * factor;

        const bool finished = active & ok & at_end;
        const bool too_small = !(math::fabs(dt_next) >= min_step(t_after));
        const bool out_of_steps = st.n_steps[l] + 1 >= prob.max_steps;
        const bool output_due = direction * (t_out[l] - t_new) <= T(0);
        const bool event = active & (finished | (ok & output_due) | too_small | out_of_steps);

        d.accepted[l] = active & ok;
        d.rejected[l] = active & !ok;
        d.finished[l] = finished;
        d.event[l] = event;
        d.t_new[l] = t_new;
        d.dt_next[l] = dt_next;
        any_event |= int(event);
    }
    return any_event != 0;
}

/// Applies the decisions of `decide_steps` to the lanes' counters, times,
/// step sizes and controller memory, and ends the lanes that finished or
/// failed. The states themselves are updated by the caller.
template <class T, int W>
FASTODE_HD FASTODE_INLINE void record_decisions(const Problem<T>& prob,
                                                const StepDecision<T, W>& d, const T* norm,
                                                bool any_event, LaneState<T, W>& st, T* dt,
                                                T* err_prev, int* rejected_last) {
    for (int l = 0; l < W; ++l) {
        const bool active = st.active[l];
        st.n_steps[l] += active ? 1 : 0;
        st.n_accepted[l] += d.accepted[l] ? 1 : 0;
        st.n_rejected[l] += d.rejected[l] ? 1 : 0;
        st.t[l] = d.accepted[l] ? d.t_new[l] : st.t[l];
        dt[l] = active && !d.finished[l] ? d.dt_next[l] : dt[l];
        err_prev[l] = d.accepted[l] ? math::max(norm[l], T(ERR_PREV_MIN)) : err_prev[l];
        rejected_last[l] = active ? d.rejected[l] : rejected_last[l];
    }

    for (int l = 0; any_event && l < W; ++l) {
        if (!d.event[l]) continue;
        if (d.finished[l]) {
            st.active[l] = false;
        } else if (!(math::fabs(dt[l]) >= min_step(st.t[l]))) {
            st.fail(l, norm[l] == norm[l] ? STEP_TOO_SMALL : NON_FINITE);
        } else if (st.n_steps[l] >= prob.max_steps) {
            st.fail(l, MAX_STEPS);
        }
    }
}

/// Advances a block with an embedded pair: each lane has its own t and dt and
/// leaves the loop when it reaches t1 or fails.
template <class Tab, class Sys, class T, int W>
FASTODE_HD void adaptive_block(const Sys& sys, const Problem<T>& prob,
                               const Results<T>& res, index_t first, int count) {
    static_assert(is_fsal<Tab>(), "dense output reuses the last stage as f(t1, y1)");
    constexpr int D = Sys::dim;
    constexpr int S = Tab::stages;
    using Vec = LaneVec<T, D, W>;
    typename Sys::template Lanes<W> lanes;
    lanes.load(sys, first, count);

    Vec y, y1, k0, k_last;
    // Every stage of the last step, for the method's own dense output.
    Vec k_all[Tab::dense ? S : 1];
    const bool store_stages = Tab::dense && prob.n_eval > 0;
    LaneState<T, W> st;
    start_block(prob, first, count, y, st);
    write_initial_outputs(prob, res, first, count, y, st);
    const T direction = prob.direction();
    for (int l = 0; l < W; ++l) st.active[l] = st.active[l] && prob.t1 != prob.t0;
    if (!st.any_active()) {
        finish_block(prob, res, first, count, y, st);
        return;
    }

    // A derivative that is not finite at t0 cannot improve by shrinking the
    // step, so such a lane fails before its first step.
    block_rhs(lanes, st.t, y, k0);
    st.count_rhs(1);
    for (int l = 0; l < W; ++l) {
        if (st.active[l] && !lane_is_finite(k0, l)) st.fail(l, NON_FINITE);
    }

    T dt[W], dt_try[W], norm[W], err_prev[W], t_out[W];
    int rejected_last[W];
    if (prob.dt > T(0)) {
        const T span = math::fabs(prob.t1 - prob.t0);
        for (int l = 0; l < W; ++l) dt[l] = direction * math::min(prob.dt, span);
    } else {
        initial_step<Tab>(lanes, prob, y, k0, y1, k_last, dt);
        st.count_rhs(1);
    }
    start_controller(prob, st, err_prev, rejected_last, t_out);

    StepDecision<T, W> d;
    while (st.any_active()) {
        clip_to_end(prob, st, direction, dt, dt_try);
        if (store_stages) {
            embedded_step<Tab, true>(lanes, prob, st.t, dt_try, y, k0, y1, k_last, norm, k_all);
        } else {
            embedded_step<Tab, false>(lanes, prob, st.t, dt_try, y, k0, y1, k_last, norm, k_all);
        }
        st.count_rhs(S - 1);
        const bool any_event = decide_steps<Tab>(prob, st, dt, dt_try, norm, err_prev,
                                                 rejected_last, t_out, d);

        // Outputs interpolate within the step, so they come before the update.
        for (int l = 0; any_event && l < count; ++l) {
            if (!d.event[l] || !d.accepted[l]) continue;
            if constexpr (Tab::dense) {
                write_dense_outputs<Tab>(prob, res, first + l, l, st.t[l], d.t_new[l], y,
                                         k_all, y1, st.n_written[l]);
            } else {
                write_outputs(prob, res, first + l, l, st.t[l], d.t_new[l], y, k0, y1,
                              k_last, st.n_written[l]);
            }
            t_out[l] = next_output_time(prob, st.n_written[l]);
        }

        // Accepted lanes take y1; rejected lanes retry with the smaller step.
        for (int i = 0; i < D; ++i) {
            for (int l = 0; l < W; ++l) {
                y(i, l) = d.accepted[l] ? y1(i, l) : y(i, l);
                k0(i, l) = d.accepted[l] ? k_last(i, l) : k0(i, l);
            }
        }
        record_decisions(prob, d, norm, any_event, st, dt, err_prev, rejected_last);
    }
    finish_block(prob, res, first, count, y, st);
}

}  // namespace fastode
