// Bindings for Linear, compiled for each state dimension up to MAX_LINEAR_DIM
// so the matrix-vector product unrolls and stays in registers.
#include "dispatch.hpp"

namespace fastode::bindings {

constexpr int MAX_LINEAR_DIM = 8;

template <class T, int D>
py::dict solve_linear_dim(const Array<T>& A, const Array<T>& b, bool has_b,
                          const Array<T>& y0, const Array<T>& t_eval, bool dense,
                          const Call& call) {
    Linear<T, D> sys;
    const index_t n = y0.ndim() == 2 ? y0.shape(0) : 0;
    sys.A = as_param(A, n, D * D, "A");
    sys.b = as_param(b, n, D, "b");
    sys.has_b = has_b;
    return solve_system<T>(sys, y0, t_eval, dense, call);
}

template <class T, int D = 1>
py::dict solve_linear_any(int dim, const Array<T>& A, const Array<T>& b, bool has_b,
                          const Array<T>& y0, const Array<T>& t_eval, bool dense,
                          const Call& call) {
    if (dim == D) return solve_linear_dim<T, D>(A, b, has_b, y0, t_eval, dense, call);
    if constexpr (D < MAX_LINEAR_DIM) {
        return solve_linear_any<T, D + 1>(dim, A, b, has_b, y0, t_eval, dense, call);
    }
    throw std::invalid_argument("fastode._core: Linear supports 1 <= d <= " +
                                std::to_string(MAX_LINEAR_DIM) + ", got d = " +
                                std::to_string(dim));
}

void register_linear(py::module_& m) {
    m.attr("MAX_LINEAR_DIM") = MAX_LINEAR_DIM;
    m.def(
        "solve_linear",
        [](FASTODE_CALL_PARAMS, const py::array& A, const py::array& b, bool has_b) {
            const Call call = FASTODE_CALL;
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), Aa(A), ba(b);
                const int dim = int(y.ndim() == 2 ? y.shape(1) : 0);
                return solve_linear_any<T>(dim, Aa, ba, has_b, y, te, dense, call);
            });
        },
        FASTODE_CALL_ARGS, py::arg("A"), py::arg("b"), py::arg("has_b"));
}

}  // namespace fastode::bindings
