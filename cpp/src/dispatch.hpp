// Glue between NumPy arrays and the header-only drivers: argument unpacking,
// method dispatch and the OpenMP loop over blocks.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastode/integrate.hpp"
#include "fastode/systems.hpp"

namespace fastode::bindings {

namespace py = pybind11;

/// Lanes per block: four 512-bit registers of T. Several independent vectors
/// per operation hide the latency of the dependent arithmetic inside a step.
/// On the rk4 oscillator, 32 float64 lanes ran 1.3x faster than 16 and 2.4x
/// faster than 8 (AMD EPYC, AVX-512, GCC 12).
template <class T>
constexpr int lanes_for() {
    return 256 / int(sizeof(T));
}

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

/// A parameter array of shape (1, ...) shared by all trajectories, or (N, ...).
template <class T>
Param<T> as_param(const Array<T>& values) {
    Param<T> p;
    p.data = values.data();
    const index_t rows = values.ndim() == 0 ? 1 : values.shape(0);
    p.stride = rows <= 1 ? 0 : index_t(values.size()) / rows;
    return p;
}

/// The same, after checking that `values` has 1 or n rows of `per_row`
/// numbers each, so the kernels never read past its end.
template <class T>
Param<T> as_param(const Array<T>& values, index_t n, index_t per_row, const char* name) {
    const index_t rows = values.ndim() == 0 ? 1 : values.shape(0);
    const bool rows_ok = rows == 1 || rows == n;
    if (!rows_ok || index_t(values.size()) != rows * per_row) {
        throw std::invalid_argument(
            std::string("fastode._core: ") + name + " must have 1 or " + std::to_string(n) +
            " rows of " + std::to_string(per_row) + " values, got " +
            std::to_string(values.size()) + " values in " + std::to_string(rows) + " rows");
    }
    return as_param(values);
}

/// Number of trajectories in y0, or 0 when y0 is not 2-D (solve_system
/// rejects that shape).
inline index_t batch_size(const py::array& y0) { return y0.ndim() == 2 ? y0.shape(0) : 0; }

/// Common arguments of every `solve_*` binding, in the order Python passes them.
struct Call {
    std::string method;
    double t0, t1, dt, rtol, atol;
    index_t max_steps;
    int controller;
    int threads;
};

template <class T>
struct Outputs {
    Array<T> y, t_final;
    py::array_t<signed char> status;
    py::array_t<index_t> n_steps, n_accepted, n_rejected, n_rhs;

    Outputs(index_t n, index_t n_out, int dim)
        : y({n, n_out, index_t(dim)}), t_final(n), status(n), n_steps(n),
          n_accepted(n), n_rejected(n), n_rhs(n) {}

    Results<T> view() {
        Results<T> r;
        r.y = y.mutable_data();
        r.t_final = t_final.mutable_data();
        r.status = status.mutable_data();
        r.n_steps = n_steps.mutable_data();
        r.n_accepted = n_accepted.mutable_data();
        r.n_rejected = n_rejected.mutable_data();
        r.n_rhs = n_rhs.mutable_data();
        return r;
    }

    py::dict as_dict() const {
        py::dict d;
        d["y"] = y;
        d["t_final"] = t_final;
        d["status"] = status;
        d["n_steps"] = n_steps;
        d["n_accepted"] = n_accepted;
        d["n_rejected"] = n_rejected;
        d["n_rhs"] = n_rhs;
        return d;
    }
};

/// Runs `block(first, count)` over every block of W trajectories. Blocks are
/// independent, so the schedule never changes a result.
template <int W, class Block>
void for_each_block(index_t n, int threads, const Block& block) {
    const index_t n_blocks = (n + W - 1) / W;
    // More threads than blocks would only start idle threads.
    threads = int(std::max<index_t>(1, std::min<index_t>(threads, n_blocks)));
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads)
    for (index_t b = 0; b < n_blocks; ++b) {
        const index_t first = b * W;
        block(first, int(std::min<index_t>(W, n - first)));
    }
}

template <class Sys>
struct is_hamiltonian : std::false_type {};
template <class T, class P>
struct is_hamiltonian<Hamiltonian<T, P>> : std::true_type {};

/// Calls `fixed(Tab{})` or `adaptive(Tab{})` with the Runge-Kutta tableau that
/// `method` names and returns true, or returns false for any other name. Every
/// dispatcher reads the Runge-Kutta method names from this one list.
template <class Fixed, class Adaptive>
bool with_rk_tableau(const std::string& method, const Fixed& fixed, const Adaptive& adaptive) {
    const auto run = [](const auto& driver, auto tableau) {
        driver(tableau);
        return true;
    };
    if (method == "euler") return run(fixed, Euler{});
    if (method == "midpoint") return run(fixed, Midpoint{});
    if (method == "heun") return run(fixed, Heun{});
    if (method == "rk4") return run(fixed, RK4{});
    if (method == "bs3") return run(adaptive, BS3{});
    if (method == "dopri5") return run(adaptive, Dopri5{});
    if (method == "tsit5") return run(adaptive, Tsit5{});
    if (method == "bs3_fixed") return run(fixed, FixedStep<BS3>{});
    if (method == "dopri5_fixed") return run(fixed, FixedStep<Dopri5>{});
    if (method == "tsit5_fixed") return run(fixed, FixedStep<Tsit5>{});
    return false;
}

