// fastode._core: the compiled CPU core. Each register_*.cpp binds one family
// of built-in systems; this file only assembles the module.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastode/symplectic.hpp"
#include "fastode/tableaus.hpp"

namespace py = pybind11;

namespace fastode::bindings {
void register_linear(py::module_& m);
void register_systems(py::module_& m);
void register_hamiltonian(py::module_& m);
void register_mlp(py::module_& m);
}  // namespace fastode::bindings

namespace {

/// The first `n` rows and columns of a stage matrix, as nested lists.
template <size_t S>
py::list rows(const double (&a)[S][S], size_t n = S) {
    py::list out;
    for (size_t i = 0; i < n; ++i) {
        py::list row;
        for (size_t j = 0; j < n; ++j) row.append(a[i][j]);
        out.append(row);
    }
    return out;
}

template <size_t S>
py::list values(const double (&v)[S], size_t n = S) {
    py::list out;
    for (size_t i = 0; i < n; ++i) out.append(v[i]);
    return out;
}

/// The coefficients of `Tab`, cut to its own stage count (a fixed step of an
/// embedded pair uses fewer stages than the pair's table holds).
template <class Tab, size_t S>
py::dict tableau(const double (&a)[S][S], const double (&b)[S], const double (&c)[S]) {
    const size_t n = size_t(Tab::stages);
    py::dict d;
    d["a"] = rows(a, n);
    d["b"] = values(b, n);
    d["c"] = values(c, n);
    d["order"] = Tab::order;
    d["error_order"] = Tab::error_order;
    d["adaptive"] = Tab::adaptive;
    return d;
}

/// The coefficients of every method, read by the Numba backend and the tests.
py::dict tableaus() {
    using namespace fastode;
    py::dict out;
    out["euler"] = tableau<Euler>(euler_a, euler_b, euler_c);
    out["midpoint"] = tableau<Midpoint>(midpoint_a, midpoint_b, midpoint_c);
    out["heun"] = tableau<Heun>(heun_a, heun_b, heun_c);
    out["rk4"] = tableau<RK4>(rk4_a, rk4_b, rk4_c);
    py::dict bs3 = tableau<BS3>(bs3_a, bs3_b, bs3_c);
    bs3["b_err"] = values(bs3_b_err);
    out["bs3"] = bs3;
    py::dict dopri5 = tableau<Dopri5>(dopri5_a, dopri5_b, dopri5_c);
    dopri5["b_err"] = values(dopri5_b_err);
    out["dopri5"] = dopri5;
    py::dict tsit5 = tableau<Tsit5>(tsit5_a, tsit5_b, tsit5_c);
    tsit5["b_err"] = values(tsit5_b_err);
    out["tsit5"] = tsit5;
    out["bs3_fixed"] = tableau<FixedStep<BS3>>(bs3_a, bs3_b, bs3_c);
    out["dopri5_fixed"] = tableau<FixedStep<Dopri5>>(dopri5_a, dopri5_b, dopri5_c);
    out["tsit5_fixed"] = tableau<FixedStep<Tsit5>>(tsit5_a, tsit5_b, tsit5_c);
    return out;
}

/// Leapfrog weights of the composition methods (symplectic Euler has none).
py::dict symplectic_weights() {
    using namespace fastode;
    py::dict out;
    out["verlet"] = py::make_tuple(values(verlet_w), Verlet::order);
    out["yoshida4"] = py::make_tuple(values(yoshida4_w), Yoshida4::order);
    out["yoshida6"] = py::make_tuple(values(yoshida6_w), Yoshida6::order);
    return out;
}

/// b_j(theta) of the dense output of `method` (dopri5 or tsit5) at each theta,
/// shape (len(theta), stages), so other backends need no copy of the numbers.
py::list dense_weights(const std::string& method, const std::vector<double>& theta) {
    py::list rows;
    for (double th : theta) {
        py::list row;
        if (method == "dopri5") {
            for (int j = 0; j < fastode::Dopri5::stages; ++j) {
                row.append(fastode::dense_weight(fastode::Dopri5{}, j, th));
            }
        } else if (method == "tsit5") {
            for (int j = 0; j < fastode::Tsit5::stages; ++j) {
                row.append(fastode::dense_weight(fastode::Tsit5{}, j, th));
            }
        } else {
            throw py::value_error("dense_weights: method must be 'dopri5' or 'tsit5', got '" +
                                  method + "'");
        }
        rows.append(row);
    }
    return rows;
}

int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "Compiled batch integrators behind fastode.solve.";
    m.def("tableaus", &tableaus);
    m.def("symplectic_weights", &symplectic_weights);
    m.def("dense_weights", &dense_weights, py::arg("method"), py::arg("theta"));
    m.def("max_threads", &max_threads, "OpenMP threads a call uses by default.");
    m.attr("openmp") = py::bool_(
#ifdef _OPENMP
        true
#else
        false
#endif
    );
    fastode::bindings::register_linear(m);
    fastode::bindings::register_systems(m);
    fastode::bindings::register_hamiltonian(m);
    fastode::bindings::register_mlp(m);
}
