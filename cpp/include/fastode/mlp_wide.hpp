// Integrators for MLP fields whose state dimension is known only at run time.
//
// The drivers of integrate.hpp keep a block's state in LaneVec<T, D, W> with D
// fixed at compile time, and the bindings instantiate them for d <= 8 only.
// For a wider state (or layers wider than MLP_MAX_WIDTH) the same lane-major
// layout, component i of lane l at i * W + l, lives in heap buffers, and the
// drivers below repeat the logic of fixed_block and adaptive_block with a run
// time dimension. Every evaluation of f runs the network once for the W lanes
// of a block, so each weight read from cache serves W trajectories.
// CPU only: the buffers are std::vector.
#pragma once

#include <algorithm>
#include <vector>

#include "integrate.hpp"
#include "mlp.hpp"

namespace fastode {

/// The log-density column a wide MLP system adds: none (a neural ODE), the
/// per-unit trace of a one-hidden-layer network, or a sum over probe vectors.
enum WideTrace : int { WIDE_TRACE_NONE = 0, WIDE_TRACE_UNIT = 1, WIDE_TRACE_PROBES = 2 };

/// An MLP field with a run-time state dimension d: dh/dt = f(h, t), or, with
/// a trace, the CNF state (z, a) with da/dt = -tr(df/dz) as in MLPTrace.
template <class T>
struct WideMLP {
    MLPNet<T> net;
    int d = 0;
    int trace = WIDE_TRACE_NONE;
    Param<T> probes;  // (N or 1, n_probes, d)
    int n_probes = 0;
    T probe_scale = T(1);
    const T* unit_trace = nullptr;  // widths[1] values
    int max_width = 0;              // widest layer, the input included
    int hidden_total = 0;

    int dim() const { return trace == WIDE_TRACE_NONE ? d : d + 1; }

    template <int W>
    struct Lanes {
        const WideMLP* sys = nullptr;
        index_t first = 0;
        int count = 0;
        std::vector<T> x, scratch, deriv, probe;

        void load(const WideMLP& s, index_t first_lane, int n_lanes) {
            sys = &s;
            first = first_lane;
            count = n_lanes;
            x.assign(std::size_t(s.max_width) * W, T(0));
            scratch.assign(std::size_t(s.max_width) * W, T(0));
            if (s.trace != WIDE_TRACE_NONE) {
                deriv.assign(std::size_t(std::max(s.hidden_total, 1)) * W, T(0));
            }
            if (s.trace == WIDE_TRACE_PROBES) probe.assign(std::size_t(s.d) * W, T(0));
        }

        /// dy = f(t, y) for the W lanes; y and dy are lane-major, dim() rows.
        void rhs(const T* t, const T* y, T* dy) {
            const MLPNet<T>& net = sys->net;
            const int d = sys->d;
            std::copy(y, y + std::size_t(d) * W, x.data());
            if (net.time_input) {
                for (int l = 0; l < W; ++l) x[std::size_t(d) * W + l] = t[l];
            }
            T* slopes = sys->trace == WIDE_TRACE_NONE ? nullptr : deriv.data();
            net.template forward<W>(x.data(), scratch.data(), dy, slopes);
            if (sys->trace == WIDE_TRACE_NONE) return;

            T trace[W];
            if (sys->trace == WIDE_TRACE_UNIT) {
                unit_sum(trace);
            } else {
                probe_sum(trace);
            }
            for (int l = 0; l < W; ++l) dy[std::size_t(d) * W + l] = -trace[l];
        }

        void unit_sum(T* trace) const {
            const int hidden = sys->net.widths[1];
            for (int l = 0; l < W; ++l) trace[l] = T(0);
            for (int i = 0; i < hidden; ++i) {
                const T c = sys->unit_trace[i];
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) trace[l] += c * deriv[std::size_t(i) * W + l];
            }
        }

