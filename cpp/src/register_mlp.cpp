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

/// The trace arguments every CNF binding takes after the network's, and the
/// TraceArgs<T> built from them.
#define FASTODE_TRACE_PARAMS                                                   \
    const py::array &probes, int n_probes, double probe_scale,                 \
        const py::array &unit_trace, bool use_unit_trace

#define FASTODE_TRACE_ARGS                                                      \
    py::arg("probes"), py::arg("n_probes"), py::arg("probe_scale"),             \
        py::arg("unit_trace"), py::arg("use_unit_trace")

#define FASTODE_TRACE(T)                                                        \
    TraceArgs<T> {                                                              \
        Array<T>(probes), n_probes, probe_scale, Array<T>(unit_trace), use_unit_trace \
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
    if (!with_rk_tableau(call.method, fixed, adaptive)) reject_method(call.method, "an MLP field");
}

/// solve_system for a network on the run-time dimension path.
template <class T>
py::dict solve_net(const WideMLP<T>& sys, const Array<T>& y0, const Array<T>& t_eval,
                   bool dense, const Call& call) {
    return solve_rows<T>(y0, t_eval, dense, call, sys.dim(),
                         [&](const Problem<T>& prob, const Results<T>& res, index_t n) {
                             run_wide_method<T>(sys, prob, res, n, call);
                         });
}

template <class T, class Sys>
py::dict solve_net(const Sys& sys, const Array<T>& y0, const Array<T>& t_eval, bool dense,
                   const Call& call) {
    return solve_system<T>(sys, y0, t_eval, dense, call);
}

/// The rows of an eval call: y (N, dim) and t (N,) or (1,), checked, and the
/// (N, dim) output. Blocks gather rows into and scatter them out of the
/// v[i * W + l] layout that LaneVec and WideVectors share.
template <class T, int W>
struct EvalRows {
    Array<T> dy;
    const T* y;
    const T* t;
    T* out;
    index_t n;
    int dim;
    bool shared_t;

    EvalRows(const Array<T>& y_rows, const Array<T>& t_rows, int dim_) : dim(dim_) {
        if (y_rows.ndim() != 2 || y_rows.shape(1) != dim) {
            throw std::invalid_argument("fastode._core: y must have shape (N, " +
                                        std::to_string(dim) + ")");
        }
        n = y_rows.shape(0);
        if (t_rows.size() != 1 && index_t(t_rows.size()) != n) {
            throw std::invalid_argument("fastode._core: t must have shape (1,) or (N,)");
        }
        dy = Array<T>({n, index_t(dim)});
        y = y_rows.data();
        t = t_rows.data();
        out = dy.mutable_data();
        shared_t = t_rows.size() == 1;
    }

    /// Fills every lane of the block, padding lanes with the last real row.
    void gather(index_t first, int count, T* yb, T* tb) const {
        for (int l = 0; l < W; ++l) {
            const index_t row = lane_source(first, count, l);
            for (int i = 0; i < dim; ++i) yb[std::size_t(i) * W + l] = y[row * dim + i];
            tb[l] = shared_t ? t[0] : t[row];
        }
    }

    void scatter(index_t first, int count, const T* fb) const {
        for (int l = 0; l < count; ++l) {
            for (int i = 0; i < dim; ++i) out[(first + l) * dim + i] = fb[std::size_t(i) * W + l];
        }
    }
};

/// Evaluates f for the rows of one block of a compiled-dimension system.
template <class T, int W, class Sys>
void eval_block(const Sys& sys, const EvalRows<T, W>& rows, index_t first, int count) {
    typename Sys::template Lanes<W> lanes;
    lanes.load(sys, first, count);
    LaneVec<T, Sys::dim, W> yb, fb;
    T tb[W];
    rows.gather(first, count, yb.v, tb);
    lanes.rhs(tb, yb, fb);
    rows.scatter(first, count, fb.v);
}

/// The same for the run-time dimension path, with heap buffers.
template <class T, int W>
void eval_block(const WideMLP<T>& sys, const EvalRows<T, W>& rows, index_t first, int count) {
    typename WideMLP<T>::template Lanes<W> lanes;
    lanes.load(sys, first, count);
    WideVectors<T, W> v(rows.dim, 2);
    T tb[W];
    rows.gather(first, count, v[0], tb);
    lanes.rhs(tb, v[0], v[1]);
    rows.scatter(first, count, v[1]);
}

