// Multilayer-perceptron vector fields for neural ODEs and continuous
// normalizing flows.
//
// The network's weights are shared by every trajectory and stored in one
// contiguous buffer, so they stay in cache while the blocks of a batch stream
// through. Each layer is evaluated for the W lanes of a block at once: a
// weight is broadcast and multiplied into a lane vector of inputs.
//
// Layout of `params`: for each layer k = 1 .. L, the weight matrix W_k
// (widths[k] x widths[k-1], row-major, the PyTorch nn.Linear layout) followed
// by the bias b_k (widths[k]). widths[0] is the input width, the state
// dimension d plus one when the time is an input; widths[L] is d.
#pragma once

#include "lanes.hpp"

namespace fastode {

/// Largest layer width; it sizes the per-lane hidden buffers.
constexpr int MLP_MAX_WIDTH = 256;
/// Largest total number of hidden units when a Jacobian trace is needed,
/// because the activation derivatives of every hidden layer are kept.
constexpr int MLP_MAX_HIDDEN_TOTAL = 1024;
/// Largest number of trace probes (Hutchinson vectors, or the d unit vectors).
constexpr int MLP_MAX_PROBES = 64;
// NOTE: with W = 1 on the GPU these bounds give the CNF field about 16 KB of
// per-thread local memory in float64. Only NVRTC compilation is tested there.

// The network passes are large and run once per right-hand side evaluation,
// so the call overhead is small next to their work. Keeping them out of line compiles each
// once per (type, lanes) instead of once per method, dimension and stage.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FASTODE_MLP_OUTLINE __noinline__
#else
#define FASTODE_MLP_OUTLINE __attribute__((noinline))
#endif

enum Activation : int {
    ACTIVATION_IDENTITY = 0,
    ACTIVATION_TANH = 1,
    ACTIVATION_RELU = 2,
    ACTIVATION_SOFTPLUS = 3,
    ACTIVATION_SIGMOID = 4,
};

// --- vectorizable elementary functions -----------------------------------------
//
// std::tanh and std::exp are library calls that block SIMD code generation
// unless -ffast-math is on, so the activations use these branch-free versions.
// Each is accurate to a few ulp in float64.

namespace mlp_math {

/// x rounded to the nearest integer, for |x| below 2^22 (float) or 2^51
/// (double). Adding and subtracting 1.5 2^(mantissa bits) rounds in the FPU's
/// mode, and unlike std::floor it does not stop GCC 12 from vectorizing an
/// `omp simd` loop. NOTE: -ffast-math may fold the two operations away.
template <class T>
FASTODE_HD FASTODE_INLINE T round_to_integer(T x) {
    const T shifter = sizeof(T) == 4 ? T(12582912.0f) : T(6755399441055744.0);
    return (x + shifter) - shifter;
}

/// 2^n for an integer-valued n inside the normal exponent range of T.
template <class T>
FASTODE_HD FASTODE_INLINE T pow2(T n);

template <>
FASTODE_HD FASTODE_INLINE double pow2<double>(double n) {
    const long long bits = (static_cast<long long>(n) + 1023LL) << 52;
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __longlong_as_double(bits);
#else
    return __builtin_bit_cast(double, bits);
#endif
}

template <>
FASTODE_HD FASTODE_INLINE float pow2<float>(float n) {
    const int bits = (static_cast<int>(n) + 127) << 23;
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __int_as_float(bits);
#else
    return __builtin_bit_cast(float, bits);
#endif
}

/// expm1(r) for |r| <= ln(2) / 2, by its Taylor series to r^14 (the first
/// omitted term is below 2e-17 relative).
template <class T>
FASTODE_HD FASTODE_INLINE T expm1_reduced(T r) {
    T p = T(1.0 / 87178291200.0);  // 1/14!
    p = p * r + T(1.0 / 6227020800.0);
    p = p * r + T(1.0 / 479001600.0);
    p = p * r + T(1.0 / 39916800.0);
    p = p * r + T(1.0 / 3628800.0);
    p = p * r + T(1.0 / 362880.0);
    p = p * r + T(1.0 / 40320.0);
    p = p * r + T(1.0 / 5040.0);
    p = p * r + T(1.0 / 720.0);
    p = p * r + T(1.0 / 120.0);
    p = p * r + T(1.0 / 24.0);
    p = p * r + T(1.0 / 6.0);
    p = p * r + T(0.5);
    return r + r * r * p;
}

/// Splits y = n ln 2 + r with |r| <= ln(2) / 2 (Cody and Waite's two-part
/// ln 2, the constants of fdlibm) and returns n.
template <class T>
FASTODE_HD FASTODE_INLINE T reduce_ln2(T y, T& r) {
    const T n = round_to_integer(y * T(1.4426950408889634));
    r = (y - n * T(6.93147180369123816490e-01)) - n * T(1.90821492927058770002e-10);
    return n;
}

/// exp(y) for y in [-700, 0] (float64) or [-80, 0] (float32), so callers clamp.
template <class T>
FASTODE_HD FASTODE_INLINE T exp_nonpositive(T y) {
    T r;
    const T n = reduce_ln2(y, r);
    return pow2(n) * (T(1) + expm1_reduced(r));
}

/// Lower clamp of exp_nonpositive's argument: 2^n stays a normal number.
template <class T>
FASTODE_HD FASTODE_INLINE T exp_floor() {
    return sizeof(T) == 4 ? T(-80) : T(-700);
}

/// tanh(x) = sign(x) e / (e + 2) with e = expm1(2 |x|), which has no
/// cancellation, so it is accurate relative to tanh(x) near 0 as well.
template <class T>
FASTODE_HD FASTODE_INLINE T tanh(T x) {
    // tanh(20) rounds to 1 in float64, so larger |x| changes nothing.
    const T y = T(2) * math::min(math::fabs(x), T(20));
    T r;
    const T n = reduce_ln2(y, r);
    const T scale = pow2(n);
    const T e = scale * expm1_reduced(r) + (scale - T(1));
    const T t = e / (e + T(2));
    return x < T(0) ? -t : t;
}

/// 1 / (1 + exp(-x)), written with exp(-|x|), whose argument is at most 0.
template <class T>
FASTODE_HD FASTODE_INLINE T sigmoid(T x) {
    const T e = exp_nonpositive(math::max(-math::fabs(x), exp_floor<T>()));
    const T s = T(1) / (T(1) + e);
    return x >= T(0) ? s : e * s;
}

/// log(1 + e) for e in [0, 1], as 2 atanh(u) with u = e / (2 + e) <= 1/3:
/// the odd series 2 (u + u^3/3 + u^5/5 + ...) to u^37.
template <class T>
FASTODE_HD FASTODE_INLINE T log1p_unit(T e) {
    const T u = e / (T(2) + e);
    const T s = u * u;
    T p = T(1.0 / 37.0);
    p = p * s + T(1.0 / 35.0);
    p = p * s + T(1.0 / 33.0);
    p = p * s + T(1.0 / 31.0);
    p = p * s + T(1.0 / 29.0);
    p = p * s + T(1.0 / 27.0);
    p = p * s + T(1.0 / 25.0);
    p = p * s + T(1.0 / 23.0);
    p = p * s + T(1.0 / 21.0);
    p = p * s + T(1.0 / 19.0);
    p = p * s + T(1.0 / 17.0);
    p = p * s + T(1.0 / 15.0);
    p = p * s + T(1.0 / 13.0);
    p = p * s + T(1.0 / 11.0);
    p = p * s + T(1.0 / 9.0);
    p = p * s + T(1.0 / 7.0);
    p = p * s + T(1.0 / 5.0);
    p = p * s + T(1.0 / 3.0);
    p = p * s + T(1);
    return T(2) * u * p;
}

/// log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)).
template <class T>
FASTODE_HD FASTODE_INLINE T softplus(T x) {
    const T e = exp_nonpositive(math::max(-math::fabs(x), exp_floor<T>()));
    return math::max(x, T(0)) + log1p_unit(e);
}

}  // namespace mlp_math

/// Applies the activation to n values of z in place and, when `deriv` is not
/// null, stores its derivative at each z there. The switch sits outside the
/// loops so each loop vectorizes.
template <class T>
FASTODE_HD void activate(int activation, T* z, T* deriv, int n) {
    switch (activation) {
        case ACTIVATION_TANH:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                const T a = mlp_math::tanh(z[i]);
                z[i] = a;
                if (deriv) deriv[i] = T(1) - a * a;
            }
            return;
        case ACTIVATION_RELU:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                // The derivative at 0 is taken as 0, as PyTorch does.
                if (deriv) deriv[i] = z[i] > T(0) ? T(1) : T(0);
                z[i] = math::max(z[i], T(0));
            }
            return;
        case ACTIVATION_SOFTPLUS:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                if (deriv) deriv[i] = mlp_math::sigmoid(z[i]);
                z[i] = mlp_math::softplus(z[i]);
            }
            return;
        case ACTIVATION_SIGMOID:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                const T s = mlp_math::sigmoid(z[i]);
                z[i] = s;
                if (deriv) deriv[i] = s * (T(1) - s);
            }
            return;
        default:
            if (deriv) {
                for (int i = 0; i < n; ++i) deriv[i] = T(1);
            }
            return;
    }
}

