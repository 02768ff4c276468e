// Symplectic integrators for separable Hamiltonians H = T(p) + V(q).
//
// Each method is a composition of leapfrog (kick-drift-kick) substeps of
// lengths w_i dt. Adjacent half kicks act at the same q, so they merge into
// one kick and a step costs (number of weights + 1) gradient evaluations.
#pragma once

#include "config.hpp"

namespace fastode {

FASTODE_TABLE double verlet_w[1] = {1.0};

// Yoshida (1990), Phys. Lett. A 150, 262-268, eq. (5.19) with k = 1: the
// fourth-order triple jump, also derived by Forest and Ruth (1990).
FASTODE_TABLE double yoshida4_w[3] = {
    1.3512071919596578,   // 1 / (2 - 2^(1/3))
    -1.7024143839193153,  // -2^(1/3) / (2 - 2^(1/3))
    1.3512071919596578,
};

// Yoshida (1990), Table 1, solution A, w0 = 1 - 2 (w1 + w2 + w3), listed as
// the palindrome w3 w2 w1 w0 w1 w2 w3.
FASTODE_TABLE double yoshida6_w[7] = {
    0.784513610477560,  0.235573213359357, -1.17767998417887, 1.3151863206839063,
    -1.17767998417887,  0.235573213359357, 0.784513610477560,
};

#define FASTODE_COMPOSITION(Name, prefix, M, p)                                       \
    struct Name {                                                                      \
        static constexpr int order = p;                                                \
        static constexpr int substeps = M;                                             \
        static constexpr int evals = M + 1;                                            \
        FASTODE_HD static constexpr double w(int i) { return prefix##_w[i]; }        \
    };

/// p -= dt grad V(q), then q += dt p / m: first order, one gradient a step.
struct SymplecticEuler {
    static constexpr int order = 1;
    static constexpr int substeps = 0;
    static constexpr int evals = 1;
};
FASTODE_COMPOSITION(Verlet, verlet, 1, 2)
FASTODE_COMPOSITION(Yoshida4, yoshida4, 3, 4)
FASTODE_COMPOSITION(Yoshida6, yoshida6, 7, 6)
#undef FASTODE_COMPOSITION

/// Advances the state y = (q, p) of lane l by one step of `Method`.
template <class Method, class Lanes, class T>
FASTODE_HD FASTODE_INLINE void symplectic_step(const Lanes& lanes, int l, T* y, T dt) {
    if constexpr (Method::substeps == 0) {
        lanes.kick(l, y, dt);
        lanes.drift(l, y, dt);
    } else {
        lanes.kick(l, y, T(0.5 * Method::w(0)) * dt);
        FASTODE_UNROLL
        for (int i = 0; i < Method::substeps; ++i) {
            lanes.drift(l, y, T(Method::w(i)) * dt);
            const double next = i + 1 < Method::substeps ? Method::w(i + 1) : 0.0;
            lanes.kick(l, y, T(0.5 * (Method::w(i) + next)) * dt);
        }
    }
}

}  // namespace fastode
