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

// Shampine (1986), Math. Comp. 46(173), 135-150: the continuous extension of
// dopri5. b_j(theta) = sum_m dopri5_dense[j][m] theta^(m+1), fourth order.
FASTODE_TABLE double dopri5_dense[7][4] = {
    {1.0, -8048581381.0 / 2820520608.0, 8663915743.0 / 2820520608.0,
     -12715105075.0 / 11282082432.0},
    {0.0, 0.0, 0.0, 0.0},
    {0.0, 131558114200.0 / 32700410799.0, -68118460800.0 / 10900136933.0,
     87487479700.0 / 32700410799.0},
    {0.0, -1754552775.0 / 470086768.0, 14199869525.0 / 1410260304.0,
     -10690763975.0 / 1880347072.0},
    {0.0, 127303824393.0 / 49829197408.0, -318862633887.0 / 49829197408.0,
     701980252875.0 / 199316789632.0},
    {0.0, -282668133.0 / 205662961.0, 2019193451.0 / 616988883.0,
     -1453857185.0 / 822651844.0},
    {0.0, 40617522.0 / 29380423.0, -110615467.0 / 29380423.0, 69997945.0 / 29380423.0},
};

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
        static constexpr bool dense = false;                                         \
        FASTODE_HD static constexpr double a(int i, int j) { return prefix##_a[i][j]; } \
        FASTODE_HD static constexpr double b(int i) { return prefix##_b[i]; }      \
        FASTODE_HD static constexpr double b_err(int) { return 0.0; }              \
        FASTODE_HD static constexpr double c(int i) { return prefix##_c[i]; }      \
    };

#define FASTODE_EMBEDDED_TABLEAU(Name, prefix, S, p, q, has_dense)                   \
    struct Name {                                                                    \
        static constexpr int stages = S;                                             \
        static constexpr bool dense = has_dense;                                     \
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
// bs3 has no interpolant of its own: the cubic Hermite one is its natural
// third-order dense output.
FASTODE_EMBEDDED_TABLEAU(BS3, bs3, 4, 3, 2, false)
FASTODE_EMBEDDED_TABLEAU(Dopri5, dopri5, 7, 5, 4, true)
FASTODE_EMBEDDED_TABLEAU(Tsit5, tsit5, 7, 5, 4, true)

#undef FASTODE_FIXED_TABLEAU
#undef FASTODE_EMBEDDED_TABLEAU

/// Weight b_j(theta) of stage j in the dense output
/// y(t + theta dt) = y + dt sum_j b_j(theta) k_j.
template <class T>
FASTODE_HD FASTODE_INLINE T dense_weight(Dopri5, int j, T theta) {
    const double* p = dopri5_dense[j];
    return theta * (T(p[0]) + theta * (T(p[1]) + theta * (T(p[2]) + theta * T(p[3]))));
}

// Tsitouras (2011), the continuous extension of Tsit5, in the factored form
// that OrdinaryDiffEq.jl tabulates; fourth order, and b_j(1) = b_j.
template <class T>
FASTODE_HD FASTODE_INLINE T dense_weight(Tsit5, int j, T theta) {
    const T t = theta;
    const T t2 = t * t;
    switch (j) {
        case 0:
            return T(-1.0530884977290216) * t * (t - T(1.3299890189751412)) *
                   (t2 - T(1.4364028541716351) * t + T(0.7139816917074209));
        case 1:
            return T(0.1017) * t2 * (t2 - T(2.1966568338249754) * t + T(1.2949852507374631));
        case 2:
            return T(2.490627285651252793) * t2 *
                   (t2 - T(2.38535645472061657) * t + T(1.57803468208092486));
        case 3:
            return T(-16.54810288924490272) * (t - T(1.21712927295533244)) *
                   (t - T(0.61620406037800089)) * t2;
        case 4:
            return T(47.37952196281928122) * (t - T(1.203071208372362603)) *
                   (t - T(0.658047292653547382)) * t2;
        case 5:
            return T(-34.87065786149660974) * (t - T(1.2)) * (t - T(0.666666666666666667)) * t2;
        default:
            return T(2.5) * (t - T(1)) * (t - T(0.6)) * t2;
    }
}

/// An embedded pair stepped with a fixed dt: the same stages without the
/// error estimate. Trailing stages with zero solution weight are dropped: an
/// FSAL pair's last stage only serves the error estimate and the next step's
/// first stage, so a fixed step of dopri5 or tsit5 costs 6 evaluations of f.
template <class Tab>
struct FixedStep : Tab {
    static constexpr int stages =
        Tab::b(Tab::stages - 1) == 0.0 ? Tab::stages - 1 : Tab::stages;
    static constexpr int error_order = 0;
    static constexpr bool adaptive = false;
    static constexpr bool dense = false;
};

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
