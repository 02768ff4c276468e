"""CUDA C++ source of the GPU kernels, generated from the shipped headers.

Each kernel is one ``extern "C" __global__`` function per (method, system,
dtype). It includes ``fastode/integrate.hpp``, ``fastode/systems.hpp`` and
``fastode/mlp.hpp`` and calls the same driver as the C++ core, ``fixed_block`` or ``adaptive_block``,
with one lane (W = 1): thread ``i`` integrates trajectory ``i``. No
coefficient is written here; the tableaus come from the headers.

This module needs neither CuPy nor a GPU, so the NVRTC compile test and the
runtime path share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._validation import METHODS

__all__ = [
    "KernelSpec",
    "all_kernel_specs",
    "mlp_kernel_specs",
    "compile_options",
    "include_dir",
    "kernel_source",
    "system_key",
]

DTYPES = ("float32", "float64")
_CTYPE = {"float32": "float", "float64": "double"}

#: C++ driver call of each method: (driver, stepper or tableau type).
_DRIVERS = {
    "euler": ("fixed_block", "fastode::RKStep<fastode::Euler>"),
    "midpoint": ("fixed_block", "fastode::RKStep<fastode::Midpoint>"),
    "heun": ("fixed_block", "fastode::RKStep<fastode::Heun>"),
    "rk4": ("fixed_block", "fastode::RKStep<fastode::RK4>"),
    "bs3": ("adaptive_block", "fastode::BS3"),
    "dopri5": ("adaptive_block", "fastode::Dopri5"),
    "tsit5": ("adaptive_block", "fastode::Tsit5"),
    "bs3_fixed": ("fixed_block", "fastode::RKStep<fastode::FixedStep<fastode::BS3>>"),
    "dopri5_fixed": ("fixed_block", "fastode::RKStep<fastode::FixedStep<fastode::Dopri5>>"),
    "tsit5_fixed": ("fixed_block", "fastode::RKStep<fastode::FixedStep<fastode::Tsit5>>"),
    "symplectic_euler": (
        "fixed_block",
        "fastode::SymplecticStep<fastode::SymplecticEuler>",
    ),
    "verlet": ("fixed_block", "fastode::SymplecticStep<fastode::Verlet>"),
    "yoshida4": ("fixed_block", "fastode::SymplecticStep<fastode::Yoshida4>"),
    "yoshida6": ("fixed_block", "fastode::SymplecticStep<fastode::Yoshida6>"),
}

#: Largest d of `Linear` with a compiled kernel, as in the C++ core.
MAX_LINEAR_DIM = 8
#: Largest d of `MLP` with a GPU kernel: the compile-time dimensions of the
#: C++ core (``fastode._core.MAX_MLP_DIM``). The core's run-time-dimension
#: drivers for wider fields keep their buffers in std::vector, so they are
#: CPU only.
MAX_MLP_DIM = 8

_POTENTIALS = {
    "harmonic": "HarmonicPotential",
    "pendulum": "PendulumPotential",
    "kepler": "KeplerPotential",
    "henon_heiles": "HenonHeilesPotential",
}


@dataclass(frozen=True)
class SystemLayout:
    """Kernel layout of one built-in system.

    ``cpp_type`` is a format string with ``{T}`` for the scalar type, and
    ``params`` names the `Param` members in the order the kernel takes them.
    ``extra`` lists the kernel parameters that follow them as (name, C type
    with ``{T}`` for the scalar, statement that stores it in ``sys``).
    ``network`` marks MLP fields, which `all_kernel_specs` leaves out.
    """

    cpp_type: str
    params: tuple[str, ...]
    separable: bool = False
    extra: tuple[tuple[str, str, str], ...] = ()
    network: bool = False


#: Kernel parameters of an MLP field after the common ones: the packed
#: weights and the layer widths, shared by every thread, then the network
#: shape. The activation is a run-time value, so one kernel serves all five.
_NETWORK_PARAMS = (
    ("params", "const {T}* __restrict__", "sys.net.params = params;"),
    ("widths", "const int* __restrict__", "sys.net.widths = widths;"),
    ("n_layers", "int", "sys.net.n_layers = n_layers;"),
    ("activation", "int", "sys.net.activation = activation;"),
    ("time_input", "int", "sys.net.time_input = time_input != 0;"),
)


def _layouts() -> dict[str, SystemLayout]:
    layouts = {
        "oscillator": SystemLayout(
            "fastode::Oscillator<{T}>", ("k", "b", "force", "omega")
        ),
        "lorenz": SystemLayout("fastode::Lorenz<{T}>", ("sigma", "rho", "beta")),
    }
    for d in range(1, MAX_LINEAR_DIM + 1):
        layouts[f"linear{d}"] = SystemLayout(
            f"fastode::Linear<{{T}}, {d}>",
            ("A", "b"),
            extra=(("has_b", "int", "sys.has_b = has_b != 0;"),),
        )
    for d in range(1, MAX_MLP_DIM + 1):
        layouts[f"mlp{d}"] = SystemLayout(
            f"fastode::MLP<{{T}}, {d}>", (), extra=_NETWORK_PARAMS, network=True
        )
    for name, potential in _POTENTIALS.items():
        cpp = f"fastode::Hamiltonian<{{T}}, fastode::{potential}<{{T}}>>"
        layouts[f"hamiltonian_{name}"] = SystemLayout(
            cpp, ("k", "mass"), separable=True
        )
    return layouts


#: Every system key with a kernel, e.g. ``lorenz``, ``linear3``, ``mlp4``.
LAYOUTS = _layouts()


@dataclass(frozen=True)
class KernelSpec:
    """One kernel variant: a method, a system key and a dtype name."""

    method: str
    system: str
    dtype: str

    @property
    def name(self) -> str:
        """The kernel's C symbol, e.g. ``fastode_rk4_lorenz_float64``."""
        return f"fastode_{self.method}_{self.system}_{self.dtype}"


