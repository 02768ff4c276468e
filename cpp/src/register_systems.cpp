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
                const T* f = fa.data();
                const bool forced = std::any_of(f, f + fa.size(), [](T v) { return v != T(0); });
                if (forced) {
                    Oscillator<T, true> sys{as_param(ka), as_param(ba), as_param(fa),
                                            as_param(wa)};
                    return solve_system<T>(sys, Array<T>(y0), Array<T>(t_eval), dense, call);
                }
                Oscillator<T, false> sys{as_param(ka), as_param(ba), as_param(fa),
                                         as_param(wa)};
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
                Lorenz<T> sys{as_param(sa), as_param(ra), as_param(ba)};
                return solve_system<T>(sys, Array<T>(y0), Array<T>(t_eval), dense, call);
            });
        },
        FASTODE_CALL_ARGS, py::arg("sigma"), py::arg("rho"), py::arg("beta"));
}

}  // namespace fastode::bindings