/// Throws for a method name that the Python layer rejects first, so reaching
/// it means a binding was called directly with an unknown name.
[[noreturn]] inline void reject_method(const std::string& method, const char* what) {
    throw std::invalid_argument("fastode._core: method '" + method +
                                "' is not available for " + what);
}

/// Integrates every block of `sys` with the driver for `call.method`.
template <class T, class Sys, int W>
void run_method(const Sys& sys, const Problem<T>& prob, const Results<T>& res, index_t n,
                const Call& call) {
    auto fixed = [&](auto stepper) {
        using Stepper = decltype(stepper);
        for_each_block<W>(n, call.threads, [&](index_t first, int count) {
            fixed_block<Stepper, Sys, T, W>(sys, prob, res, first, count);
        });
    };
    auto fixed_rk = [&](auto tableau) { fixed(RKStep<decltype(tableau)>{}); };
    auto adaptive = [&](auto tableau) {
        using Tab = decltype(tableau);
        for_each_block<W>(n, call.threads, [&](index_t first, int count) {
            adaptive_block<Tab, Sys, T, W>(sys, prob, res, first, count);
        });
    };

    const std::string& m = call.method;
    if (with_rk_tableau(m, fixed_rk, adaptive)) return;
    if constexpr (is_hamiltonian<Sys>::value) {
        if (m == "symplectic_euler") return fixed(SymplecticStep<SymplecticEuler>{});
        if (m == "verlet") return fixed(SymplecticStep<Verlet>{});
        if (m == "yoshida4") return fixed(SymplecticStep<Yoshida4>{});
        if (m == "yoshida6") return fixed(SymplecticStep<Yoshida6>{});
    }
    reject_method(m, "this system");
}

/// Checks that y0 is (N, dim), calls `run(prob, res, n)` without the GIL to
/// integrate its N rows and returns the output arrays as a dict.
template <class T, class Run>
py::dict solve_rows(const Array<T>& y0, const Array<T>& t_eval, bool dense, const Call& call,
                    int dim, const Run& run) {
    if (y0.ndim() != 2 || y0.shape(1) != dim) {
        throw std::invalid_argument("fastode._core: y0 must have shape (N, " +
                                    std::to_string(dim) + ")");
    }
    const index_t n = y0.shape(0);

    Problem<T> prob;
    prob.t0 = T(call.t0);
    prob.t1 = T(call.t1);
    prob.dt = T(call.dt);
    prob.rtol = T(call.rtol);
    prob.atol = T(call.atol);
    prob.max_steps = call.max_steps;
    prob.controller = call.controller;
    prob.t_eval = t_eval.data();
    prob.n_eval = dense ? index_t(t_eval.size()) : 0;
    prob.y0 = y0.data();

    Outputs<T> out(n, prob.n_out(), dim);
    Results<T> res = out.view();
    {
        py::gil_scoped_release release;
        run(prob, res, n);
    }
    return out.as_dict();
}

/// Integrates N trajectories of `sys` and returns the output arrays as a dict.
template <class T, class Sys>
py::dict solve_system(const Sys& sys, const Array<T>& y0, const Array<T>& t_eval,
                      bool dense, const Call& call) {
    return solve_rows<T>(y0, t_eval, dense, call, Sys::dim,
                         [&](const Problem<T>& prob, const Results<T>& res, index_t n) {
                             run_method<T, Sys, lanes_for<T>()>(sys, prob, res, n, call);
                         });
}

}  // namespace fastode::bindings

namespace fastode::bindings {

/// Calls `body(T{})` with T the floating type of `y0` (float32 or float64).
template <class Body>
py::dict with_dtype(const py::array& y0, const Body& body) {
    // isinstance compares dtypes by equivalence: an unpickled array carries
    // an equal float64 dtype that is a different object from the canonical one.
    if (py::isinstance<py::array_t<float>>(y0)) return body(float{});
    if (py::isinstance<py::array_t<double>>(y0)) return body(double{});
    throw py::type_error("fastode._core: y0 must be float32 or float64");
}

/// The keyword arguments shared by every `solve_*` binding.
#define FASTODE_CALL_ARGS                                                              \
    py::arg("y0"), py::arg("t_eval"), py::arg("dense"), py::kw_only(),                 \
        py::arg("method"), py::arg("t0"), py::arg("t1"), py::arg("dt"),                \
        py::arg("rtol"), py::arg("atol"), py::arg("max_steps"), py::arg("controller"), \
        py::arg("threads")

#define FASTODE_CALL_PARAMS                                                             \
    const py::array &y0, const py::array &t_eval, bool dense, const std::string &method, \
        double t0, double t1, double dt, double rtol, double atol, index_t max_steps,   \
        int controller, int threads

#define FASTODE_CALL                                                                   \
    Call { method, t0, t1, dt, rtol, atol, max_steps, controller, threads }

}  // namespace fastode::bindings
