// Built-in right-hand sides, written once for the CPU lanes and GPU threads.
//
// Each system is a plain struct of parameter views (`Param`) with a nested
// `Lanes<W>` that copies the parameters of W trajectories into arrays indexed
// by lane and evaluates dy = f(t, y) for one lane l at a time. The drivers
// call `rhs(l, ...)` inside a loop over lanes that the compiler vectorizes,
// so one SIMD lane advances one trajectory.
#pragma once

#include "lanes.hpp"

namespace fastode {

/// dy/dt = A y + b, with A (d x d, row-major) and b shared or per trajectory.
template <class T, int D>
struct Linear {
    static constexpr int dim = D;
    Param<T> A;
    Param<T> b;
    bool has_b = false;

    template <int W>
    struct Lanes {
        static constexpr bool per_lane = true;
        T A[D * D][W];
        T b[D][W];

        FASTODE_HD void load(const Linear& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                for (int e = 0; e < D * D; ++e) A[e][l] = sys.A.at(n, e);
                for (int i = 0; i < D; ++i) b[i][l] = sys.has_b ? sys.b.at(n, i) : T(0);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(int l, T, const T* y, T* dy) const {
            FASTODE_UNROLL
            for (int i = 0; i < D; ++i) {
                T acc = b[i][l];
                FASTODE_UNROLL
                for (int j = 0; j < D; ++j) acc += A[i * D + j][l] * y[j];
                dy[i] = acc;
            }
        }
    };
};

/// x'' + b x' + k x = force cos(omega t), as the first-order system (x, v).
///
/// `Forced = false` drops the forcing term. The CPU core uses it when every
/// force is zero, because the call to cos() keeps the lane loop from
/// vectorizing.
template <class T, bool Forced = true>
struct Oscillator {
    static constexpr int dim = 2;
    Param<T> k, b, force, omega;

    template <int W>
    struct Lanes {
        static constexpr bool per_lane = true;
        T k[W], b[W], force[W], omega[W];

        FASTODE_HD void load(const Oscillator& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                k[l] = sys.k.at(n);
                b[l] = sys.b.at(n);
                force[l] = sys.force.at(n);
                omega[l] = sys.omega.at(n);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(int l, T t, const T* y, T* dy) const {
            dy[0] = y[1];
            dy[1] = -k[l] * y[0] - b[l] * y[1];
            // An unforced lane adds 0 * cos(0) = 0 even when its omega is NaN,
            // so it gives the same result whichever kernel the batch selects.
            if constexpr (Forced) {
                const T phase = force[l] != T(0) ? omega[l] * t : T(0);
                dy[1] += force[l] * math::cos(phase);
            }
        }
    };
};

/// The Lorenz system, the usual ensemble benchmark.
template <class T>
struct Lorenz {
    static constexpr int dim = 3;
    Param<T> sigma, rho, beta;

    template <int W>
    struct Lanes {
        static constexpr bool per_lane = true;
        T sigma[W], rho[W], beta[W];

        FASTODE_HD void load(const Lorenz& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                sigma[l] = sys.sigma.at(n);
                rho[l] = sys.rho.at(n);
                beta[l] = sys.beta.at(n);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(int l, T, const T* y, T* dy) const {
            dy[0] = sigma[l] * (y[1] - y[0]);
            dy[1] = y[0] * (rho[l] - y[2]) - y[1];
            dy[2] = y[0] * y[1] - beta[l] * y[2];
        }
    };
};

// --- separable Hamiltonians H = |p|^2 / (2 m) + V(q) ------------------------
//
// The state is y = (q, p) with `dof` coordinates each. A potential supplies
// grad V; `Hamiltonian` turns it into both the first-order right-hand side
// for Runge-Kutta methods and the kick and drift of symplectic methods.

/// V = k q^2 / 2.
template <class T>
struct HarmonicPotential {
    static constexpr int dof = 1;
    FASTODE_HD static FASTODE_INLINE void grad(T k, const T* q, T* g) { g[0] = k * q[0]; }
};

/// V = k (1 - cos q), the pendulum with k = g / L.
template <class T>
struct PendulumPotential {
    static constexpr int dof = 1;
    FASTODE_HD static FASTODE_INLINE void grad(T k, const T* q, T* g) {
        g[0] = k * math::sin(q[0]);
    }
};

/// V = -k / |q| in the plane, the Kepler problem with k = G M.
template <class T>
struct KeplerPotential {
    static constexpr int dof = 2;
    FASTODE_HD static FASTODE_INLINE void grad(T k, const T* q, T* g) {
        const T r2 = q[0] * q[0] + q[1] * q[1];
        const T k_over_r3 = k / (r2 * math::sqrt(r2));
        g[0] = k_over_r3 * q[0];
        g[1] = k_over_r3 * q[1];
    }
};

/// V = (x^2 + y^2) / 2 + k (x^2 y - y^3 / 3); Henon and Heiles (1964) is k = 1.
template <class T>
struct HenonHeilesPotential {
    static constexpr int dof = 2;
    FASTODE_HD static FASTODE_INLINE void grad(T k, const T* q, T* g) {
        g[0] = q[0] + k * T(2) * q[0] * q[1];
        g[1] = q[1] + k * (q[0] * q[0] - q[1] * q[1]);
    }
};

template <class T, class Potential>
struct Hamiltonian {
    static constexpr int dof = Potential::dof;
    static constexpr int dim = 2 * dof;
    Param<T> k, mass;

    template <int W>
    struct Lanes {
        static constexpr bool per_lane = true;
        T k[W], inv_mass[W];

        FASTODE_HD void load(const Hamiltonian& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                k[l] = sys.k.at(n);
                inv_mass[l] = T(1) / sys.mass.at(n);
            }
        }

        /// p -= dt grad V(q)
        FASTODE_HD FASTODE_INLINE void kick(int l, T* y, T dt) const {
            T g[dof];
            Potential::grad(k[l], y, g);
            FASTODE_UNROLL
            for (int i = 0; i < dof; ++i) y[dof + i] -= dt * g[i];
        }

        /// q += dt p / m
        FASTODE_HD FASTODE_INLINE void drift(int l, T* y, T dt) const {
            FASTODE_UNROLL
            for (int i = 0; i < dof; ++i) y[i] += dt * inv_mass[l] * y[dof + i];
        }

        FASTODE_HD FASTODE_INLINE void rhs(int l, T, const T* y, T* dy) const {
            T g[dof];
            Potential::grad(k[l], y, g);
            FASTODE_UNROLL
            for (int i = 0; i < dof; ++i) {
                dy[i] = inv_mass[l] * y[dof + i];
                dy[dof + i] = -g[i];
            }
        }
    };
};

}  // namespace fastode
