// Step-size control for embedded Runge-Kutta pairs, one lane at a time.
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

/// Controller memory of one lane.
template <class T>
struct ControllerState {
    T err_prev = T(ERR_PREV_MIN);
    bool rejected_last = false;
};

/// Ratio of the next step to the one just tried, given its error norm.
///
/// The I controller is dt_new = dt * SAFETY * err^(-1/k) with k = q + 1 for an
/// error estimate of order q. The PI controller multiplies by err_prev^(0.4/k)
/// and uses exponent 0.7/k on err (Gustafsson 1991, ACM TOMS 17(4), 533-554).
template <class T>
FASTODE_HD FASTODE_INLINE T step_factor(T err_norm, int error_order, int controller,
                                        const ControllerState<T>& state) {
    if (!(err_norm > T(0))) return T(FACTOR_MAX);
    const T k = T(error_order + 1);
    T factor;
    if (controller == CONTROLLER_PI) {
        factor = T(SAFETY) * math::pow(err_norm, T(-0.7) / k) *
                 math::pow(state.err_prev, T(0.4) / k);
    } else {
        factor = T(SAFETY) * math::pow(err_norm, T(-1) / k);
    }
    factor = math::min(T(FACTOR_MAX), math::max(T(FACTOR_MIN), factor));
    // No growth right after a rejection: the rejected step showed the error
    // model is optimistic here.
    if (state.rejected_last) factor = math::min(T(1), factor);
    return factor;
}

/// The smallest step that still moves t by a few units in the last place.
template <class T>
FASTODE_HD FASTODE_INLINE T min_step(T t, T direction) {
    const T toward = direction > 0 ? T(1e30) : T(-1e30);
    return T(10) * math::fabs(math::nextafter(t, toward) - t);
}

}  // namespace fastode