        /// probe_scale sum_p v_p^T J v_p. Each probe is gathered into lane-major
        /// rows when it is used, so a block holds one probe, not all of them.
        void probe_sum(T* trace) {
            const int d = sys->d;
            T quad[W];
            for (int l = 0; l < W; ++l) trace[l] = T(0);
            for (int p = 0; p < sys->n_probes; ++p) {
                for (int l = 0; l < W; ++l) {
                    const index_t n = lane_source(first, count, l);
                    for (int i = 0; i < d; ++i) {
                        probe[std::size_t(i) * W + l] = sys->probes.at(n, index_t(p) * d + i);
                    }
                }
                // After forward, x and scratch are free for the tangent vectors.
                sys->net.template quadratic_form<W>(probe.data(), deriv.data(), x.data(),
                                                    scratch.data(), quad, d);
                for (int l = 0; l < W; ++l) trace[l] += quad[l];
            }
            for (int l = 0; l < W; ++l) trace[l] *= sys->probe_scale;
        }
    };
};

/// `count` lane-major vectors of `dim` rows and W lanes in one buffer.
template <class T, int W>
struct WideVectors {
    int dim;
    std::vector<T> buffer;

    WideVectors(int n_rows, int count) : dim(n_rows), buffer(std::size_t(n_rows) * W * count) {}
    T* operator[](int k) { return buffer.data() + std::size_t(k) * dim * W; }
};

template <class T, int W>
bool wide_lane_is_finite(const T* y, int dim, int l) {
    bool finite = true;
    for (int i = 0; i < dim; ++i) finite = finite && math::isfinite(y[std::size_t(i) * W + l]);
    return finite;
}

/// active_lanes_finite for a run-time dimension: lanes that already failed
/// are skipped, so their NaN state does not trigger a replay at every check.
template <class T, int W>
bool wide_active_lanes_finite(const T* y, int dim, const LaneState<T, W>& st) {
    T probe = T(0);
    const std::size_t n = std::size_t(dim) * W;
    for (std::size_t e = 0; e < n; ++e) probe += st.active[e % W] ? y[e] - y[e] : T(0);
    return probe == T(0);
}

template <class T, int W>
void wide_copy_lane(T* to, const T* from, int dim, int l) {
    for (int i = 0; i < dim; ++i) to[std::size_t(i) * W + l] = from[std::size_t(i) * W + l];
}

template <class T>
T* wide_output_row(const Problem<T>& prob, const Results<T>& res, int dim, index_t n,
                   index_t j) {
    return res.y + (n * prob.n_out() + j) * dim;
}

/// Loads y0 and resets the bookkeeping, as start_block does.
template <class T, int W>
void wide_start(const Problem<T>& prob, index_t first, int count, int dim, T* y,
                LaneState<T, W>& st) {
    for (int l = 0; l < W; ++l) {
        const index_t n = lane_source(first, count, l);
        for (int i = 0; i < dim; ++i) y[std::size_t(i) * W + l] = prob.y0[n * dim + i];
        st.start(l, prob.t0);
        if (!wide_lane_is_finite<T, W>(y, dim, l)) st.fail(l, NON_FINITE);
    }
}

/// Stores lane l's state at every pending output time up to tb, as
/// write_step_outputs does.
template <class T, int W, class Interpolate>
void wide_write_step(const Problem<T>& prob, const Results<T>& res, int dim, index_t n, int l,
                     T ta, T tb, const T* yb, index_t& j, const Interpolate& interpolate) {
    const T direction = prob.direction();
    while (j < prob.n_eval && reached(prob.t_eval[j], tb, direction)) {
        T* out = wide_output_row(prob, res, dim, n, j);
        if (prob.t_eval[j] == tb) {
            for (int i = 0; i < dim; ++i) out[i] = yb[std::size_t(i) * W + l];
        } else {
            interpolate((prob.t_eval[j] - ta) / (tb - ta), out);
        }
        ++j;
    }
}

template <class T, int W>
void wide_write_initial(const Problem<T>& prob, const Results<T>& res, index_t first,
                        int count, int dim, const T* y, LaneState<T, W>& st) {
    for (int l = 0; l < count; ++l) {
        index_t& j = st.n_written[l];
        while (j < prob.n_eval && prob.t_eval[j] == prob.t0) {
            T* out = wide_output_row(prob, res, dim, first + l, j);
            for (int i = 0; i < dim; ++i) out[i] = y[std::size_t(i) * W + l];
            ++j;
        }
    }
}

