"""The parameter level of RSFT: accept or reject parameter updates.

:class:`Metropolis` proposes Δθ ~ N(0, σ²I) (or a Langevin step, ``proposal="mala"``) on a
subset of parameters and keeps it with probability min(1, exp(-ΔL/T)): Metropolis-Hastings on
exp(-L/T), in the memory of inference. :class:`ZerothOrderSGD` is MeZO's two-point
estimate, the gradient-free method it is compared with.
"""

from rsft.param_level.metropolis import Metropolis, MetropolisStep
from rsft.param_level.params import select_parameters
from rsft.param_level.perturb import InPlaceStep
from rsft.param_level.schedules import Convergence, SigmaAdapter, TemperatureSchedule
from rsft.param_level.zeroth_order import ZerothOrderSGD

__all__ = [
    "Convergence",
    "InPlaceStep",
    "Metropolis",
    "MetropolisStep",
    "SigmaAdapter",
    "TemperatureSchedule",
    "ZerothOrderSGD",
    "select_parameters",
]
