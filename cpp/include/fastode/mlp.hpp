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

// 2^n for an integer-valued n, from its exponent bits.
using math::pow2;

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

/// expm1(r) = r + r^2 q(r) for |r| <= ln(2) / 2, with q of degree 9 from a
/// 40-digit Chebyshev fit of (expm1(r) - r) / r^2 on that interval
/// (mpmath.chebyfit). The fit error is below 4e-17 relative to expm1(r), two
/// terms fewer than the Taylor series of expm1_reduced needs.
template <class T>
FASTODE_HD FASTODE_INLINE T expm1_fitted(T r) {
    T p = T(2.5100375832561234e-08);
    p = p * r + T(2.7620075879983367e-07);
    p = p * r + T(2.7557268480310024e-06);
    p = p * r + T(2.4801521322368692e-05);
    p = p * r + T(0.00019841269863040545);
    p = p * r + T(0.0013888888917196719);
    p = p * r + T(0.008333333333330065);
    p = p * r + T(0.041666666666624164);
    p = p * r + T(0.16666666666666669);
    p = p * r + T(0.5000000000000001);
    return r + r * r * p;
}

/// 2^n from k = n + 1.5 2^(mantissa bits), the sum that round_to_integer
/// forms: n sits in the low bits of k, so shifting them into the exponent
/// field saves the float-to-integer conversion. Needs 0 <= n + bias < 2^11
/// (double) or 2^8 (float).
template <class T>
FASTODE_HD FASTODE_INLINE T pow2_from_shifted(T k);

template <>
FASTODE_HD FASTODE_INLINE double pow2_from_shifted<double>(double k) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __longlong_as_double((__double_as_longlong(k) + 1023LL) << 52);
#else
    return __builtin_bit_cast(double, (__builtin_bit_cast(long long, k) + 1023LL) << 52);
#endif
}

template <>
FASTODE_HD FASTODE_INLINE float pow2_from_shifted<float>(float k) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return __int_as_float((__float_as_int(k) + 127) << 23);
#else
    return __builtin_bit_cast(float, (__builtin_bit_cast(int, k) + 127) << 23);
#endif
}

template <class T>
FASTODE_HD FASTODE_INLINE T copy_sign(T magnitude, T sign) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return ::copysign(magnitude, sign);
#else
    return std::copysign(magnitude, sign);
#endif
}

