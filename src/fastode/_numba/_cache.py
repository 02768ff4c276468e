"""On-disk caching of Numba builds of closures.

Numba's own cache key pickles a closure's cell contents, and a pickled
dispatcher carries a random per-process id. Every kernel built here is a
closure over the user's compiled function and a method's coefficients, so
it would miss the cache in each new process. `ClosureCache` keys on a
fingerprint instead: the bytecode of the function and, recursively, of every
dispatcher, function, array and scalar it closes over or reads as a global.

Numba's own index is stamped with the source file of the cached function,
which here is a fastode module, so an edit to the user's file reaches the
key only through the fingerprint. That is why globals count: a helper
function or a constant that the right-hand side reads by name is compiled
into the kernel.
"""

from __future__ import annotations

import hashlib
import types

import numpy as np
from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic


class Unfingerprintable(Exception):
    """A closure contains a value whose identity cannot be hashed stably."""


class ClosureCache(FunctionCache):
    """A `FunctionCache` whose index key is `fingerprint(py_func)`."""

    def __init__(self, py_func, key):
        super().__init__(py_func)
        self._fingerprint = key

    def _index_key(self, sig, codegen):
        return (sig, codegen.magic_tuple(), self._fingerprint)


def enable(dispatcher: Dispatcher) -> bool:
    """Cache `dispatcher` on disk under a stable key; return False (and leave
    it uncached) when its closure contains something without a stable key."""
    try:
        key = fingerprint(dispatcher.py_func)
    except Unfingerprintable:
        return False
    # The options (boundscheck, parallel) change the machine code but not the
    # bytecode, so they are part of the key.
    key += repr(sorted(dispatcher.targetoptions.items()))
    dispatcher._cache = ClosureCache(dispatcher.py_func, key)
    return True


def fingerprint(function) -> str:
    digest = hashlib.sha256()
    _update(digest, function, depth=0, seen=set())
    return digest.hexdigest()


def _update_code(digest, code):
    # Not marshal.dumps: its output depends on reference counts, which differ
    # between processes.
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            _update_code(digest, constant)
        else:
            digest.update(f"{type(constant).__name__}:{constant!r}".encode())


def _global_names(code):
    """Names that `code` and the code objects nested in it look up, which
    include every global it reads (and attribute names, which do no harm)."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _update_globals(digest, function, depth, seen):
    namespace = function.__globals__
    for name in sorted(_global_names(function.__code__)):
        if name not in namespace:
            continue
        value = namespace[name]
        digest.update(f"global:{name}=".encode())
        if isinstance(value, types.ModuleType):
            digest.update(f"module:{value.__name__}".encode())
        else:
            _update(digest, value, depth + 1, seen)


def _update(digest, value, depth, seen):
    if depth > 20:
        raise Unfingerprintable("closures nest too deeply")
    if isinstance(value, (Dispatcher, types.FunctionType)):
        # A recursive function or two functions that call each other.
        if id(value) in seen:
            digest.update(b"seen")
            return
        seen.add(id(value))
    if isinstance(value, Dispatcher):
        digest.update(b"dispatcher")
        digest.update(repr(sorted(value.targetoptions.items())).encode())
        _update(digest, value.py_func, depth + 1, seen)
    elif isinstance(value, types.FunctionType):
        # The module matters beyond the code: a cached build reloads its
        # environment by importing the module of the function's globals.
        digest.update(f"function:{value.__module__}.{value.__qualname__}".encode())
        _update_code(digest, value.__code__)
        for cell in value.__closure__ or ():
            _update(digest, cell.cell_contents, depth + 1, seen)
        _update_globals(digest, value, depth, seen)
    elif isinstance(value, _Intrinsic):
        # The lowering is Python code that builds LLVM IR, so its bytecode
        # identifies it.
        digest.update(f"intrinsic:{value._name}".encode())
        _update(digest, value._defn, depth + 1, seen)
    elif isinstance(value, np.ndarray):
        digest.update(f"array{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _update(digest, item, depth + 1, seen)
    elif isinstance(value, (bool, int, float, str, bytes, np.generic)) or value is None:
        digest.update(f"{type(value).__name__}:{value!r}".encode())
    elif isinstance(value, (types.BuiltinFunctionType, np.ufunc, type)):
        # Library code such as math.sin, np.exp or np.float64, named by its
        # module, which an edit to the user's file cannot change.
        module = getattr(value, "__module__", None) or type(value).__module__
        digest.update(f"library:{module}.{value.__name__}".encode())
    elif type(value).__module__.startswith("numba.core.types"):
        digest.update(f"numbatype:{value}".encode())
    else:
        raise Unfingerprintable(f"cannot fingerprint {type(value).__name__}")