/// The cubic Hermite interpolant of write_outputs.
template <class T, int W>
void wide_write_hermite(const Problem<T>& prob, const Results<T>& res, int dim, index_t n,
                        int l, T ta, T tb, const T* ya, const T* fa, const T* yb,
                        const T* fb, index_t& j) {
    const T h = tb - ta;
    wide_write_step<T, W>(prob, res, dim, n, l, ta, tb, yb, j, [&](T s, T* out) {
        const HermiteWeights<T> w(s, h);
        for (int i = 0; i < dim; ++i) {
            const std::size_t e = std::size_t(i) * W + l;
            out[i] = w.ya * ya[e] + w.fa * fa[e] + w.yb * yb[e] + w.fb * fb[e];
        }
    });
}

/// The method's own interpolant, as in write_dense_outputs. `k` contains every stage.
template <class Tab, class T, int W>
void wide_write_dense(const Problem<T>& prob, const Results<T>& res, int dim, index_t n,
                      int l, T ta, T tb, const T* ya, WideVectors<T, W>& k, const T* yb,
                      index_t& j) {
    const T h = tb - ta;
    wide_write_step<T, W>(prob, res, dim, n, l, ta, tb, yb, j, [&](T theta, T* out) {
        T weight[Tab::stages];
        for (int s = 0; s < Tab::stages; ++s) weight[s] = dense_weight(Tab{}, s, theta);
        for (int i = 0; i < dim; ++i) {
            const std::size_t e = std::size_t(i) * W + l;
            T acc = T(0);
            for (int s = 0; s < Tab::stages; ++s) acc += weight[s] * k[s][e];
            out[i] = ya[e] + h * acc;
        }
    });
}

/// Copies the lanes' outcome into the results, as finish_block does.
template <class T, int W>
void wide_finish(const Problem<T>& prob, const Results<T>& res, index_t first, int count,
                 int dim, const T* y, const LaneState<T, W>& st) {
    for (int l = 0; l < count; ++l) {
        const index_t n = first + l;
        st.store(l, res, n);
        if (prob.n_eval == 0) {
            T* out = wide_output_row(prob, res, dim, n, 0);
            for (int i = 0; i < dim; ++i) out[i] = y[std::size_t(i) * W + l];
            continue;
        }
        for (index_t j = st.n_written[l]; j < prob.n_eval; ++j) {
            T* out = wide_output_row(prob, res, dim, n, j);
            for (int i = 0; i < dim; ++i) out[i] = math::quiet_nan<T>();
        }
    }
}

/// Stages 1 .. S-1 of an explicit Runge-Kutta step and y1 = y + dt sum_j b_j
/// k_j for every lane, given k[0] = f(t, y); k[1 .. S-1] are overwritten.
template <class Tab, class Lanes, class T, int W>
void wide_rk_stages(Lanes& lanes, const T* t, const T* dt, const T* y, WideVectors<T, W>& k,
                    T* y1) {
    const std::size_t n = std::size_t(k.dim) * W;
    T ts[W];
    for (int s = 1; s < Tab::stages; ++s) {
        for (std::size_t e = 0; e < n; ++e) y1[e] = y[e];
        for (int j = 0; j < s; ++j) {
            if (Tab::a(s, j) == 0.0) continue;
            const T a = T(Tab::a(s, j));
            const T* kj = k[j];
            for (std::size_t e = 0; e < n; e += W) {
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) y1[e + l] += dt[l] * a * kj[e + l];
            }
        }
        for (int l = 0; l < W; ++l) ts[l] = t[l] + T(Tab::c(s)) * dt[l];
        lanes.rhs(ts, y1, k[s]);
    }

    for (std::size_t e = 0; e < n; ++e) y1[e] = y[e];
    for (int j = 0; j < Tab::stages; ++j) {
        if (Tab::b(j) == 0.0) continue;
        const T b = T(Tab::b(j));
        const T* kj = k[j];
        for (std::size_t e = 0; e < n; e += W) {
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) y1[e + l] += dt[l] * b * kj[e + l];
        }
    }
}