/// out[o][l] = bias[o] + sum_j weight[o][j] in[j][l] for W lanes, with `in`
/// and `out` in lane-major blocks (element (j, l) at j * W + l). Four outputs
/// share each load of an input row. A null bias means zero.
template <class T, int W>
FASTODE_HD FASTODE_INLINE void dense_layer(const T* weight, const T* bias, int n_in,
                                           int n_out, const T* in, T* out) {
    int o = 0;
    for (; o + 4 <= n_out; o += 4) {
        T acc0[W], acc1[W], acc2[W], acc3[W];
        FASTODE_SIMD
        for (int l = 0; l < W; ++l) {
            acc0[l] = bias ? bias[o] : T(0);
            acc1[l] = bias ? bias[o + 1] : T(0);
            acc2[l] = bias ? bias[o + 2] : T(0);
            acc3[l] = bias ? bias[o + 3] : T(0);
        }
        const T* w0 = weight + o * n_in;
        for (int j = 0; j < n_in; ++j) {
            const T a = w0[j], b = w0[n_in + j], c = w0[2 * n_in + j],
                    d = w0[3 * n_in + j];
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) {
                const T x = in[j * W + l];
                acc0[l] += a * x;
                acc1[l] += b * x;
                acc2[l] += c * x;
                acc3[l] += d * x;
            }
        }
        FASTODE_SIMD
        for (int l = 0; l < W; ++l) {
            out[o * W + l] = acc0[l];
            out[(o + 1) * W + l] = acc1[l];
            out[(o + 2) * W + l] = acc2[l];
            out[(o + 3) * W + l] = acc3[l];
        }
    }
    for (; o < n_out; ++o) {
        T acc[W];
        FASTODE_SIMD
        for (int l = 0; l < W; ++l) acc[l] = bias ? bias[o] : T(0);
        const T* w = weight + o * n_in;
        for (int j = 0; j < n_in; ++j) {
            const T a = w[j];
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) acc[l] += a * in[j * W + l];
        }
        FASTODE_SIMD
        for (int l = 0; l < W; ++l) out[o * W + l] = acc[l];
    }
}

