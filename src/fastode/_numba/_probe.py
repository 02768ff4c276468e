"""One checked call of the user functions before a run, so code that cannot
compile, writes out of range or leaves a component unset fails with a message
that names the function instead of corrupting memory inside a kernel."""

from __future__ import annotations

import re

import numpy as np
from numba.core.errors import NumbaError

from ._compile import cpu_jit


def probe(compiled, y0, params, t0):
    """Call each user function on the first row of y0 at t0 with bounds
    checks on; raise TypeError or ValueError on misuse."""
    if y0.shape[0] == 0:
        return
    dtype = y0.dtype
    # A value no right-hand side plausibly returns marks unwritten components.
    sentinel = dtype.type(-0.987654321 * np.finfo(dtype).max)
    y = y0[0].copy()
    p = params[0].copy()
    dof = compiled.dof
    for role, function in compiled.python.items():
        if role == "rhs":
            args = (dtype.type(t0), y, np.full(compiled.dim, sentinel, dtype), p)
            written = args[2]
        else:
            x = y[dof:] if role == "dT_dp" else y[:dof]
            args = (np.ascontiguousarray(x), np.full(dof, sentinel, dtype), p)
            written = args[1]
        result = _call_checked(compiled, role, function, args)
        _check_written(compiled, role, function, result, written, sentinel)


def _checked_build(compiled, role, function):
    key = ("probe", role)
    found = compiled._builds.get(key)
    if found is None:
        found = cpu_jit(compiled.cacheable, boundscheck=True)(function)
        compiled._builds[key] = found
    return found


def _call_checked(compiled, role, function, args):
    name = getattr(function, "__qualname__", role)
    checked = _checked_build(compiled, role, function)
    try:
        return checked(*args)
    except NumbaError as error:
        raise compile_error(name, error) from None
    except IndexError as error:
        sizes = f"dim={compiled.dim}, n_params={compiled.n_params}"
        if compiled.dof is not None:
            sizes += f", dof={compiled.dof}"
        msg = (
            f"{name} indexed an array out of range when called at t0 on the first row "
            f"of y0 ({sizes}): {error}"
        )
        raise ValueError(msg) from None
    except Exception as error:
        msg = (
            f"{name} raised {type(error).__name__} when called at t0 on the first "
            f"row of y0: {error}"
        )
        raise ValueError(msg) from error


def compile_error(name, error):
    text = str(error)
    if "complex" in text:
        return TypeError(
            f"{name} computes complex values; fastode integrates real states only. "
            "Split z = x + i y into a real state (x, y) of twice the size"
        )
    reason = _first_reason(text)
    if reason.startswith("Untyped global name") and "'function'" in reason:
        hint = "Decorate every Python function that it calls with numba.njit"
    else:
        hint = "Use scalar arithmetic, math functions and array indexing (see fastode.ode)"
    return TypeError(f"Numba cannot compile {name} in nopython mode: {reason}. {hint}")


#: ANSI colour codes, which Numba puts in its messages when it highlights them.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

#: Line starts in Numba's messages that frame the reason rather than give it:
#: "Failed in nopython mode pipeline (step: ...)" comes first, then source
#: excerpts and "During: ..." context.
FRAMING_PREFIXES = ("-", "File", "During:", "^", ">", "Failed in ")


def _first_reason(text: str) -> str:
    for line in ANSI_ESCAPE.sub("", text).splitlines():
        line = line.strip()
        if line and not line.startswith(FRAMING_PREFIXES):
            return line.rstrip(".:")
    return "unknown reason"


def _check_written(compiled, role, function, result, written, sentinel):
    name = getattr(function, "__qualname__", role)
    if result is not None:
        msg = (
            f"{name} returned a value of type {type(result).__name__}; it must write "
            "its result into the output array argument and return None"
        )
        raise TypeError(msg)
    missing = np.flatnonzero(written == sentinel)
    if missing.size:
        target = "dy" if role == "rhs" else "out"
        msg = (
            f"{name} did not write {target}[{', '.join(str(i) for i in missing)}] of "
            f"{target} (length {written.shape[0]}); it must set every component"
        )
        raise ValueError(msg)