/// The error norm of error_norm_lane for every lane: NaN when y1 is not finite.
template <class Tab, class T, int W>
void wide_error_norm(const Problem<T>& prob, const T* dt, const T* y, WideVectors<T, W>& k,
                     const T* y1, T* norm) {
    T sum[W];
    for (int l = 0; l < W; ++l) sum[l] = T(0);
    for (int i = 0; i < k.dim; ++i) {
        const std::size_t row = std::size_t(i) * W;
        T err[W];
        for (int l = 0; l < W; ++l) err[l] = T(0);
        for (int j = 0; j < Tab::stages; ++j) {
            if (Tab::b_err(j) == 0.0) continue;
            const T c = T(Tab::b_err(j));
            for (int l = 0; l < W; ++l) err[l] += c * k[j][row + l];
        }
        for (int l = 0; l < W; ++l) {
            const T yi = y[row + l], y1i = y1[row + l];
            const T scale = prob.atol + prob.rtol * math::max(math::fabs(yi), math::fabs(y1i));
            const T ratio = dt[l] * err[l] / scale;
            sum[l] += ratio * ratio + (y1i - y1i);
        }
    }
    for (int l = 0; l < W; ++l) norm[l] = math::sqrt(sum[l] / T(k.dim));
}

/// The initial step of `initial_step`, with one evaluation of f.
template <class Tab, class Lanes, class T, int W>
void wide_initial_step(Lanes& lanes, const Problem<T>& prob, int dim, const T* y,
                       const T* f0, T* work_y, T* work_f, T* dt) {
    const T direction = prob.direction();
    const T span = math::fabs(prob.t1 - prob.t0);
    T d1[W], h0[W], t[W];
    for (int l = 0; l < W; ++l) {
        T s0 = 0, s1 = 0;
        for (int i = 0; i < dim; ++i) {
            const std::size_t e = std::size_t(i) * W + l;
            const T scale = prob.atol + prob.rtol * math::fabs(y[e]);
            s0 += (y[e] / scale) * (y[e] / scale);
            s1 += (f0[e] / scale) * (f0[e] / scale);
        }
        const T d0 = math::sqrt(s0 / T(dim));
        d1[l] = math::sqrt(s1 / T(dim));
        h0[l] = (d0 < T(1e-5) || d1[l] < T(1e-5)) ? T(1e-6) : T(0.01) * d0 / d1[l];
        h0[l] = math::min(h0[l], span);
        t[l] = prob.t0 + direction * h0[l];
        for (int i = 0; i < dim; ++i) {
            const std::size_t e = std::size_t(i) * W + l;
            work_y[e] = y[e] + direction * h0[l] * f0[e];
        }
    }
    lanes.rhs(t, work_y, work_f);

    const T exponent = T(1) / T(Tab::error_order + 1);
    for (int l = 0; l < W; ++l) {
        T s2 = 0;
        for (int i = 0; i < dim; ++i) {
            const std::size_t e = std::size_t(i) * W + l;
            const T scale = prob.atol + prob.rtol * math::fabs(y[e]);
            const T diff = (work_f[e] - f0[e]) / scale;
            s2 += diff * diff;
        }
        const T d2 = math::sqrt(s2 / T(dim)) / h0[l];
        const T d12 = math::max(d1[l], d2);
        const T h1 = d12 <= T(1e-15) ? math::max(T(1e-6), h0[l] * T(1e-3))
                                      : math::pow(T(0.01) / d12, exponent);
        dt[l] = direction * math::min(math::min(T(100) * h0[l], h1), span);
    }
}

/// One fixed step from ta to tb for every lane: k[0] = f(ta, y), the other
/// stages, and y1. Returns the evaluations of f it spent.
template <class Tab, class Lanes, class T, int W>
int wide_fixed_step(Lanes& lanes, T ta, T tb, const T* y, WideVectors<T, W>& k, T* y1) {
    T ts[W], dts[W];
    for (int l = 0; l < W; ++l) {
        ts[l] = ta;
        dts[l] = tb - ta;
    }
    lanes.rhs(ts, y, k[0]);
    wide_rk_stages<Tab>(lanes, ts, dts, y, k, y1);
    return Tab::stages;
}

/// The counters of FixedCheckpoint; the state at the check is a wide buffer.
struct WideCheckpoint {
    index_t steps = 0, evals = 0, next_out = 0;
};

