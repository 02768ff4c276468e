"""The result of `fastode.solve`: arrays plus per-trajectory status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = ["IntegrationError", "Solution", "Status", "StiffnessWarning"]


class Status(enum.IntEnum):
    """Outcome of one trajectory, as stored in `Solution.status`."""

    SUCCESS = 0
    MAX_STEPS = 1
    STEP_TOO_SMALL = 2
    NON_FINITE = 3
    INTERRUPTED = 4

    @property
    def message(self) -> str:
        """What happened, and what to change."""
        return _MESSAGES[self]


_MESSAGES = {
    Status.SUCCESS: "reached the end of the span",
    Status.MAX_STEPS: (
        "used max_steps steps before the end of the span; raise max_steps, loosen "
        "rtol/atol, or use a method suited to stiff problems if the system is stiff"
    ),
    Status.STEP_TOO_SMALL: (
        "the step size fell below the resolution of t; the solution may be "
        "singular there, or the problem is too stiff for an explicit method"
    ),
    Status.NON_FINITE: (
        "the state or its derivative became NaN or infinite (or started so); "
        "check the initial state and parameters of this trajectory"
    ),
    Status.INTERRUPTED: (
        "the run was stopped by KeyboardInterrupt (Ctrl-C) before this trajectory "
        "started; solve these rows again"
    ),
}


class IntegrationError(RuntimeError):
    """Raised by `Solution.raise_on_failure` when a trajectory did not succeed."""


class StiffnessWarning(RuntimeWarning):
    """Warned by `fastode.solve` when trajectories of an adaptive (explicit)
    method stop with MAX_STEPS or STEP_TOO_SMALL, as they do on stiff systems."""


@dataclass(repr=False)
class Solution:
    """Trajectories computed by `fastode.solve`.

    Attributes
    ----------
    t : ndarray, shape (T,)
        Output times: ``t_eval``, or ``[t1]`` when only the final state was kept.
    y : ndarray, shape (N, T, d) or (N, d)
        States at ``t``; (N, d) when ``t_eval`` is None. A 1-D ``y0`` drops the
        leading N axis. With ``t_eval``, times a failed trajectory never
        reached hold NaN; without it, ``y`` is the state where the trajectory
        stopped, at ``t_final``.
    status : ndarray of int8, shape (N,)
        A `Status` per trajectory; a NumPy scalar when ``y0`` was 1-D.
    t_final : ndarray, shape (N,)
        Time each trajectory reached: t1 on success, where it stopped otherwise
        (a scalar when ``y0`` was 1-D). Times are kept in the run's dtype, so
        in float32 a span far from 0 has a coarse time resolution.
    stats : dict of ndarray, shape (N,)
        ``n_steps`` (attempted), ``n_accepted``, ``n_rejected`` and ``n_rhs``
        (evaluations of f, or of grad V for symplectic methods); scalars when
        ``y0`` was 1-D.
    method : str
        The method used.
    """

    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    t_final: np.ndarray
    stats: dict = field(default_factory=dict)
    method: str = ""

    @property
    def success(self) -> bool:
        """True when every trajectory reached the end of the span."""
        return bool(np.all(self.status == Status.SUCCESS))

    def failed(self) -> np.ndarray:
        """Indices of the trajectories that did not succeed."""
        return np.flatnonzero(np.atleast_1d(self.status) != Status.SUCCESS)

    def raise_on_failure(self) -> Solution:
        """Raise `IntegrationError` naming the failed trajectories; else return self."""
        failed = self.failed()
        if failed.size == 0:
            return self
        status = np.atleast_1d(self.status)
        first = Status(int(status[failed[0]]))
        shown = ", ".join(str(i) for i in failed[:10])
        more = f" and {failed.size - 10} more" if failed.size > 10 else ""
        msg = (
            f"{failed.size} of {status.size} trajectories failed (indices {shown}{more}); "
            f"trajectory {failed[0]} {first.name}: {first.message}"
        )
        raise IntegrationError(msg)

    def __repr__(self) -> str:
        status = np.atleast_1d(self.status)
        counts = np.bincount(status.astype(np.int64), minlength=len(Status))
        summary = ", ".join(
            f"{s.name.lower()}={counts[s]}" for s in Status if counts[s] or s == Status.SUCCESS
        )
        steps = np.atleast_1d(self.stats.get("n_steps", np.zeros(0)))
        mean_steps = f"{steps.mean():.1f}" if steps.size else "n/a"
        return (
            f"Solution(method={self.method!r}, n={status.size}, t: {self.t.shape}, "
            f"y: {self.y.shape} {self.y.dtype}, status: {summary}, "
            f"mean steps {mean_steps})"
        )
