"""fastode: integrate ordinary differential equations for millions of
trajectories at once, in compiled code."""

from ._solution import IntegrationError, Solution, Status
from ._solve import solve
from ._systems import Hamiltonian, Linear, Lorenz, Oscillator, System
from ._user import UserSystem, ode, ode_hamiltonian
from ._validation import METHODS

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Hamiltonian",
    "IntegrationError",
    "Linear",
    "Lorenz",
    "Oscillator",
    "Solution",
    "Status",
    "System",
    "UserSystem",
    "ode",
    "ode_hamiltonian",
    "solve",
]