/// locate_failures for a run-time dimension: replays the steps after the
/// checkpoint state `y_check` up to `steps` in the scratch buffers `y` and
/// `y1`. Each active lane that is no longer finite stops at its last finite
/// state (stored in `y_stop`) and the time of it; its later outputs are
/// dropped, so they end up NaN. The replay repeats the same arithmetic, so it
/// finds the same values.
template <class Tab, class Lanes, class T, int W>
void wide_locate_failures(Lanes& lanes, const Problem<T>& prob, index_t n,
                          const T* y_check, const WideCheckpoint& cp, index_t steps,
                          WideVectors<T, W>& k, T* y, T* y1, T* y_stop,
                          LaneState<T, W>& st) {
    const int dim = k.dim;
    const T direction = prob.direction();
    std::copy(y_check, y_check + std::size_t(dim) * W, y);
    index_t evals = cp.evals, next_out = cp.next_out;
    for (index_t s = cp.steps; s < steps; ++s) {
        const T ta = fixed_step_time(prob, s, n);
        const T tb = fixed_step_time(prob, s + 1, n);
        evals += wide_fixed_step<Tab>(lanes, ta, tb, y, k, y1);
        const index_t out_before = next_out;
        if (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
            evals += 1;  // f at tb, which the Hermite outputs evaluate
            while (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
                ++next_out;
            }
        }

        for (int l = 0; l < W; ++l) {
            if (!st.active[l] || wide_lane_is_finite<T, W>(y1, dim, l)) continue;
            stop_before_step(st, l, s, evals, ta, out_before);
            wide_copy_lane<T, W>(y_stop, y, dim, l);
        }
        std::swap(y, y1);
    }
}

/// fixed_block for a run-time dimension and an explicit Runge-Kutta tableau.
/// Outputs reuse the first stage as f at the step start, so they cost one
/// evaluation of f per output step instead of two. Like fixed_block, it looks
/// for non-finite states every FINITE_CHECK_INTERVAL steps and replays the
/// steps since the last check to report the step that failed.
template <class Tab, class Sys, class T, int W>
void wide_fixed_block(const Sys& sys, const Problem<T>& prob, const Results<T>& res,
                      index_t first, int count) {
    const int dim = sys.dim();
    typename Sys::template Lanes<W> lanes;
    lanes.load(sys, first, count);
    WideVectors<T, W> k(dim, Tab::stages);
    // y, y1, f at the step end, the state at the last check, the last finite
    // state of failed lanes, and a scratch buffer for the replay.
    WideVectors<T, W> v(dim, 6);
    T* y = v[0];
    T* y1 = v[1];
    T* fb = v[2];
    T* y_check = v[3];
    T* y_stop = v[4];
    const std::size_t size = std::size_t(dim) * W;
    LaneState<T, W> st;
    wide_start(prob, first, count, dim, y, st);
    wide_write_initial(prob, res, first, count, dim, y, st);
    std::copy(y, y + size, y_stop);
    std::copy(y, y + size, y_check);

    const index_t n = fixed_step_count(prob);
    const T direction = prob.direction();
    index_t next_out = st.n_written[0];
    index_t steps = 0, evals = 0;
    WideCheckpoint checkpoint{0, 0, next_out};
    bool any_active = st.any_active();
    for (; steps < n && steps < prob.max_steps && any_active; ++steps) {
        const T ta = fixed_step_time(prob, steps, n);
        const T tb = fixed_step_time(prob, steps + 1, n);
        evals += wide_fixed_step<Tab>(lanes, ta, tb, y, k, y1);

        if (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
            T ts[W];
            for (int l = 0; l < W; ++l) ts[l] = tb;
            lanes.rhs(ts, y1, fb);
            evals += 1;
            for (int l = 0; l < count; ++l) {
                if (!st.active[l]) continue;
                wide_write_hermite<T, W>(prob, res, dim, first + l, l, ta, tb, y, k[0], y1, fb,
                                         st.n_written[l]);
            }
            while (next_out < prob.n_eval && reached(prob.t_eval[next_out], tb, direction)) {
                ++next_out;
            }
        }

        std::swap(y, y1);
        const bool check = (steps + 1) % FINITE_CHECK_INTERVAL == 0 || steps + 1 == n ||
                           steps + 1 == prob.max_steps;
        if (!check) continue;
        if (!wide_active_lanes_finite<T, W>(y, dim, st)) {
            wide_locate_failures<Tab>(lanes, prob, n, y_check, checkpoint, steps + 1, k, v[5],
                                      fb, y_stop, st);
            any_active = st.any_active();
        }
        std::copy(y, y + size, y_check);
        checkpoint = {steps + 1, evals, next_out};
    }

    const bool finished = steps == n;
    for (int l = 0; l < W; ++l) {
        if (!st.active[l]) {
            wide_copy_lane<T, W>(y, y_stop, dim, l);
            continue;
        }
        st.n_steps[l] = st.n_accepted[l] = steps;
        st.n_rhs[l] = evals;
        st.t[l] = fixed_step_time(prob, steps, n);
        if (!finished) st.fail(l, MAX_STEPS);
    }
    wide_finish(prob, res, first, count, dim, y, st);
}