def system_key(system) -> str:
    """Return the kernel key of a fastode system instance.

    Raises
    ------
    ValueError
        For a `Linear` system with d above `MAX_LINEAR_DIM`, or an `MLP` with
        d above `MAX_MLP_DIM` or a layer wider than ``MLP_MAX_WIDTH``.
    TypeError
        For a system type that has no GPU kernel.
    """
    kind = type(system).__name__
    if kind == "MLP":
        return _mlp_key(system)
    if kind == "_FlowSystem":
        msg = (
            "fastode.cnf and fastode.log_prob have no per-thread GPU kernel; "
            "backend='cupy' runs them with fastode._cupy._batched"
        )
        raise TypeError(msg)
    if kind == "Linear":
        if not 1 <= system.dim <= MAX_LINEAR_DIM:
            msg = (
                f"Linear has d = {system.dim}; the cupy backend compiles "
                f"1 <= d <= {MAX_LINEAR_DIM}"
            )
            raise ValueError(msg)
        return f"linear{system.dim}"
    if kind == "Hamiltonian":
        return f"hamiltonian_{system.potential}"
    if kind in ("Oscillator", "Lorenz"):
        return kind.lower()
    msg = (
        f"backend='cupy' supports Linear, Oscillator, Lorenz, Hamiltonian and MLP, "
        f"got {kind}"
    )
    raise TypeError(msg)


def _mlp_key(mlp) -> str:
    """Return ``mlp{d}``, or raise for a field beyond the kernels' stack buffers."""
    from .. import _core

    if mlp.dim > MAX_MLP_DIM:
        msg = (
            f"MLP has d = {mlp.dim}; the cupy backend runs MLP fields with "
            f"d <= {MAX_MLP_DIM}. Use backend='cpp' for larger d"
        )
        raise ValueError(msg)
    widest = max(mlp.widths[1:])
    if widest > _core.MLP_MAX_WIDTH:
        msg = (
            f"MLP has a layer of width {widest}; the cupy backend runs layers of "
            f"width <= {_core.MLP_MAX_WIDTH}. Use backend='cpp' for wider layers"
        )
        raise ValueError(msg)
    return f"mlp{mlp.dim}"


def _method_specs(key: str, layout: SystemLayout, dtype: str) -> list[KernelSpec]:
    """Every driver of one system: each method, and each embedded pair again
    with a fixed step (``<method>_fixed``)."""
    specs = []
    for method, kind in METHODS.items():
        if kind == "symplectic" and not layout.separable:
            continue
        specs.append(KernelSpec(method, key, dtype))
        if kind == "adaptive":
            specs.append(KernelSpec(f"{method}_fixed", key, dtype))
    return specs


def all_kernel_specs(dtypes=DTYPES) -> list[KernelSpec]:
    """Return every (method, system, dtype) variant of the built-in systems.

    MLP kernels are listed by `mlp_kernel_specs`.
    """
    specs = []
    for dtype in dtypes:
        for key, layout in LAYOUTS.items():
            if not layout.network:
                specs += _method_specs(key, layout, dtype)
    return specs