/// The network: views of the weight buffer and the layer widths.
template <class T>
struct MLPNet {
    const T* params = nullptr;
    const int* widths = nullptr;  // n_layers + 1 entries
    int n_layers = 0;
    int activation = ACTIVATION_TANH;
    bool time_input = false;

    /// Evaluates the network for W lanes. `x` contains the input rows (state,
    /// then time) and is overwritten; `out` receives the widths[L] outputs.
    /// When `deriv` is not null, the activation derivatives of hidden layer
    /// after hidden layer are stored there, one lane-major block per layer.
    template <int W>
    FASTODE_HD FASTODE_MLP_OUTLINE void forward(T* x, T* scratch, T* out, T* deriv) const {
        const T* w = params;
        T* in = x;
        T* next = scratch;
        for (int k = 0; k < n_layers; ++k) {
            const int n_in = widths[k], n_out = widths[k + 1];
            const T* bias = w + n_in * n_out;
            const bool last = k + 1 == n_layers;
            T* target = last ? out : next;
            dense_layer<T, W>(w, bias, n_in, n_out, in, target);
            w = bias + n_out;
            if (last) break;
            activate<T>(activation, target, deriv, n_out * W);
            if (deriv) deriv += n_out * W;
            next = in;
            in = target;
        }
    }

    /// Computes v^T J v for the W lanes, where J = df/dh is the Jacobian with
    /// respect to the state (not the time) and `probe` contains v in lane-major
    /// rows. J v is a forward-mode product through the activation derivatives
    /// that `forward` stored.
    template <int W>
    FASTODE_HD FASTODE_MLP_OUTLINE void quadratic_form(const T* probe, const T* deriv, T* a,
                                                  T* b, T* quad, int dim) const {
        const T* w = params;
        const T* in = probe;
        T* next = a;
        for (int k = 0; k < n_layers; ++k) {
            const int n_in = widths[k], n_out = widths[k + 1];
            // Rows of W_k past the state take the time, whose tangent is 0, so
            // only the first `dim` columns of the first layer take part.
            const int n_used = k == 0 ? dim : n_in;
            dense_layer_columns<W>(w, n_in, n_used, n_out, in, next);
            w += n_in * n_out + n_out;
            if (k + 1 == n_layers) break;
            for (int i = 0; i < n_out * W; ++i) next[i] *= deriv[i];
            deriv += n_out * W;
            in = next;
            next = next == a ? b : a;
        }
        FASTODE_SIMD
        for (int l = 0; l < W; ++l) quad[l] = T(0);
        for (int i = 0; i < dim; ++i) {
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) quad[l] += probe[i * W + l] * next[i * W + l];
        }
    }

    /// A weight-only product that reads the first n_used columns of a row-major
    /// n_out x n_in matrix.
    template <int W>
    FASTODE_HD FASTODE_INLINE static void dense_layer_columns(const T* weight, int n_in,
                                                              int n_used, int n_out,
                                                              const T* in, T* out) {
        for (int o = 0; o < n_out; ++o) {
            T acc[W];
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) acc[l] = T(0);
            const T* row = weight + o * n_in;
            for (int j = 0; j < n_used; ++j) {
                const T c = row[j];
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) acc[l] += c * in[j * W + l];
            }
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) out[o * W + l] = acc[l];
        }
    }

    /// Copies the state rows (and the time row) into the network input.
    template <int W, int D>
    FASTODE_HD FASTODE_INLINE void load_input(const T* t, const LaneVec<T, D, W>& y,
                                              T* x) const {
        for (int i = 0; i < D * W; ++i) x[i] = y.v[i];
        if (time_input) {
            for (int l = 0; l < W; ++l) x[D * W + l] = t[l];
        }
    }
};