/// adaptive_block for a run-time dimension: each lane has its own t and dt.
template <class Tab, class Sys, class T, int W>
void wide_adaptive_block(const Sys& sys, const Problem<T>& prob, const Results<T>& res,
                         index_t first, int count) {
    static_assert(is_fsal<Tab>(), "the last stage is reused as f(t1, y1)");
    const int dim = sys.dim();
    constexpr int S = Tab::stages;
    typename Sys::template Lanes<W> lanes;
    lanes.load(sys, first, count);
    // k[0] is f at the lane's current (t, y); a rejected lane keeps it.
    WideVectors<T, W> k(dim, S);
    WideVectors<T, W> v(dim, 2);
    T* y = v[0];
    T* y1 = v[1];
    LaneState<T, W> st;
    wide_start(prob, first, count, dim, y, st);
    wide_write_initial(prob, res, first, count, dim, y, st);
    const T direction = prob.direction();
    for (int l = 0; l < W; ++l) st.active[l] = st.active[l] && prob.t1 != prob.t0;
    if (!st.any_active()) {
        wide_finish(prob, res, first, count, dim, y, st);
        return;
    }

    lanes.rhs(st.t, y, k[0]);
    st.count_rhs(1);
    for (int l = 0; l < W; ++l) {
        if (st.active[l] && !wide_lane_is_finite<T, W>(k[0], dim, l)) st.fail(l, NON_FINITE);
    }

    T dt[W], dt_try[W], norm[W], err_prev[W], t_out[W];
    int rejected_last[W];
    if (prob.dt > T(0)) {
        const T span = math::fabs(prob.t1 - prob.t0);
        for (int l = 0; l < W; ++l) dt[l] = direction * math::min(prob.dt, span);
    } else {
        wide_initial_step<Tab, decltype(lanes), T, W>(lanes, prob, dim, y, k[0], y1, k[S - 1],
                                                      dt);
        st.count_rhs(1);
    }
    start_controller(prob, st, err_prev, rejected_last, t_out);

    const std::size_t n_values = std::size_t(dim) * W;
    StepDecision<T, W> d;
    while (st.any_active()) {
        clip_to_end(prob, st, direction, dt, dt_try);
        wide_rk_stages<Tab>(lanes, st.t, dt_try, y, k, y1);
        wide_error_norm<Tab>(prob, dt_try, y, k, y1, norm);
        st.count_rhs(S - 1);
        const bool any_event = decide_steps<Tab>(prob, st, dt, dt_try, norm, err_prev,
                                                 rejected_last, t_out, d);

        for (int l = 0; any_event && l < count; ++l) {
            if (!d.event[l] || !d.accepted[l]) continue;
            if constexpr (Tab::dense) {
                wide_write_dense<Tab>(prob, res, dim, first + l, l, st.t[l], d.t_new[l], y, k,
                                      y1, st.n_written[l]);
            } else {
                wide_write_hermite<T, W>(prob, res, dim, first + l, l, st.t[l], d.t_new[l], y,
                                         k[0], y1, k[S - 1], st.n_written[l]);
            }
            t_out[l] = next_output_time(prob, st.n_written[l]);
        }

        T* k0 = k[0];
        const T* k_last = k[S - 1];
        for (std::size_t e = 0; e < n_values; e += W) {
            for (int l = 0; l < W; ++l) {
                y[e + l] = d.accepted[l] ? y1[e + l] : y[e + l];
                k0[e + l] = d.accepted[l] ? k_last[e + l] : k0[e + l];
            }
        }
        record_decisions(prob, d, norm, any_event, st, dt, err_prev, rejected_last);
    }
    wide_finish(prob, res, first, count, dim, y, st);
}

}  // namespace fastode
