"""fastode: integrate ordinary differential equations for millions of
trajectories at once, in compiled code."""

from ._analysis import (
    Stability,
    gradient_flow,
    linearize,
    ode_residual,
    regularized_loss,
    stability,
)
from ._info import info
from ._neural import MLP, cnf, log_prob, neural_ode
from ._solution import IntegrationError, Solution, Status, StiffnessWarning
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
    "MLP",
    "Oscillator",
    "Solution",
    "Stability",
    "Status",
    "StiffnessWarning",
    "System",
    "UserSystem",
    "cnf",
    "gradient_flow",
    "info",
    "linearize",
    "log_prob",
    "neural_ode",
    "ode",
    "ode_hamiltonian",
    "ode_residual",
    "regularized_loss",
    "solve",
    "stability",
]
