// Bindings for Oscillator and Lorenz.
#include "dispatch.hpp"

namespace fastode::bindings {

void register_systems(py::module_& m) {
    m.def(
        "solve_oscillator",
        [](FASTODE_CALL_PARAMS, const py::array& k, const py::array& b,
           const py::array& force, const py::array& omega) {
            const Call call = FASTODE_CALL;
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> ka(k), ba(b), fa(force), wa(omega);
                const index_t n = batch_size(y0);
                const Param<T> pk = as_param(ka, n, 1, "k"), pb = as_param(ba, n, 1, "b");
                const Param<T> pf = as_param(fa, n, 1, "force");
                const Param<T> pw = as_param(wa, n, 1, "omega");
                const T* f = fa.data();
                const bool forced = std::any_of(f, f + fa.size(), [](T v) { return v != T(0); });
                if (forced) {
                    Oscillator<T, true> sys{pk, pb, pf, pw};
                    return solve_system<T>(sys, Array<T>(y0), Array<T>(t_eval), dense, call);
                }
                Oscillator<T, false> sys{pk, pb, pf, pw};
                return solve_system<T>(sys, Array<T>(y0), Array<T>(t_eval), dense, call);
            });
        },
        FASTODE_CALL_ARGS, py::arg("k"), py::arg("b"), py::arg("force"), py::arg("omega"));

    m.def(
        "solve_lorenz",
        [](FASTODE_CALL_PARAMS, const py::array& sigma, const py::array& rho,
           const py::array& beta) {
            const Call call = FASTODE_CALL;
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> sa(sigma), ra(rho), ba(beta);
                const index_t n = batch_size(y0);
                Lorenz<T> sys{as_param(sa, n, 1, "sigma"), as_param(ra, n, 1, "rho"),
                              as_param(ba, n, 1, "beta")};
                return solve_system<T>(sys, Array<T>(y0), Array<T>(t_eval), dense, call);
            });
        },
        FASTODE_CALL_ARGS, py::arg("sigma"), py::arg("rho"), py::arg("beta"));
}

}  // namespace fastode::bindings