template <class Sys>
int system_dim(const Sys&) {
    return Sys::dim;
}

template <class T>
int system_dim(const WideMLP<T>& sys) {
    return sys.dim();
}

/// Evaluates f(t, y) of `sys` for every row of y (N, dim), with t of shape
/// (N,) or (1,), blocks of W rows at a time as the drivers do.
template <class T, class Sys>
Array<T> eval_net(const Sys& sys, const Array<T>& y, const Array<T>& t, int threads) {
    constexpr int W = lanes_for<T>();
    const EvalRows<T, W> rows(y, t, system_dim(sys));
    {
        py::gil_scoped_release release;
        for_each_block<W>(rows.n, threads, [&](index_t first, int count) {
            eval_block<T, W>(sys, rows, first, count);
        });
    }
    return rows.dy;
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

/// Builds the system for a network on state dimension `dim` and returns
/// body(sys): the compiled-dimension system when the network fits it, else the
/// run-time dimension one. `trace` is nullptr for a neural ODE and points to
/// the trace settings for a CNF.
template <class T, class TracePtr, class Body>
py::object with_net_system(const Array<T>& params, const NetArgs& net, int dim, TracePtr trace,
                           const Body& body) {
    constexpr bool cnf = !std::is_same_v<TracePtr, std::nullptr_t>;
    int n_probes = 0;
    if constexpr (cnf) n_probes = trace->use_unit_trace ? 1 : trace->n_probes;
    if (!fits_compiled_dim(net, dim, cnf, n_probes)) {
        return body(make_wide_system<T>(params, net, dim, trace));
    }
    return with_dim(dim, [&](auto d) -> py::object {
        constexpr int D = decltype(d)::value;
        if constexpr (cnf) {
            return body(make_trace_system<T, D>(params, net, *trace));
        } else {
            MLP<T, D> sys;
            sys.net = make_net<T>(params, net, D, false);
            return body(sys);
        }
    });
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
                return py::dict(with_net_system<T>(p, net, dim, nullptr, [&](const auto& sys) {
                    return py::object(solve_net<T>(sys, y, te, dense, call));
                }));
            });
        },
        FASTODE_CALL_ARGS, FASTODE_NET_ARGS);

    m.def(
        "solve_mlp_cnf",
        [](FASTODE_CALL_PARAMS, FASTODE_NET_PARAMS, FASTODE_TRACE_PARAMS) {
            const Call call = FASTODE_CALL;
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), p(params);
                const auto tr = FASTODE_TRACE(T);
                const int dim = state_dim(y, true);
                return py::dict(with_net_system<T>(p, net, dim, &tr, [&](const auto& sys) {
                    return py::object(solve_net<T>(sys, y, te, dense, call));
                }));
            });
        },
        FASTODE_CALL_ARGS, FASTODE_NET_ARGS, FASTODE_TRACE_ARGS);

    m.def(
        "eval_mlp",
        [](const py::array& y, const py::array& t, FASTODE_NET_PARAMS, int threads) {
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y, [&](auto zero) {
                using T = decltype(zero);
                Array<T> ya(y), ta(t), p(params);
                const int dim = state_dim(ya, false);
                const auto dy = with_net_system<T>(p, net, dim, nullptr, [&](const auto& sys) {
                    return py::object(eval_net<T>(sys, ya, ta, threads));
                });
                return py::dict("dy"_a = dy);
            });
        },
        "Evaluate the compiled MLP field f(t, y) for every row of y.", py::arg("y"),
        py::arg("t"), FASTODE_NET_ARGS, py::arg("threads") = 1);

    m.def(
        "eval_mlp_cnf",
        [](const py::array& y, const py::array& t, FASTODE_NET_PARAMS, FASTODE_TRACE_PARAMS,
           int threads) {
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y, [&](auto zero) {
                using T = decltype(zero);
                Array<T> ya(y), ta(t), p(params);
                const auto tr = FASTODE_TRACE(T);
                const int dim = state_dim(ya, true);
                const auto dy = with_net_system<T>(p, net, dim, &tr, [&](const auto& sys) {
                    return py::object(eval_net<T>(sys, ya, ta, threads));
                });
                return py::dict("dy"_a = dy);
            });
        },
        "Evaluate the compiled CNF field (f, -trace) for every row of y.", py::arg("y"),
        py::arg("t"), FASTODE_NET_ARGS, FASTODE_TRACE_ARGS, py::arg("threads") = 1);
}

}  // namespace fastode::bindings