def mlp_kernel_specs(dims=range(1, MAX_MLP_DIM + 1), dtypes=DTYPES) -> list[KernelSpec]:
    """Return the (method, dimension, dtype) variants of the MLP field."""
    specs = []
    for dtype in dtypes:
        for d in dims:
            key = f"mlp{d}"
            specs += _method_specs(key, LAYOUTS[key], dtype)
    return specs


def include_dir() -> Path:
    """Return the folder that contains ``fastode/integrate.hpp``.

    An installed wheel ships the headers in ``fastode/include``; a source
    checkout (``PYTHONPATH=src``) has them in ``cpp/include``.
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "include", package.parent.parent / "cpp" / "include"):
        if (candidate / "fastode" / "integrate.hpp").is_file():
            return candidate
    msg = (
        f"the fastode C++ headers were not found in {package / 'include'} or in "
        "cpp/include of a source checkout; reinstall fastode"
    )
    raise FileNotFoundError(msg)


def compile_options(headers: Path | None = None) -> tuple[str, ...]:
    """NVRTC options shared by the runtime path and the compile test."""
    headers = include_dir() if headers is None else headers
    return ("-std=c++17", f"-I{headers}")


#: Parameters every kernel takes before the system's own, in launch order:
#: (name, C type with ``{T}`` for the scalar, struct member it fills). Each
#: ``prob`` member goes into `fastode::Problem`, each ``res`` member into
#: `fastode::Results`; ``n`` bounds the thread index only.
_COMMON_PARAMS = (
    ("y0", "const {T}* __restrict__", "prob"),
    ("t_eval", "const {T}* __restrict__", "prob"),
    ("n_eval", "long long", "prob"),
    ("n", "long long", None),
    ("t0", "{T}", "prob"),
    ("t1", "{T}", "prob"),
    ("dt", "{T}", "prob"),
    ("rtol", "{T}", "prob"),
    ("atol", "{T}", "prob"),
    ("max_steps", "long long", "prob"),
    ("controller", "int", "prob"),
    ("y", "{T}* __restrict__", "res"),
    ("t_final", "{T}* __restrict__", "res"),
    ("status", "signed char* __restrict__", "res"),
    ("n_steps", "long long* __restrict__", "res"),
    ("n_accepted", "long long* __restrict__", "res"),
    ("n_rejected", "long long* __restrict__", "res"),
    ("n_rhs", "long long* __restrict__", "res"),
)

_PREAMBLE = """\
#include "fastode/integrate.hpp"
#include "fastode/mlp.hpp"
#include "fastode/systems.hpp"
"""


def _kernel(spec: KernelSpec) -> str:
    ctype = _CTYPE[spec.dtype]
    layout = LAYOUTS[spec.system]
    sys_type = layout.cpp_type.format(T=ctype)
    driver, stepper = _DRIVERS[spec.method]

    params = [f"    {c_type.format(T=ctype)} {name}" for name, c_type, _ in _COMMON_PARAMS]
    for name in layout.params:
        params.append(f"    const {ctype}* {name}, long long {name}_stride")
    params += [f"    {c_type.format(T=ctype)} {name}" for name, c_type, _ in layout.extra]
    members = [
        f"    {struct}.{name} = {name};"
        for name, _, struct in _COMMON_PARAMS
        if struct is not None
    ]
    for name in layout.params:
        members += [f"    sys.{name}.data = {name};", f"    sys.{name}.stride = {name}_stride;"]
    members += [f"    {statement}" for _, _, statement in layout.extra]

    # One thread per trajectory; a W = 1 block is exactly one trajectory.
    body = [
        f'extern "C" __global__ void {spec.name}(',
        ",\n".join(params) + ") {",
        "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
        "    if (i >= n) return;",
        f"    fastode::Problem<{ctype}> prob;",
        f"    fastode::Results<{ctype}> res;",
        f"    {sys_type} sys;",
        *members,
        f"    fastode::{driver}<{stepper}, {sys_type}, {ctype}, 1>(sys, prob, res, i, 1);",
        "}",
    ]
    return "\n".join(body) + "\n"


def kernel_source(specs) -> str:
    """CUDA C++ source that defines the kernel of every spec in ``specs``."""
    return _PREAMBLE + "\n" + "\n".join(_kernel(spec) for spec in specs)
