// Bindings for the MLP vector field and its continuous-normalizing-flow form.
// A network with state dimension d <= MAX_MLP_DIM whose layers fit the stack
// buffers (MLP_MAX_WIDTH, MLP_MAX_HIDDEN_TOTAL, MLP_MAX_PROBES) runs on drivers
// compiled for that d. Every other network runs on the run-time dimension
// drivers of mlp_wide.hpp, with layers up to MLP_MAX_WIDE_WIDTH.
#include "dispatch.hpp"
#include "fastode/mlp.hpp"
#include "fastode/mlp_wide.hpp"

namespace fastode::bindings {

using namespace pybind11::literals;

constexpr int MAX_MLP_DIM = 8;
/// Largest layer width, the state dimension included, on the run-time
/// dimension path. It bounds the per-block buffers (a few MB per thread).
constexpr int MLP_MAX_WIDE_WIDTH = 4096;

/// The network arguments every MLP binding takes.
struct NetArgs {
    py::array params;
    py::array_t<int, py::array::c_style | py::array::forcecast> widths;
    int activation;
    bool time_input;
};

#define FASTODE_NET_PARAMS                                                          \
    const py::array &params,                                                        \
        const py::array_t<int, py::array::c_style | py::array::forcecast>&widths,  \
        int activation, bool time_input

#define FASTODE_NET_ARGS                                                      \
    py::arg("params"), py::arg("widths"), py::arg("activation"), \
        py::arg("time_input")

/// Returns whether the network fits the drivers compiled for its state
/// dimension: d <= MAX_MLP_DIM and every buffer within the stack bounds of mlp.hpp.
inline bool fits_compiled_dim(const NetArgs& args, int dim, bool trace, int n_probes) {
    const auto w = args.widths.unchecked<1>();
    const int n_layers = int(args.widths.size()) - 1;
    if (dim < 1 || dim > MAX_MLP_DIM || n_layers < 1) return false;
    int hidden_total = 0;
    for (int k = 1; k <= n_layers; ++k) {
        if (w(k) > MLP_MAX_WIDTH) return false;
        if (k < n_layers) hidden_total += w(k);
    }
    return !trace || (hidden_total <= MLP_MAX_HIDDEN_TOTAL && n_probes <= MLP_MAX_PROBES);
}

/// Checks the layer widths and the weight count against the state dimension,
/// so a malformed call fails here and never reads past a buffer. `max_width`
/// bounds every layer's output width; `trace` adds the bound on the hidden
/// units that the compiled-dimension CNF stores.
template <class T>
MLPNet<T> make_net(const Array<T>& params, const NetArgs& args, int dim, bool trace,
                   int max_width = MLP_MAX_WIDTH) {
    const auto w = args.widths.unchecked<1>();
    const int n_layers = int(args.widths.size()) - 1;
    if (n_layers < 1) throw std::invalid_argument("fastode._core: MLP needs at least one layer");
    const int n_input = dim + (args.time_input ? 1 : 0);
    if (w(0) != n_input || w(n_layers) != dim) {
        throw std::invalid_argument("fastode._core: MLP widths do not match the state dimension " +
                                    std::to_string(dim));
    }
    index_t expected = 0;
    int hidden_total = 0;
    for (int k = 0; k < n_layers; ++k) {
        if (w(k + 1) < 1 || w(k + 1) > max_width) {
            throw std::invalid_argument("fastode._core: MLP layer width " +
                                        std::to_string(w(k + 1)) + " is outside 1 .. " +
                                        std::to_string(max_width));
        }
        expected += index_t(w(k)) * w(k + 1) + w(k + 1);
        if (k + 1 < n_layers) hidden_total += w(k + 1);
    }
    if (index_t(params.size()) != expected) {
        throw std::invalid_argument("fastode._core: MLP params has " +
                                    std::to_string(params.size()) + " values, expected " +
                                    std::to_string(expected));
    }
    if (trace && hidden_total > MLP_MAX_HIDDEN_TOTAL) {
        throw std::invalid_argument("fastode._core: the MLP trace supports at most " +
                                    std::to_string(MLP_MAX_HIDDEN_TOTAL) +
                                    " hidden units in total, got " +
                                    std::to_string(hidden_total));
    }
    MLPNet<T> net;
    net.params = params.data();
    net.widths = args.widths.data();
    net.n_layers = n_layers;
    net.activation = args.activation;
    net.time_input = args.time_input;
    return net;
}

/// The settings of the trace term of a CNF.
template <class T>
struct TraceArgs {
    Array<T> probes;
    int n_probes;
    double probe_scale;
    Array<T> unit_trace;
    bool use_unit_trace;
};

template <class T, int D>
MLPTrace<T, D> make_trace_system(const Array<T>& params, const NetArgs& net,
                                 const TraceArgs<T>& tr) {
    MLPTrace<T, D> sys;
    sys.net = make_net<T>(params, net, D, true);
    if (tr.use_unit_trace) {
        if (sys.net.n_layers != 2 || tr.unit_trace.size() != net.widths.at(1)) {
            throw std::invalid_argument(
                "fastode._core: unit_trace needs one hidden layer and one value per unit");
        }
        sys.unit_trace = tr.unit_trace.data();
        return sys;
    }
    if (tr.n_probes < 1 || tr.n_probes > MLP_MAX_PROBES) {
        throw std::invalid_argument("fastode._core: n_probes must be in 1 .. " +
                                    std::to_string(MLP_MAX_PROBES));
    }
    if (tr.probes.size() % (index_t(tr.n_probes) * D) != 0) {
        throw std::invalid_argument("fastode._core: probes must have shape (N or 1, n_probes, d)");
    }
    sys.probes = as_param(tr.probes);
    sys.n_probes = tr.n_probes;
    sys.probe_scale = T(tr.probe_scale);
    return sys;
}

/// A network on the run-time dimension path; `tr` is null for a neural ODE.
template <class T>
WideMLP<T> make_wide_system(const Array<T>& params, const NetArgs& args, int d,
                            const TraceArgs<T>* tr) {
    WideMLP<T> sys;
    sys.net = make_net<T>(params, args, d, false, MLP_MAX_WIDE_WIDTH);
    sys.d = d;
    for (int k = 0; k <= sys.net.n_layers; ++k) {
        sys.max_width = std::max(sys.max_width, sys.net.widths[k]);
        if (k > 0 && k < sys.net.n_layers) sys.hidden_total += sys.net.widths[k];
    }
    if (!tr) return sys;
    if (tr->use_unit_trace) {
        if (sys.net.n_layers != 2 || tr->unit_trace.size() != args.widths.at(1)) {
            throw std::invalid_argument(
                "fastode._core: unit_trace needs one hidden layer and one value per unit");
        }
        sys.trace = WIDE_TRACE_UNIT;
        sys.unit_trace = tr->unit_trace.data();
        return sys;
    }
    if (tr->n_probes < 1 || tr->probes.size() % (index_t(tr->n_probes) * d) != 0) {
        throw std::invalid_argument(
            "fastode._core: n_probes must be positive and probes of shape (N or 1, n_probes, d)");
    }
    sys.trace = WIDE_TRACE_PROBES;
    sys.probes = as_param(tr->probes);
    sys.n_probes = tr->n_probes;
    sys.probe_scale = T(tr->probe_scale);
    return sys;
}

/// Runs the run-time dimension driver for `call.method` over every block.
template <class T>
void run_wide_method(const WideMLP<T>& sys, const Problem<T>& prob, const Results<T>& res,
                     index_t n, const Call& call) {
    constexpr int W = lanes_for<T>();
    auto fixed = [&](auto tableau) {
        using Tab = decltype(tableau);
        for_each_block<W>(n, call.threads, [&](index_t first, int count) {
            wide_fixed_block<Tab, WideMLP<T>, T, W>(sys, prob, res, first, count);
        });
    };
    auto adaptive = [&](auto tableau) {
        using Tab = decltype(tableau);
        for_each_block<W>(n, call.threads, [&](index_t first, int count) {
            wide_adaptive_block<Tab, WideMLP<T>, T, W>(sys, prob, res, first, count);
        });
    };
    const std::string& m = call.method;
    if (m == "euler") return fixed(Euler{});
    if (m == "midpoint") return fixed(Midpoint{});
    if (m == "heun") return fixed(Heun{});
    if (m == "rk4") return fixed(RK4{});
    if (m == "bs3") return adaptive(BS3{});
    if (m == "dopri5") return adaptive(Dopri5{});
    if (m == "tsit5") return adaptive(Tsit5{});
    if (m == "bs3_fixed") return fixed(FixedStep<BS3>{});
    if (m == "dopri5_fixed") return fixed(FixedStep<Dopri5>{});
    if (m == "tsit5_fixed") return fixed(FixedStep<Tsit5>{});
    throw std::invalid_argument("fastode._core: method '" + m +
                                "' is not available for an MLP field");
}

/// solve_system for the run-time dimension path.
template <class T>
py::dict solve_wide(const WideMLP<T>& sys, const Array<T>& y0, const Array<T>& t_eval,
                    bool dense, const Call& call) {
    const int dim = sys.dim();
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
        run_wide_method<T>(sys, prob, res, n, call);
    }
    return out.as_dict();
}

