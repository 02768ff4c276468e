// Bindings for the MLP vector field and its continuous-normalizing-flow form,
// compiled for each state dimension up to MAX_MLP_DIM. Hidden widths are run
// time values, bounded by MLP_MAX_WIDTH.
#include "dispatch.hpp"
#include "fastode/mlp.hpp"

namespace fastode::bindings {

using namespace pybind11::literals;

constexpr int MAX_MLP_DIM = 8;

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

/// Checks the layer widths and the weight count against the state dimension,
/// so a malformed call fails here and never reads past a buffer.
template <class T>
MLPNet<T> make_net(const Array<T>& params, const NetArgs& args, int dim, bool trace) {
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
        if (w(k + 1) < 1 || w(k + 1) > MLP_MAX_WIDTH) {
            throw std::invalid_argument("fastode._core: MLP layer width " +
                                        std::to_string(w(k + 1)) + " is outside 1 .. " +
                                        std::to_string(MLP_MAX_WIDTH));
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

    m.def(
        "solve_mlp",
        [](FASTODE_CALL_PARAMS, FASTODE_NET_PARAMS) {
            const Call call = FASTODE_CALL;
            const NetArgs net{params, widths, activation, time_input};
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), p(params);
                return py::dict(with_dim(state_dim(y, false), [&](auto d) -> py::object {
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
                return py::dict(with_dim(state_dim(y, true), [&](auto d) -> py::object {
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
                return py::dict(
                    "dy"_a = with_dim(state_dim(ya, false), [&](auto d) -> py::object {
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
                return py::dict(
                    "dy"_a = with_dim(state_dim(ya, true), [&](auto d) -> py::object {
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
