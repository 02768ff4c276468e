// Bindings for separable Hamiltonians, one compiled kernel set per potential.
#include "dispatch.hpp"

namespace fastode::bindings {

template <class T, class Potential>
py::dict solve_potential(const Array<T>& k, const Array<T>& mass, const Array<T>& y0,
                         const Array<T>& t_eval, bool dense, const Call& call) {
    const index_t n = y0.ndim() == 2 ? y0.shape(0) : 0;
    Hamiltonian<T, Potential> sys{as_param(k, n, 1, "k"), as_param(mass, n, 1, "mass")};
    return solve_system<T>(sys, y0, t_eval, dense, call);
}

void register_hamiltonian(py::module_& m) {
    m.def(
        "solve_hamiltonian",
        [](FASTODE_CALL_PARAMS, const std::string& potential, const py::array& k,
           const py::array& mass) {
            const Call call = FASTODE_CALL;
            return with_dtype(y0, [&](auto zero) {
                using T = decltype(zero);
                Array<T> y(y0), te(t_eval), ka(k), ma(mass);
                if (potential == "harmonic") {
                    return solve_potential<T, HarmonicPotential<T>>(ka, ma, y, te, dense, call);
                }
                if (potential == "pendulum") {
                    return solve_potential<T, PendulumPotential<T>>(ka, ma, y, te, dense, call);
                }
                if (potential == "kepler") {
                    return solve_potential<T, KeplerPotential<T>>(ka, ma, y, te, dense, call);
                }
                if (potential == "henon_heiles") {
                    return solve_potential<T, HenonHeilesPotential<T>>(ka, ma, y, te, dense,
                                                                       call);
                }
                throw std::invalid_argument("fastode._core: unknown potential '" +
                                            potential + "'");
            });
        },
        FASTODE_CALL_ARGS, py::arg("potential"), py::arg("k"), py::arg("mass"));
}

}  // namespace fastode::bindings