/// eval_system for the run-time dimension path.
template <class T>
Array<T> eval_wide(const WideMLP<T>& sys, const Array<T>& y, const Array<T>& t, int threads) {
    constexpr int W = lanes_for<T>();
    const int dim = sys.dim();
    if (y.ndim() != 2 || y.shape(1) != dim) {
        throw std::invalid_argument("fastode._core: y must have shape (N, " +
                                    std::to_string(dim) + ")");
    }
    const index_t n = y.shape(0);
    if (t.size() != 1 && index_t(t.size()) != n) {
        throw std::invalid_argument("fastode._core: t must have shape (1,) or (N,)");
    }
    Array<T> dy({n, index_t(dim)});
    const T* yp = y.data();
    const T* tp = t.data();
    T* out = dy.mutable_data();
    const bool shared_t = t.size() == 1;
    {
        py::gil_scoped_release release;
        for_each_block<W>(n, threads, [&](index_t first, int count) {
            typename WideMLP<T>::template Lanes<W> lanes;
            lanes.load(sys, first, count);
            WideVectors<T, W> v(dim, 2);
            T tb[W];
            for (int l = 0; l < W; ++l) {
                const index_t row = lane_source(first, count, l);
                for (int i = 0; i < dim; ++i) v[0][std::size_t(i) * W + l] = yp[row * dim + i];
                tb[l] = shared_t ? tp[0] : tp[row];
            }
            lanes.rhs(tb, v[0], v[1]);
            for (int l = 0; l < count; ++l) {
                for (int i = 0; i < dim; ++i) {
                    out[(first + l) * dim + i] = v[1][std::size_t(i) * W + l];
                }
            }
        });
    }
    return dy;
}

