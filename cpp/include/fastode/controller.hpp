// Step-size control for embedded Runge-Kutta pairs, written so that the
// decision for every lane of a block runs as one vectorized loop.
#pragma once

#include "config.hpp"

namespace fastode {

enum Controller : int {
    CONTROLLER_I = 0,
    CONTROLLER_PI = 1,
};

// Keeps the next error estimate below 1 with some margin.
constexpr double SAFETY = 0.9;
// Bounds on the ratio of the next step to this one.
constexpr double FACTOR_MIN = 0.2;
constexpr double FACTOR_MAX = 10.0;
// Floor on the previous error norm seen by the PI controller, so a step that
// was nearly exact does not make the next one grow without bound.
constexpr double ERR_PREV_MIN = 1e-4;

/// x^e for a positive, normal x with |e log2(x)| clamped to 60, to about 1e-9
/// relative. Unlike pow() it has no call and no branch, so the step-size
/// controller of all lanes vectorizes. A step factor needs no more accuracy.
FASTODE_HD FASTODE_INLINE double approx_pow(double x, double e) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    const long long bits = __double_as_longlong(x);
#else
    const long long bits = __builtin_bit_cast(long long, x);
#endif
    // x = 2^k m with m in [sqrt(1/2), sqrt(2)), so ln(m) converges fast.
    const long long mantissa = (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    double m = __longlong_as_double(mantissa);
#else
    double m = __builtin_bit_cast(double, mantissa);
#endif
    double k = double((bits >> 52) & 0x7ff) - 1023.0;
    const bool high = m > 1.4142135623730951;
    m = high ? 0.5 * m : m;
    k = high ? k + 1.0 : k;

    // ln(m) = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172: five terms.
    const double z = (m - 1.0) / (m + 1.0);
    const double z2 = z * z;
    const double ln_m =
        2.0 * z * (1.0 + z2 * (1.0 / 3 + z2 * (1.0 / 5 + z2 * (1.0 / 7 + z2 * (1.0 / 9)))));
    double y = e * (k + ln_m * 1.4426950408889634);
    y = math::min(60.0, math::max(-60.0, y));

    // 2^y = 2^n e^r with n = round(y) and |r| <= ln(2) / 2.
    const double shifter = 6755399441055744.0;  // 1.5 2^52 rounds to an integer
    const double n = (y + shifter) - shifter;
    const double r = (y - n) * 0.6931471805599453;
    double p = 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return math::pow2(n) * p;
}

/// Ratio of the next step to the one just tried, given its error norm, for
/// a lane whose previous accepted norm was `err_prev`.
///
/// The I controller is dt_new = dt * SAFETY * err^(-1/k) with k = q + 1 for an
/// error estimate of order q. The PI controller multiplies by err_prev^(0.4/k)
/// and uses exponent 0.7/k on err (Gustafsson 1991, ACM TOMS 17(4), 533-554).
/// Zero error gives FACTOR_MAX, and a NaN error FACTOR_MIN.
template <class T>
FASTODE_HD FASTODE_INLINE T step_factor(T err_norm, int error_order, int controller,
                                        T err_prev, bool rejected_last) {
    const double k = double(error_order + 1);
    // fabs plus a tiny offset, not a select, keeps zero out of the logarithm:
    // GCC 12 does not vectorize the loop when this is written with ?: or max.
    const double norm = math::fabs(double(err_norm)) + 1e-300;
    const bool pi = controller == CONTROLLER_PI;
    // Both terms are computed in either case, so the lane loop has no branch.
    const double memory = approx_pow(double(err_prev), 0.4 / k);
    double factor = SAFETY * approx_pow(norm, (pi ? -0.7 : -1.0) / k);
    factor = pi ? factor * memory : factor;
    factor = err_norm > T(0) ? factor : FACTOR_MAX;
    factor = math::min(FACTOR_MAX, math::max(FACTOR_MIN, factor));
    // No growth right after a rejection: the rejected step showed the error
    // model is optimistic here.
    factor = rejected_last ? math::min(1.0, factor) : factor;
    return err_norm == err_norm ? T(factor) : T(FACTOR_MIN);
}

/// The smallest step that still moves t by a few units in the last place:
/// 10 eps |t| (five to ten times the spacing of floating-point numbers at t),
/// and 10 times the smallest normal number at t = 0.
template <class T>
FASTODE_HD FASTODE_INLINE T min_step(T t) {
    const T eps = sizeof(T) == 4 ? T(1.1920929e-07) : T(2.220446049250313e-16);
    const T tiny = sizeof(T) == 4 ? T(1.1754944e-38) : T(2.2250738585072014e-308);
    return T(10) * math::max(eps * math::fabs(t), tiny);
}

}  // namespace fastode
