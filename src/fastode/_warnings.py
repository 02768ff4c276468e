"""Warnings attributed to the user's line rather than to fastode's internals."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning]) -> None:
    """Issue a warning whose location is the first caller outside fastode.

    A fixed ``stacklevel`` breaks whenever the call depth inside the package
    changes (CPU, GPU and Dask paths differ), so the level is counted here.
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