/// dh/dt = f(h, t), an MLP with D outputs shared by every trajectory.
template <class T, int D>
struct MLP {
    static constexpr int dim = D;
    MLPNet<T> net;

    template <int W>
    struct Lanes {
        const MLPNet<T>* net = nullptr;

        FASTODE_HD void load(const MLP& sys, index_t, int) { net = &sys.net; }

        FASTODE_HD FASTODE_INLINE void rhs(const T* t, const LaneVec<T, D, W>& y,
                                           LaneVec<T, D, W>& dy) const {
            T x[MLP_MAX_WIDTH * W];
            T scratch[MLP_MAX_WIDTH * W];
            net->template load_input<W, D>(t, y, x);
            net->template forward<W>(x, scratch, dy.v, nullptr);
        }
    };
};

/// A continuous normalizing flow: the state is (z, a) with dz/dt = f(z, t) and
/// da/dt = -tr(df/dz), so a(t1) - a(t0) is the change of log-density along z.
///
/// The trace is exact in two ways: for one hidden layer, tr(W2 diag(s') W1) =
/// sum_i s'_i (W1 W2)_ii with the per-unit constants (W1 W2)_ii in `unit_trace`;
/// for deeper networks, sum_j e_j^T J e_j with the unit vectors as probes.
/// Hutchinson's estimator passes random probes v_p and `probe_scale` 1/P, for
/// the unbiased estimate (1/P) sum_p v_p^T J v_p.
template <class T, int D>
struct MLPTrace {
    static constexpr int dim = D + 1;
    MLPNet<T> net;
    Param<T> probes;  // (N or 1, n_probes, D), read when unit_trace is null
    int n_probes = 0;
    T probe_scale = T(1);
    const T* unit_trace = nullptr;  // widths[1] values for one hidden layer

    template <int W>
    struct Lanes {
        const MLPTrace* sys = nullptr;
        T probe[MLP_MAX_PROBES * D * W];

        FASTODE_HD void load(const MLPTrace& s, index_t first, int count) {
            sys = &s;
            if (s.unit_trace) return;
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                for (int e = 0; e < s.n_probes * D; ++e) probe[e * W + l] = s.probes.at(n, e);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(const T* t, const LaneVec<T, D + 1, W>& y,
                                           LaneVec<T, D + 1, W>& dy) const {
            const MLPNet<T>& net = sys->net;
            T x[MLP_MAX_WIDTH * W];
            T scratch[MLP_MAX_WIDTH * W];
            T deriv[MLP_MAX_HIDDEN_TOTAL * W];
            // The first D rows of the augmented state are z, laid out as a
            // LaneVec<T, D, W> would be.
            for (int i = 0; i < D * W; ++i) x[i] = y.v[i];
            if (net.time_input) {
                for (int l = 0; l < W; ++l) x[D * W + l] = t[l];
            }
            net.template forward<W>(x, scratch, dy.v, deriv);

            T trace[W];
            if (sys->unit_trace) {
                unit_sum(deriv, trace);
            } else {
                probe_sum(deriv, x, scratch, trace);
            }
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) dy(D, l) = -trace[l];
        }

        FASTODE_HD FASTODE_INLINE void unit_sum(const T* deriv, T* trace) const {
            const int hidden = sys->net.widths[1];
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) trace[l] = T(0);
            for (int i = 0; i < hidden; ++i) {
                const T c = sys->unit_trace[i];
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) trace[l] += c * deriv[i * W + l];
            }
        }

        FASTODE_HD FASTODE_INLINE void probe_sum(const T* deriv, T* a, T* b,
                                                 T* trace) const {
            T quad[W];
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) trace[l] = T(0);
            for (int p = 0; p < sys->n_probes; ++p) {
                sys->net.template quadratic_form<W>(probe + p * D * W, deriv, a, b, quad, D);
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) trace[l] += quad[l];
            }
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) trace[l] *= sys->probe_scale;
        }
    };
};

}  // namespace fastode