/// tanh(x) = sign(x) e / (e + 2) with e = expm1(2 |x|), which has no
/// cancellation, so it is accurate relative to tanh(x) near 0 as well. A NaN
/// x returns 1 with the NaN's sign bit, but the NaN stays in the state, so the
/// run still reports it.
template <class T>
FASTODE_HD FASTODE_INLINE T tanh(T x) {
    // tanh(20) rounds to 1 in float64, so larger |x| changes nothing, and
    // n <= 58 keeps pow2_from_shifted in range.
    const T y = T(2) * math::min(math::fabs(x), T(20));
    const T shifter = sizeof(T) == 4 ? T(12582912.0f) : T(6755399441055744.0);
    const T k = y * T(1.4426950408889634) + shifter;
    const T n = k - shifter;
    // Cody and Waite's two-part ln 2, as in reduce_ln2.
    const T r = (y - n * T(6.93147180369123816490e-01)) - n * T(1.90821492927058770002e-10);
    const T scale = pow2_from_shifted(k);
    const T e = scale * expm1_fitted(r) + (scale - T(1));
    return copy_sign(e / (e + T(2)), x);
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

// One type per activation, so a kernel templated on it has no switch or
// derivative branch inside its lane loops.
struct IdentityActivation {
    template <class T>
    FASTODE_HD FASTODE_INLINE static T apply(T z) { return z; }
};
struct TanhActivation {
    template <class T>
    FASTODE_HD FASTODE_INLINE static T apply(T z) { return mlp_math::tanh(z); }
};
struct ReluActivation {
    template <class T>
    FASTODE_HD FASTODE_INLINE static T apply(T z) { return math::max(z, T(0)); }
};
struct SoftplusActivation {
    template <class T>
    FASTODE_HD FASTODE_INLINE static T apply(T z) { return mlp_math::softplus(z); }
};
struct SigmoidActivation {
    template <class T>
    FASTODE_HD FASTODE_INLINE static T apply(T z) { return mlp_math::sigmoid(z); }
};

/// Applies the activation to n values of z in place.
template <class Act, class T>
FASTODE_HD FASTODE_INLINE void activate_values(T* z, int n) {
    FASTODE_SIMD
    for (int i = 0; i < n; ++i) z[i] = Act::template apply<T>(z[i]);
}

/// Applies the activation to n values of z in place and, when `deriv` is not
/// null, stores its derivative at each z there. The switch and the `deriv`
/// test sit outside the loops, because a branch inside a lane loop makes GCC
/// mask every instruction of its body.
template <class T>
FASTODE_HD void activate(int activation, T* z, T* deriv, int n) {
    if (!deriv) {
        switch (activation) {
            case ACTIVATION_TANH: return activate_values<TanhActivation>(z, n);
            case ACTIVATION_RELU: return activate_values<ReluActivation>(z, n);
            case ACTIVATION_SOFTPLUS: return activate_values<SoftplusActivation>(z, n);
            case ACTIVATION_SIGMOID: return activate_values<SigmoidActivation>(z, n);
            default: return;
        }
    }
    switch (activation) {
        case ACTIVATION_TANH:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                const T a = mlp_math::tanh(z[i]);
                z[i] = a;
                deriv[i] = T(1) - a * a;
            }
            return;
        case ACTIVATION_RELU:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                // The derivative at 0 is taken as 0, as PyTorch does.
                deriv[i] = z[i] > T(0) ? T(1) : T(0);
                z[i] = math::max(z[i], T(0));
            }
            return;
        case ACTIVATION_SOFTPLUS:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                deriv[i] = mlp_math::sigmoid(z[i]);
                z[i] = mlp_math::softplus(z[i]);
            }
            return;
        case ACTIVATION_SIGMOID:
            FASTODE_SIMD
            for (int i = 0; i < n; ++i) {
                const T s = mlp_math::sigmoid(z[i]);
                z[i] = s;
                deriv[i] = s * (T(1) - s);
            }
            return;
        default:
            for (int i = 0; i < n; ++i) deriv[i] = T(1);
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

/// Accumulates acc[o][l] += w2[o][h] act(b1[h] + sum_j w1[h][j] in[j][l]) for
/// the G hidden units h0 .. h0 + G - 1 and C lanes from `c0`.
template <class Act, int G, int C, int W, int D, class T>
FASTODE_HD FASTODE_INLINE void accumulate_hidden_group(const T* w1, const T* b1, int n_in,
                                                       int n_hidden, const T* w2, const T* in,
                                                       int h0, int c0, T (&acc)[D][C]) {
    T z[G * C];
    FASTODE_UNROLL
    for (int h = 0; h < G; ++h) {
        FASTODE_SIMD
        for (int l = 0; l < C; ++l) z[h * C + l] = b1[h0 + h];
    }
    for (int j = 0; j < n_in; ++j) {
        FASTODE_UNROLL
        for (int h = 0; h < G; ++h) {
            const T a = w1[(h0 + h) * n_in + j];
            FASTODE_SIMD
            for (int l = 0; l < C; ++l) z[h * C + l] += a * in[j * W + c0 + l];
        }
    }
    FASTODE_SIMD
    for (int i = 0; i < G * C; ++i) z[i] = Act::template apply<T>(z[i]);
    FASTODE_UNROLL
    for (int h = 0; h < G; ++h) {
        FASTODE_UNROLL
        for (int o = 0; o < D; ++o) {
            const T c = w2[o * n_hidden + h0 + h];
            FASTODE_SIMD
            for (int l = 0; l < C; ++l) acc[o][l] += c * z[h * C + l];
        }
    }
}