/// Evaluates f(t, y) of `sys` for every row of y (N, dim), with t of shape
/// (N,) or (1,), blocks of W rows at a time as the drivers do.
template <class T, class Sys>
Array<T> eval_system(const Sys& sys, const Array<T>& y, const Array<T>& t, int threads) {
    constexpr int D = Sys::dim;
    constexpr int W = lanes_for<T>();
    if (y.ndim() != 2 || y.shape(1) != D) {
        throw std::invalid_argument("fastode._core: y must have shape (N, " + std::to_string(D) + ")");
    }
    const index_t n = y.shape(0);
    if (t.size() != 1 && index_t(t.size()) != n) {
        throw std::invalid_argument("fastode._core: t must have shape (1,) or (N,)");
    }
    Array<T> dy({n, index_t(D)});
    const T* yp = y.data();
    const T* tp = t.data();
    T* out = dy.mutable_data();
    const bool shared_t = t.size() == 1;
    {
        py::gil_scoped_release release;
        for_each_block<W>(n, threads, [&](index_t first, int count) {
            typename Sys::template Lanes<W> lanes;
            lanes.load(sys, first, count);
            LaneVec<T, D, W> yb, fb;
            T tb[W];
            for (int l = 0; l < W; ++l) {
                const index_t row = lane_source(first, count, l);
                for (int i = 0; i < D; ++i) yb(i, l) = yp[row * D + i];
                tb[l] = shared_t ? tp[0] : tp[row];
            }
            lanes.rhs(tb, yb, fb);
            for (int l = 0; l < count; ++l) {
                for (int i = 0; i < D; ++i) out[(first + l) * D + i] = fb(i, l);
            }
        });
    }
    return dy;
}

/// Calls body(std::integral_constant<int, D>{}) for D == dim.
template <int D = 1, class Body>
py::object with_dim(int dim, const Body& body) {
    if (dim == D) return body(std::integral_constant<int, D>{});
    if constexpr (D < MAX_MLP_DIM) {
        return with_dim<D + 1>(dim, body);
    }
    throw std::invalid_argument("fastode._core: MLP supports state dimensions 1 <= d <= " +
                                std::to_string(MAX_MLP_DIM) + ", got d = " +
                                std::to_string(dim));
}

/// The state dimension of y (N, dim), less the log-density column of a CNF.
inline int state_dim(const py::array& y, bool augmented) {
    const int dim = int(y.ndim() == 2 ? y.shape(1) : 0);
    return augmented ? dim - 1 : dim;
}

