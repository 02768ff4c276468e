// Butcher tableaus of the explicit Runge-Kutta methods.
//
// Convention (Hairer, Norsett and Wanner): `a` is the stage matrix, `b` the
// solution weights, `c` the nodes, and `b_err` = b - b_hat the weights of the
// embedded error estimate, so err = dt * sum_j b_err[j] k_j.
#pragma once

#include "config.hpp"

namespace fastode {

// --- fixed step -----------------------------------------------------------

FASTODE_TABLE double euler_a[1][1] = {{0.0}};
FASTODE_TABLE double euler_b[1] = {1.0};
FASTODE_TABLE double euler_c[1] = {0.0};

FASTODE_TABLE double midpoint_a[2][2] = {{0.0, 0.0}, {0.5, 0.0}};
FASTODE_TABLE double midpoint_b[2] = {0.0, 1.0};
FASTODE_TABLE double midpoint_c[2] = {0.0, 0.5};

FASTODE_TABLE double heun_a[2][2] = {{0.0, 0.0}, {1.0, 0.0}};
FASTODE_TABLE double heun_b[2] = {0.5, 0.5};
FASTODE_TABLE double heun_c[2] = {0.0, 1.0};

// Kutta (1901), the classical fourth-order method.
FASTODE_TABLE double rk4_a[4][4] = {
    {0.0, 0.0, 0.0, 0.0},
    {0.5, 0.0, 0.0, 0.0},
    {0.0, 0.5, 0.0, 0.0},
    {0.0, 0.0, 1.0, 0.0},
};
FASTODE_TABLE double rk4_b[4] = {1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0};
FASTODE_TABLE double rk4_c[4] = {0.0, 0.5, 0.5, 1.0};

// --- adaptive, embedded pairs ----------------------------------------------

// Bogacki and Shampine (1989), Appl. Math. Lett. 2(4), 321-325: 3(2) pair.
FASTODE_TABLE double bs3_a[4][4] = {
    {0.0, 0.0, 0.0, 0.0},
    {1.0 / 2.0, 0.0, 0.0, 0.0},
    {0.0, 3.0 / 4.0, 0.0, 0.0},
    {2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0},
};
FASTODE_TABLE double bs3_b[4] = {2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0};
FASTODE_TABLE double bs3_b_err[4] = {
    2.0 / 9.0 - 7.0 / 24.0,
    1.0 / 3.0 - 1.0 / 4.0,
    4.0 / 9.0 - 1.0 / 3.0,
    0.0 - 1.0 / 8.0,
};
FASTODE_TABLE double bs3_c[4] = {0.0, 1.0 / 2.0, 3.0 / 4.0, 1.0};

// Dormand and Prince (1980), J. Comput. Appl. Math. 6(1), 19-26, Table 2.
FASTODE_TABLE double dopri5_a[7][7] = {
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0, 0.0},
    {19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0, 0.0, 0.0,
     0.0},
    {9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0,
     -5103.0 / 18656.0, 0.0, 0.0},
    {35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0,
     0.0},
};
FASTODE_TABLE double dopri5_b[7] = {
    35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0,
    0.0};
FASTODE_TABLE double dopri5_b_err[7] = {
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
};
FASTODE_TABLE double dopri5_c[7] = {0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0,
                                    8.0 / 9.0, 1.0, 1.0};

// Tsitouras (2011), Comput. Math. Appl. 62(2), 770-775, Table 1; error
// weights as tabulated in OrdinaryDiffEq.jl's Tsit5 (b - b_hat).
// clang-format off
FASTODE_TABLE double tsit5_a[7][7] = {
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.161, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {-0.008480655492356989, 0.335480655492357, 0.0, 0.0, 0.0, 0.0, 0.0},
    {2.897153057105493, -6.359448489975075, 4.3622954328695815, 0.0, 0.0, 0.0, 0.0},
    {5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525, 0.0, 0.0, 0.0},
    {5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383, 0.0, 0.0},
    {0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774, 0.0},
};
FASTODE_TABLE double tsit5_b[7] = {
    0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774, 0.0};
FASTODE_TABLE double tsit5_b_err[7] = {
    0.00178001105222577714, 0.0008164344596567469, -0.007880878010261995, 0.1447110071732629,
    -0.5823571654525552, 0.45808210592918697, -1.0 / 66.0};
FASTODE_TABLE double tsit5_c[7] = {0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0};
// clang-format on

// Traits read by the integrator. `error_order` is the order of the embedded
// solution, and a method without one has error_order = 0.
#define FASTODE_FIXED_TABLEAU(Name, prefix, S, p)                                  \
    struct Name {                                                                    \
        static constexpr int stages = S;                                             \
        static constexpr int order = p;                                              \
        static constexpr int error_order = 0;                                        \
        static constexpr bool adaptive = false;                                      \
        FASTODE_HD static constexpr double a(int i, int j) { return prefix##_a[i][j]; } \
        FASTODE_HD static constexpr double b(int i) { return prefix##_b[i]; }      \
        FASTODE_HD static constexpr double b_err(int) { return 0.0; }              \
        FASTODE_HD static constexpr double c(int i) { return prefix##_c[i]; }      \
    };

#define FASTODE_EMBEDDED_TABLEAU(Name, prefix, S, p, q)                              \
    struct Name {                                                                    \
        static constexpr int stages = S;                                             \
        static constexpr int order = p;                                              \
        static constexpr int error_order = q;                                        \
        static constexpr bool adaptive = true;                                       \
        FASTODE_HD static constexpr double a(int i, int j) { return prefix##_a[i][j]; } \
        FASTODE_HD static constexpr double b(int i) { return prefix##_b[i]; }      \
        FASTODE_HD static constexpr double b_err(int i) { return prefix##_b_err[i]; } \
        FASTODE_HD static constexpr double c(int i) { return prefix##_c[i]; }      \
    };

FASTODE_FIXED_TABLEAU(Euler, euler, 1, 1)
FASTODE_FIXED_TABLEAU(Midpoint, midpoint, 2, 2)
FASTODE_FIXED_TABLEAU(Heun, heun, 2, 2)
FASTODE_FIXED_TABLEAU(RK4, rk4, 4, 4)
FASTODE_EMBEDDED_TABLEAU(BS3, bs3, 4, 3, 2)
FASTODE_EMBEDDED_TABLEAU(Dopri5, dopri5, 7, 5, 4)
FASTODE_EMBEDDED_TABLEAU(Tsit5, tsit5, 7, 5, 4)

#undef FASTODE_FIXED_TABLEAU
#undef FASTODE_EMBEDDED_TABLEAU

/// True when the last stage is evaluated at the new solution (first same as
/// last), so its derivative starts the next step for free.
template <class Tab>
FASTODE_HD constexpr bool is_fsal() {
    if (Tab::c(Tab::stages - 1) != 1.0) return false;
    for (int j = 0; j < Tab::stages; ++j) {
        if (Tab::a(Tab::stages - 1, j) != Tab::b(j)) return false;
    }
    return true;
}

}  // namespace fastode
