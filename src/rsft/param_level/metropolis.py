"""The Metropolis trainer: propose Δθ, keep it with probability min(1, exp(-ΔL/T)).

This is Metropolis-Hastings on p(θ) ∝ exp(-L(θ)/T) over a chosen subset of parameters. Each
step evaluates L(θ) and L(θ + Δθ) on the same batch (the caller's closure is called twice),
flips the rule's coin with log w = -ΔL/T and log M = 0, and undoes a rejected step in place,
bit for bit (see :mod:`rsft.param_level.perturb`). No copy of the model is made: the
memory is that of inference plus one byte per tuned parameter.

``proposal="mala"`` adds the gradient (a Langevin step θ - (σ²/2)∇U + σz, U = L/T) and the
Hastings correction q(θ|θ')/q(θ'|θ) that keeps the target exact; it costs two backward
passes per step and holds two gradients at its peak (at θ, to undo the step, and at θ').

With a fixed batch (or a deterministic L) the chain samples exp(-L/T) exactly. With a new
mini-batch every step, ΔL is a noisy estimate and the chain is an approximate, noisy MH.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from rsft.param_level.params import select_parameters
from rsft.param_level.perturb import InPlaceStep
from rsft.param_level.schedules import Convergence, SigmaAdapter, TemperatureSchedule
from rsft.progress import progress_bar
from rsft.rule import accept
from rsft.seeding import stream_seed, torch_generator

Closure = Callable[[], torch.Tensor | float]

TARGET_ACCEPTANCE = {"random_walk": 0.234, "mala": 0.574}
"""The acceptance rate σ is adapted towards when the target is "auto": the optimal rates in
many dimensions of a random walk (Roberts, Gelman & Gilks 1997) and of MALA (Roberts &
Rosenthal 1998)."""


class SeededStepper:
    """Shared by the parameter-level methods: the tuned tensors, the step counter, the seeds."""

    def __init__(
        self,
        params: nn.Module | Iterable[Any],
        patterns: Sequence[str] | str | None,
        sigma: float,
        seed: int,
    ) -> None:
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(
                f"sigma must be a finite number > 0, got {sigma}: it is the standard deviation "
                "of the Gaussian perturbation (try 1e-3 to 1e-2)."
            )
        self.names, self.params = select_parameters(params, patterns)
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.t = 0  # steps taken

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def step_seed(self) -> int:
        """Step t's seed: its noise is regenerated from it, on every process alike."""
        return stream_seed(self.seed, "param_step", self.t)

    def check_seed(self, state: dict[str, Any]) -> None:
        """A saved state continues only the chain of the same seed."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"this state comes from a chain with seed {state['seed']}, not {self.seed}: "
                f"build the {type(self).__name__} with the same seed to continue it."
            )


@dataclass
class MetropolisStep:
    """What one proposal did."""

    accepted: bool
    loss: float  # L(θ) on the batch
    proposed_loss: float  # L(θ + Δθ) on the same batch
    log_alpha: float  # log of the acceptance probability's argument (before min with 0)
    sigma: float
    temperature: float


class Metropolis(SeededStepper):
    """Metropolis(-Hastings) over the parameters ``patterns`` selects (or all that require grad).

    Python API::

        mh = Metropolis(model, patterns=["classifier.*", "*.bias"], sigma=1e-2)
        for batch in batches:
            mh.step(lambda: loss_fn(model, batch))   # the same batch for both evaluations

    σ is adapted towards ``target_acceptance``: ``"auto"`` is 0.234 for the random walk and
    0.574 for MALA (:data:`TARGET_ACCEPTANCE`), ``None`` keeps σ fixed.
    """

    def __init__(
        self,
        params: nn.Module | Iterable[Any],
        *,
        patterns: Sequence[str] | str | None = None,
        sigma: float = 1e-3,
        temperature: float | TemperatureSchedule = 1.0,
        proposal: Literal["random_walk", "mala"] = "random_walk",
        target_acceptance: float | Literal["auto"] | None = "auto",
        adapt_every: int = 20,
        adapt_gain: float = 1.0,
        adapt_until: int | None = None,
        restore: Literal["exact", "subtract"] = "exact",
        seed: int = 0,
        tol: float = 0.0,
        patience: int = 0,
        grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(params, patterns, sigma, seed)
        if proposal not in ("random_walk", "mala"):
            raise ValueError(f"unknown proposal {proposal!r}: random_walk or mala.")
        if restore not in ("exact", "subtract"):
            raise ValueError(f"unknown restore {restore!r}: exact or subtract.")
        self.temperature = (
            temperature
            if isinstance(temperature, TemperatureSchedule)
            else TemperatureSchedule(start=temperature)
        )
        self.proposal = proposal
        self.exact = restore == "exact"
        if target_acceptance == "auto":
            target_acceptance = TARGET_ACCEPTANCE[proposal]
        self.adapter = SigmaAdapter(target_acceptance, adapt_every, adapt_gain, adapt_until)
        self.convergence = Convergence(tol, patience)
        self.grad_reduce = grad_reduce
        self.coins = torch_generator(self.seed, "metropolis_coins")
        self.proposed = 0
        self.accepted = 0
        self.converged = False
        if proposal == "mala":
            for p in self.params:
                p.requires_grad_(True)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else math.nan

    # ------------------------------------------------------------------------------------
    def step(self, closure: Closure) -> MetropolisStep:
        """One proposal: evaluate, perturb in place, evaluate again, accept or undo."""
        temp = self.temperature(self.t)
        propose = self._mala if self.proposal == "mala" else self._random_walk
        loss, proposed, log_alpha, move = propose(closure, temp)
        ok = bool(accept(torch.tensor([log_alpha], dtype=torch.float64), 0.0, self.coins)[0])
        move.commit() if ok else move.undo()
        self.proposed += 1
        self.accepted += int(ok)
        sigma = self.sigma
        self.sigma = self.adapter.update(self.sigma, ok, self.t)
        self.t += 1
        self.converged = self.convergence.update(proposed if ok else loss)
        return MetropolisStep(ok, loss, proposed, log_alpha, sigma, temp)

    def _random_walk(self, closure: Closure, temp: float):
        with torch.no_grad():
            loss = _value(closure())
            move = InPlaceStep(self.params, self.step_seed(), self.sigma, exact=self.exact)
            move.apply()
            proposed = _value(_undo_on_error(move, closure))
        return loss, proposed, _log_ratio(loss, proposed, temp), move

    def _mala(self, closure: Closure, temp: float):
        eps = self.sigma
        loss, g0 = self._loss_and_grad(closure)
        # θ' = θ - (ε²/2) ∇U(θ) + ε z, with U = L/T.
        move = InPlaceStep(
            self.params,
            self.step_seed(),
            eps,
            shift=g0,
            shift_scale=-0.5 * eps * eps / temp,
            exact=self.exact,
        )
        move.apply()
        proposed, g1 = _undo_on_error(move, lambda: self._loss_and_grad(closure))
        # log q(θ|θ') - log q(θ'|θ); θ - θ' + (ε²/2)∇U(θ') = -εz + (ε²/2)(∇U(θ) + ∇U(θ')).
        diff = 0.0
        with torch.no_grad():
            for i, (a, b) in enumerate(zip(g0, g1)):
                # At least float32 (in bf16 the gradient term would vanish below εz's last
                # bit), summed in float64.
                dtype = torch.promote_types(a.dtype, torch.float32)
                for z, span in move.z_pieces(i):
                    ga = (a if span is None else a.reshape(-1)[span]).to(dtype)
                    gb = (b if span is None else b.reshape(-1)[span]).to(dtype)
                    ez = z.to(dtype).mul_(eps)
                    shift = (ga + gb).mul_(0.5 * eps * eps / temp)
                    # ‖εz‖² - ‖shift - εz‖² = shift·(2εz - shift), without the cancellation.
                    diff += float(ez.mul_(2).sub_(shift).mul_(shift).sum(dtype=torch.float64))
        hastings = diff / (2 * eps * eps)
        log_alpha = _log_ratio(loss, proposed, temp)
        return loss, proposed, log_alpha + hastings if math.isfinite(log_alpha) else log_alpha, move

    def _loss_and_grad(self, closure: Closure) -> tuple[float, list[torch.Tensor]]:
        with torch.enable_grad():
            out = closure()
            if not torch.is_tensor(out) or not out.requires_grad:
                raise ValueError(
                    "proposal='mala' needs the closure to return a loss tensor that depends on "
                    "the tuned parameters (do not wrap it in torch.no_grad())."
                )
            grads = torch.autograd.grad(out, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        if self.grad_reduce is not None:
            grads = [self.grad_reduce(g) for g in grads]
        return float(out.detach()), grads

    # ------------------------------------------------------------------------------------
    def run(
        self,
        loss_fn: Callable[..., torch.Tensor | float],
        batches: Iterable[Any] | None = None,
        max_iter: int = 1000,
        progress: bool = True,
    ) -> list[MetropolisStep]:
        """Step until ``max_iter`` or convergence; ``loss_fn(batch)`` (or ``loss_fn()``).

        ``batches`` is gone through again and again (a list, a DataLoader: nothing is kept in
        memory); a one-shot iterator ends the run when it runs out.
        """
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}.")
        source = _passes(batches) if batches is not None else None
        steps: list[MetropolisStep] = []
        bar = progress_bar(range(max_iter), desc="metropolis", unit="steps", show=progress)
        for _ in bar:
            if source is None:
                steps.append(self.step(loss_fn))
            else:
                batch = next(source, _DONE)
                if batch is _DONE:
                    break
                steps.append(self.step(lambda b=batch: loss_fn(b)))
            bar.set_postfix(loss=f"{steps[-1].loss:.4f}", acc=f"{self.acceptance_rate:.0%}")
            if self.converged:
                break
        return steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "t": self.t,
            "sigma": self.sigma,
            "proposed": self.proposed,
            "accepted": self.accepted,
            "coins": self.coins.get_state(),
            "adapter": self.adapter.state_dict(),
            "convergence": self.convergence.state_dict(),
            "converged": self.converged,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_seed(state)
        self.t, self.sigma = int(state["t"]), float(state["sigma"])
        self.proposed, self.accepted = int(state["proposed"]), int(state["accepted"])
        self.coins.set_state(state["coins"])
        self.adapter.load_state_dict(state["adapter"])
        self.convergence.load_state_dict(state["convergence"])
        self.converged = bool(state.get("converged", False))


_DONE = object()


def _passes(batches: Iterable[Any]) -> Iterator[Any]:
    """Every batch, pass after pass, without keeping them; an empty first pass is an error."""
    first = True
    while True:
        seen = False
        for batch in batches:
            seen = True
            yield batch
        if not seen:
            if first:
                raise ValueError("batches is empty: give at least one batch (or None).")
            return  # a one-shot iterator has run out
        first = False


def _undo_on_error(move: InPlaceStep, evaluate: Callable[[], Any]) -> Any:
    """Evaluate at θ + Δθ; if that raises (out of memory, a bad batch), put θ back first."""
    try:
        return evaluate()
    except BaseException:
        move.undo()
        raise


def _value(x: torch.Tensor | float) -> float:
    return float(x.detach()) if torch.is_tensor(x) else float(x)


def _log_ratio(loss: float, proposed: float, temp: float) -> float:
    """log [exp(-L(θ')/T) / exp(-L(θ)/T)]; a non-finite proposed loss is never accepted."""
    if not math.isfinite(proposed):
        return -math.inf
    if not math.isfinite(loss):  # the current state is broken: any finite proposal is better
        return math.inf
    return -(proposed - loss) / temp