void register_mlp(py::module_& m) {
    m.attr("MAX_MLP_DIM") = MAX_MLP_DIM;
    m.attr("MLP_MAX_WIDTH") = MLP_MAX_WIDTH;
    m.attr("MLP_MAX_HIDDEN_TOTAL") = MLP_MAX_HIDDEN_TOTAL;
    m.attr("MLP_MAX_PROBES") = MLP_MAX_PROBES;
    m.attr("MLP_MAX_WIDE_WIDTH") = MLP_MAX_WIDE_WIDTH;

    m.def(
        "solve_mlp",
        [](FASTODE_CALL_PARAMS, FASTODE_NET_PARAMS) {
            const Call call = FASTODE_CALL;
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), p(params);
                const int dim = state_dim(y, false);
                if (!fits_compiled_dim(net, dim, false, 0)) {
                    return solve_wide<T>(make_wide_system<T>(p, net, dim, nullptr), y, te,
                                         dense, call);
                }
                return py::dict(with_dim(dim, [&](auto d) -> py::object {
                    MLP<T, decltype(d)::value> sys;
                    sys.net = make_net<T>(p, net, d, false);
                    return solve_system<T>(sys, y, te, dense, call);
                }));
            });
        },
        FASTODE_CALL_ARGS, FASTODE_NET_ARGS);

    m.def(
        "solve_mlp_cnf",
        [](FASTODE_CALL_PARAMS, FASTODE_NET_PARAMS, const py::array& probes, int n_probes,
           double probe_scale, const py::array& unit_trace, bool use_unit_trace) {
            const Call call = FASTODE_CALL;
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), p(params);
                const TraceArgs<T> tr{Array<T>(probes), n_probes, probe_scale,
                                      Array<T>(unit_trace), use_unit_trace};
                const int dim = state_dim(y, true);
                if (!fits_compiled_dim(net, dim, true, use_unit_trace ? 1 : n_probes)) {
                    return solve_wide<T>(make_wide_system<T>(p, net, dim, &tr), y, te, dense,
                                         call);
                }
                return py::dict(with_dim(dim, [&](auto d) -> py::object {
                    const auto sys = make_trace_system<T, decltype(d)::value>(p, net, tr);
                    return solve_system<T>(sys, y, te, dense, call);
                }));
            });
        },
        FASTODE_CALL_ARGS, FASTODE_NET_ARGS, py::arg("probes"), py::arg("n_probes"),
        py::arg("probe_scale"), py::arg("unit_trace"), py::arg("use_unit_trace"));

    m.def(
        "eval_mlp",
        [](const py::array& y, const py::array& t, FASTODE_NET_PARAMS, int threads) {
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y, [&](auto zero) {
                using T = decltype(zero);
                Array<T> ya(y), ta(t), p(params);
                const int dim = state_dim(ya, false);
                if (!fits_compiled_dim(net, dim, false, 0)) {
                    const auto sys = make_wide_system<T>(p, net, dim, nullptr);
                    return py::dict("dy"_a = eval_wide<T>(sys, ya, ta, threads));
                }
                return py::dict(
                    "dy"_a = with_dim(dim, [&](auto d) -> py::object {
                        MLP<T, decltype(d)::value> sys;
                        sys.net = make_net<T>(p, net, d, false);
                        return eval_system<T>(sys, ya, ta, threads);
                    }));
            });
        },
        "Evaluate the compiled MLP field f(t, y) for every row of y.", py::arg("y"),
        py::arg("t"), FASTODE_NET_ARGS, py::arg("threads") = 1);

    m.def(
        "eval_mlp_cnf",
        [](const py::array& y, const py::array& t, FASTODE_NET_PARAMS, const py::array& probes,
           int n_probes, double probe_scale, const py::array& unit_trace, bool use_unit_trace,
           int threads) {
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y, [&](auto zero) {
                using T = decltype(zero);
                Array<T> ya(y), ta(t), p(params);
                const TraceArgs<T> tr{Array<T>(probes), n_probes, probe_scale,
                                      Array<T>(unit_trace), use_unit_trace};
                const int dim = state_dim(ya, true);
                if (!fits_compiled_dim(net, dim, true, use_unit_trace ? 1 : n_probes)) {
                    const auto sys = make_wide_system<T>(p, net, dim, &tr);
                    return py::dict("dy"_a = eval_wide<T>(sys, ya, ta, threads));
                }
                return py::dict(
                    "dy"_a = with_dim(dim, [&](auto d) -> py::object {
                        const auto sys = make_trace_system<T, decltype(d)::value>(p, net, tr);
                        return eval_system<T>(sys, ya, ta, threads);
                    }));
            });
        },
        "Evaluate the compiled CNF field (f, -trace) for every row of y.", py::arg("y"),
        py::arg("t"), FASTODE_NET_ARGS, py::arg("probes"), py::arg("n_probes"),
        py::arg("probe_scale"), py::arg("unit_trace"), py::arg("use_unit_trace"),
        py::arg("threads") = 1);
}

}  // namespace fastode::bindings