/// out = W2 act(W1 in + b1) + b2 for the last hidden layer and the output
/// layer of D rows, without storing the hidden layer. The lanes go in chunks
/// of C (one 64-byte SIMD register) and the hidden units in groups of 8, so
/// the D x C output sums stay in registers and 8 independent activations
/// overlap. The sums run in the same order as dense_layer's.
template <class Act, class T, int W, int D>
FASTODE_HD FASTODE_MLP_OUTLINE void hidden_to_output(const T* w1, const T* b1, int n_in,
                                                     int n_hidden, const T* w2, const T* b2,
                                                     const T* in, T* out) {
    constexpr int REGISTER_LANES = 64 / int(sizeof(T));
    constexpr int C = W < REGISTER_LANES ? W : REGISTER_LANES;
    constexpr int G = 8;
    static_assert(W % C == 0, "the lane count must be a multiple of the chunk");
    for (int c0 = 0; c0 < W; c0 += C) {
        T acc[D][C];
        FASTODE_UNROLL
        for (int o = 0; o < D; ++o) {
            FASTODE_SIMD
            for (int l = 0; l < C; ++l) acc[o][l] = b2[o];
        }
        int h0 = 0;
        for (; h0 + G <= n_hidden; h0 += G) {
            accumulate_hidden_group<Act, G, C, W, D>(w1, b1, n_in, n_hidden, w2, in, h0, c0,
                                                     acc);
        }
        for (; h0 < n_hidden; ++h0) {
            accumulate_hidden_group<Act, 1, C, W, D>(w1, b1, n_in, n_hidden, w2, in, h0, c0,
                                                     acc);
        }
        FASTODE_UNROLL
        for (int o = 0; o < D; ++o) {
            FASTODE_SIMD
            for (int l = 0; l < C; ++l) out[o * W + c0 + l] = acc[o][l];
        }
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

    /// Evaluates the network for W lanes as `forward` does without
    /// derivatives, for an output layer of D rows. The last hidden layer and
    /// the output layer run fused in hidden_to_output.
    template <int W, int D>
    FASTODE_HD FASTODE_MLP_OUTLINE void forward_outputs(T* x, T* scratch, T* out) const {
        if (n_layers == 1) {
            dense_layer<T, W>(params, params + widths[0] * D, widths[0], D, x, out);
            return;
        }
        const T* w = params;
        T* in = x;
        T* next = scratch;
        for (int k = 0; k + 2 < n_layers; ++k) {
            const int n_in = widths[k], n_out = widths[k + 1];
            dense_layer<T, W>(w, w + n_in * n_out, n_in, n_out, in, next);
            activate<T>(activation, next, nullptr, n_out * W);
            w += n_in * n_out + n_out;
            T* done = in;
            in = next;
            next = done;
        }
        const int n_in = widths[n_layers - 2], n_hidden = widths[n_layers - 1];
        const T* b1 = w + n_in * n_hidden;
        const T* w2 = b1 + n_hidden;
        const T* b2 = w2 + n_hidden * D;
        switch (activation) {
            case ACTIVATION_TANH:
                return hidden_to_output<TanhActivation, T, W, D>(w, b1, n_in, n_hidden, w2,
                                                                 b2, in, out);
            case ACTIVATION_RELU:
                return hidden_to_output<ReluActivation, T, W, D>(w, b1, n_in, n_hidden, w2,
                                                                 b2, in, out);
            case ACTIVATION_SOFTPLUS:
                return hidden_to_output<SoftplusActivation, T, W, D>(w, b1, n_in, n_hidden,
                                                                     w2, b2, in, out);
            case ACTIVATION_SIGMOID:
                return hidden_to_output<SigmoidActivation, T, W, D>(w, b1, n_in, n_hidden,
                                                                    w2, b2, in, out);
            default:
                return hidden_to_output<IdentityActivation, T, W, D>(w, b1, n_in, n_hidden,
                                                                     w2, b2, in, out);
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
            net->template forward_outputs<W, D>(x, scratch, dy.v);
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
