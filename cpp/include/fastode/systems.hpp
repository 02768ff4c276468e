// Built-in right-hand sides, written once for the CPU lanes and GPU threads.
//
// Each system is a plain struct of parameter views (`Param`) with a nested
// `Lanes<W>` that copies the parameters of W trajectories into registers and
// evaluates dy = f(t, y) for all of them at once.
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
        T A[D * D][W];
        T b[D][W];

        FASTODE_HD void load(const Linear& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                for (int e = 0; e < D * D; ++e) A[e][l] = sys.A.at(n, e);
                for (int i = 0; i < D; ++i) b[i][l] = sys.has_b ? sys.b.at(n, i) : T(0);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(const T*, const LaneVec<T, D, W>& y,
                                           LaneVec<T, D, W>& dy) const {
            for (int i = 0; i < D; ++i) {
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) {
                    T acc = b[i][l];
                    for (int j = 0; j < D; ++j) acc += A[i * D + j][l] * y(j, l);
                    dy(i, l) = acc;
                }
            }
        }
    };
};

/// x'' + b x' + k x = force cos(omega t), as the first-order system (x, v).
template <class T>
struct Oscillator {
    static constexpr int dim = 2;
    Param<T> k, b, force, omega;

    template <int W>
    struct Lanes {
        T k[W], b[W], force[W], omega[W];
        // Skipping cos() for an unforced block keeps the loop vectorizable.
        bool forced;

        FASTODE_HD void load(const Oscillator& sys, index_t first, int count) {
            forced = false;
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                k[l] = sys.k.at(n);
                b[l] = sys.b.at(n);
                force[l] = sys.force.at(n);
                omega[l] = sys.omega.at(n);
                forced = forced || force[l] != T(0);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(const T* t, const LaneVec<T, 2, W>& y,
                                           LaneVec<T, 2, W>& dy) const {
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) {
                dy(0, l) = y(1, l);
                dy(1, l) = -k[l] * y(0, l) - b[l] * y(1, l);
            }
            if (!forced) return;
            for (int l = 0; l < W; ++l) dy(1, l) += force[l] * math::cos(omega[l] * t[l]);
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
        T sigma[W], rho[W], beta[W];

        FASTODE_HD void load(const Lorenz& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                sigma[l] = sys.sigma.at(n);
                rho[l] = sys.rho.at(n);
                beta[l] = sys.beta.at(n);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(const T*, const LaneVec<T, 3, W>& y,
                                           LaneVec<T, 3, W>& dy) const {
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) {
                const T x = y(0, l), u = y(1, l), z = y(2, l);
                dy(0, l) = sigma[l] * (u - x);
                dy(1, l) = x * (rho[l] - z) - u;
                dy(2, l) = x * u - beta[l] * z;
            }
        }
    };
};

// --- separable Hamiltonians H = |p|^2 / (2 m) + V(q) ------------------------
//
// The state is y = (q, p) with `dof` coordinates each. A potential supplies
// grad(V); `Hamiltonian` turns it into both the first-order right-hand side
// for Runge-Kutta methods and the kick and drift of symplectic methods.

/// V = k q^2 / 2.
template <class T>
struct HarmonicPotential {
    static constexpr int dof = 1;
    template <int W>
    FASTODE_HD static FASTODE_INLINE void grad(const T* k, const T* q, T* g, int l) {
        g[l] = k[l] * q[l];
    }
};

/// V = k (1 - cos q), the pendulum with k = g / L.
template <class T>
struct PendulumPotential {
    static constexpr int dof = 1;
    template <int W>
    FASTODE_HD static FASTODE_INLINE void grad(const T* k, const T* q, T* g, int l) {
        g[l] = k[l] * math::sin(q[l]);
    }
};

/// V = -k / |q| in the plane, the Kepler problem with k = G M.
template <class T>
struct KeplerPotential {
    static constexpr int dof = 2;
    template <int W>
    FASTODE_HD static FASTODE_INLINE void grad(const T* k, const T* q, T* g, int l) {
        const T x = q[l], y = q[W + l];
        const T r2 = x * x + y * y;
        const T inv_r3 = T(1) / (r2 * math::sqrt(r2));
        g[l] = k[l] * x * inv_r3;
        g[W + l] = k[l] * y * inv_r3;
    }
};

/// V = (x^2 + y^2) / 2 + k (x^2 y - y^3 / 3), Henon and Heiles (1964) for k = 1.
template <class T>
struct HenonHeilesPotential {
    static constexpr int dof = 2;
    template <int W>
    FASTODE_HD static FASTODE_INLINE void grad(const T* k, const T* q, T* g, int l) {
        const T x = q[l], y = q[W + l];
        g[l] = x + k[l] * T(2) * x * y;
        g[W + l] = y + k[l] * (x * x - y * y);
    }
};

template <class T, class Potential>
struct Hamiltonian {
    static constexpr int dof = Potential::dof;
    static constexpr int dim = 2 * dof;
    Param<T> k, mass;

    template <int W>
    struct Lanes {
        T k[W], inv_mass[W];

        FASTODE_HD void load(const Hamiltonian& sys, index_t first, int count) {
            for (int l = 0; l < W; ++l) {
                const index_t n = lane_source(first, count, l);
                k[l] = sys.k.at(n);
                inv_mass[l] = T(1) / sys.mass.at(n);
            }
        }

        /// g = grad V(q), where q is the first `dof` rows of y.
        FASTODE_HD FASTODE_INLINE void grad_potential(const LaneVec<T, dim, W>& y,
                                                      T* g) const {
            FASTODE_SIMD
            for (int l = 0; l < W; ++l) Potential::template grad<W>(k, y.v, g, l);
        }

        /// p -= dt grad V(q)
        FASTODE_HD FASTODE_INLINE void kick(LaneVec<T, dim, W>& y, T dt) const {
            T g[dof * W];
            grad_potential(y, g);
            for (int i = 0; i < dof; ++i) {
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) y(dof + i, l) -= dt * g[i * W + l];
            }
        }

        /// q += dt p / m
        FASTODE_HD FASTODE_INLINE void drift(LaneVec<T, dim, W>& y, T dt) const {
            for (int i = 0; i < dof; ++i) {
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) y(i, l) += dt * inv_mass[l] * y(dof + i, l);
            }
        }

        FASTODE_HD FASTODE_INLINE void rhs(const T*, const LaneVec<T, dim, W>& y,
                                           LaneVec<T, dim, W>& dy) const {
            T g[dof * W];
            grad_potential(y, g);
            for (int i = 0; i < dof; ++i) {
                FASTODE_SIMD
                for (int l = 0; l < W; ++l) {
                    dy(i, l) = inv_mass[l] * y(dof + i, l);
                    dy(dof + i, l) = -g[i * W + l];
                }
            }
        }
    };
};

}  // namespace fastode
