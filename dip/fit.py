"""The fit: a generator of one ``Step`` per optimiser step, and a driver with plain hooks.

Stopping rules and observers (progress, snapshots) look at the Steps; none of them changes the optimisation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .config import FitConfig, NetConfig
from .degradations import Observation
from .nets import build_net, crop_to, make_input
from .stopping import Detector


@dataclass(frozen=True)
class Step:
    iteration: int  # steps taken so far, counting this one (1-based)
    loss: float  # data loss of ``x``, the output of the weights before this step's update
    x: torch.Tensor  # (1, C, H, W), detached
    average: torch.Tensor | None  # exponential average of the iterates up to this one, if configured
    lr: float
    rollbacks: int  # divergence rollbacks so far


class Diverged(RuntimeError):
    """The loss kept blowing up after ``max_rollbacks`` rollbacks with halved learning rates."""


class _Guard:
    """Keeps a recent healthy copy of the weights and optimiser state, and puts it back when the loss explodes.

    The paper's reference code backtracks only when it can read a PSNR and copies the weights in a way that
    does nothing on the CPU; this works from the loss alone, on any device. The losses are judged only when the
    host reads them, possibly several steps later, so a copy is taken before its step's update (``stage``) and
    kept as the healthy one only once that step's loss has been judged healthy (``accept``).
    """

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: FitConfig) -> None:
        self.net, self.optimizer, self.cfg = net, optimizer, cfg
        self.loss_average: float | None = None
        self.rollbacks = 0
        self._staged: dict[int, tuple[dict, dict]] = {}  # copies awaiting their loss's verdict, by iteration
        self._weights, self._optimizer_state = self._copy()

    def _copy(self) -> tuple[dict, dict]:
        weights = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return weights, copy.deepcopy(self.optimizer.state_dict())

    def stage(self, iteration: int) -> None:
        """Called before the update of ``iteration``: copies the state when a copy is due."""
        if iteration % self.cfg.guard_every == 0:
            self._staged[iteration] = self._copy()

    def healthy(self, iteration: int, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        # Compared with a running average, not the last value: with input jitter single losses wobble.
        jumped = (
            self.loss_average is not None
            and iteration > self.cfg.guard_every
            and loss > self.cfg.jump_factor * self.loss_average
        )
        return not jumped

    def accept(self, iteration: int, loss: float) -> None:
        self.loss_average = loss if self.loss_average is None else 0.9 * self.loss_average + 0.1 * loss
        if iteration in self._staged:
            self._weights, self._optimizer_state = self._staged.pop(iteration)

    def state_dict(self) -> dict:
        return {
            "weights": self._weights,
            "optimizer": self._optimizer_state,
            "loss_average": self.loss_average,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict) -> None:
        self._weights, self._optimizer_state = state["weights"], state["optimizer"]
        self.loss_average, self.rollbacks = state["loss_average"], state["rollbacks"]
        self._staged.clear()

    def roll_back(self) -> float:
        self.rollbacks += 1
        self._staged.clear()
        if self.rollbacks > self.cfg.max_rollbacks:
            raise Diverged(f"the loss diverged {self.rollbacks} times despite halving the learning rate")
        lr = self.optimizer.param_groups[0]["lr"] / 2
        self.net.load_state_dict(self._weights)
        self.optimizer.load_state_dict(self._optimizer_state)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr


class FitSession:
    """Everything a fit carries from one step to the next: weights, optimiser, guard, jitter generator, output
    average and step count. Saved and loaded whole, it makes a resumed fit continue exactly where it stopped."""

    def __init__(self, net: torch.nn.Module, cfg: FitConfig, generator: torch.Generator) -> None:
        self.net, self.generator = net, generator
        self.optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.guard = _Guard(net, self.optimizer, cfg)
        self.average: torch.Tensor | None = None
        self.iteration = 0  # steps taken

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "guard": self.guard.state_dict(),
            "generator": self.generator.get_state(),
            "average": self.average,
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict) -> None:
        device = next(self.net.parameters()).device
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.guard.load_state_dict(_to(state["guard"], device))
        self.generator.set_state(state["generator"])
        self.average = None if state["average"] is None else state["average"].to(device)
        self.iteration = state["iteration"]


def _to(value, device: torch.device):
    """``value`` with every tensor inside it moved to ``device`` (dicts and lists followed)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def _forward(net: torch.nn.Module, z: torch.Tensor, cfg: FitConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The net's forward as the config asks for it computed: memory layout, compilation, precision."""
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    compute = torch.compile(net) if cfg.compile else net
    if cfg.precision == "fp32":
        return compute
    autocast = torch.autocast(device_type=z.device.type, dtype=torch.bfloat16)

    def reduced(net_input: torch.Tensor) -> torch.Tensor:
        with autocast:
            return compute(net_input)

    return reduced


def iterate(
    observation: Observation,
    net: torch.nn.Module,
    z: torch.Tensor,
    cfg: FitConfig,
    *,
    generator: torch.Generator,
    session: FitSession | None = None,
) -> Iterator[Step]:
    """Fits ``net`` so that ``A(net(z))`` matches the observation; yields after every step, up to ``cfg.iterations``.

    ``generator`` draws the per-step jitter of ``z`` and must live on ``z``'s device. A ``session`` (of this
    ``net`` and ``generator``) carries the state; pass a loaded one to continue a saved fit.
    """
    height, width = observation.y.shape[-2:]
    session = session if session is not None else FitSession(net, cfg, generator)
    optimizer, guard = session.optimizer, session.guard
    net.train()
    forward = _forward(net, z, cfg)
    if cfg.channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    block_size = cfg.sync_interval(z.device.type)
    while session.iteration < cfg.iterations:
        # Up to block_size steps are queued without the host waiting for any of them; session.iteration always
        # names the step the weights have reached, so a checkpoint taken at the end of a block is whole.
        average_before = session.average
        block: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None, float]] = []
        while len(block) < block_size and session.iteration < cfg.iterations:
            iteration = session.iteration = session.iteration + 1
            net_input = z
            if cfg.reg_noise_std > 0:
                # drawn in z's shape whatever the memory layout, so that every variant sees the same noise
                noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                net_input = z + cfg.reg_noise_std * noise
            optimizer.zero_grad(set_to_none=True)
            x = crop_to(forward(net_input), height, width).float().contiguous()
            loss = observation.loss(x, cfg.loss)
            guard.stage(iteration)  # before the update: the state that gave this loss
            lr = optimizer.param_groups[0]["lr"]
            loss.backward()
            optimizer.step()
            x = x.detach()
            if cfg.average is not None:
                average = session.average
                session.average = x if average is None else average * cfg.average + x * (1 - cfg.average)
            block.append((iteration, loss.detach(), x, session.average, lr))
        losses = torch.stack([entry[1] for entry in block]).tolist()  # the block's one wait for the device
        for (iteration, _, x, average, lr), loss_value in zip(block, losses, strict=True):
            if not guard.healthy(iteration, loss_value):
                # This step and the ones queued after it are dropped; the next step is numbered as if they
                # had never been queued, and the average goes on from where it was before this step.
                guard.roll_back()
                session.iteration = iteration
                session.average = average_before
                break
            guard.accept(iteration, loss_value)
            average_before = average
            yield Step(iteration, loss_value, x, average, lr, guard.rollbacks)


@dataclass
class FitResult:
    image: torch.Tensor  # (1, C, H, W) on the CPU: what the run returns
    returned: str  # which image that is, in words, e.g. "average at iterate 840 (weight 0.99)"
    best_iteration: int  # the iteration the returned image belongs to
    iterations: int  # steps run: where the run stopped
    stop_reason: str  # "patience" | "noise floor" | "cap" | "stopped" | "interrupted" | "diverged"
    rollbacks: int
    seconds: float
    final_loss: float
    losses: list[float] = field(repr=False, default_factory=list)
    statistics: list[float] = field(repr=False, default_factory=list)  # the detector's, one per step
    loss_floor: float | None = None  # the detector's noise floor on the loss, when it had one


def fit(
    observation: Observation,
    net_cfg: NetConfig,
    fit_cfg: FitConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    detector: Detector | None = None,
    stop: Callable[[Step], bool] | None = None,
    observe: Callable[[Step], None] | None = None,
    interrupt: threading.Event | None = None,
    checkpoint_every: int = 0,
    save_checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> FitResult:
    """Runs the fit and returns the image it settles on. One ``seed`` fixes the weights, ``z`` and the jitter.

    With a ``detector`` the run ends when it fires and returns the iterate it picked (or the output average at
    that iterate, when the fit averages); without one it runs ``fit_cfg.iterations`` steps and returns the last.
    ``stop(step)`` returning True also ends the run; ``observe(step)`` sees every step. Ctrl-C, or ``interrupt``
    being set (checked between steps, on a GPU at the end of a block of queued steps, so that the state stays
    whole), ends the run and still returns the best image so far.

    Every ``checkpoint_every`` steps, and once more when interrupted, ``save_checkpoint(state)`` receives the
    whole state of the fit (tensors on the CPU); ``resume=state`` continues from such a state, and on the CPU
    gives the same result bit for bit as the run that was never stopped.
    """
    device = torch.device(device)
    channels, height, width = observation.y.shape[-3:]
    net = build_net(net_cfg, net_cfg.out_channels or channels, seed=seed).to(device)
    z = make_input(net_cfg, height, width, generator=torch.Generator().manual_seed(seed)).to(device)
    jitter = torch.Generator(device=device).manual_seed(seed + 1)
    observation = observation.to(device)
    session = FitSession(net, fit_cfg, jitter)

    last: Step | None = None
    losses: list[float] = []
    statistics: list[float] = []
    earlier_seconds = 0.0
    if resume is not None:
        session.load_state_dict(resume["session"])
        if detector is not None:
            detector.load_state_dict(_to(resume["detector"], device))
        losses, statistics = list(resume["losses"]), list(resume["statistics"])
        earlier_seconds = resume["seconds"]
        if resume.get("last") is not None:
            last = Step(**_to(resume["last"], device))

    def state(seconds: float) -> dict:
        return _to(
            {
                "session": session.state_dict(),
                "detector": None if detector is None else detector.state_dict(),
                "losses": losses,
                "statistics": statistics,
                "seconds": seconds,
                "last": None if last is None else dataclasses.asdict(last),
            },
            torch.device("cpu"),
        )

    reason = "cap"
    next_checkpoint = (session.iteration // checkpoint_every + 1) * checkpoint_every if checkpoint_every else 0
    started = time.perf_counter()
    try:
        for step in iterate(observation, net, z, fit_cfg, generator=jitter, session=session):
            last = step
            losses.append(step.loss)
            fired = detector is not None and detector.update(step)
            if detector is not None:
                statistics.append(detector.statistic)
            if observe is not None:
                observe(step)
            if fired:
                reason = detector.reason
                break
            if stop is not None and stop(step):
                reason = "stopped"
                break
            # The weights may be a few queued steps ahead of the step seen here (FitConfig.sync_every): a state
            # is saved, and an interrupt honoured, only where the two agree, so that a resumed fit is exact.
            whole = step.iteration == session.iteration
            if interrupt is not None and interrupt.is_set() and whole:
                reason = "interrupted"
                if save_checkpoint is not None:
                    save_checkpoint(state(earlier_seconds + time.perf_counter() - started))
                break
            if save_checkpoint is not None and checkpoint_every and whole and step.iteration >= next_checkpoint:
                save_checkpoint(state(earlier_seconds + time.perf_counter() - started))
                next_checkpoint = (step.iteration // checkpoint_every + 1) * checkpoint_every
    except KeyboardInterrupt:
        if last is None:
            raise
        reason = "interrupted"
    except Diverged:
        if last is None:
            raise
        reason = "diverged"
    seconds = earlier_seconds + time.perf_counter() - started
    if last is None:  # resumed from a state that had already reached the cap
        raise RuntimeError("nothing to resume: the saved fit had taken no step")

    return finished(detector, last, fit_cfg, reason, seconds, losses, statistics)


def finished(
    detector: Detector | None,
    last: Step,
    cfg: FitConfig,
    reason: str,
    seconds: float,
    losses: list[float],
    statistics: list[float],
) -> FitResult:
    """The result of a fit that has ended: the detector's pick (output average at it, when the fit averages), or
    the last step when there is no detector or it picked nothing."""
    if detector is not None and detector.best is not None:
        best_iteration, raw, average = detector.best_iteration, detector.best, detector.best_average
        where = f"iterate {best_iteration}, the {detector.name} minimum"
    else:
        best_iteration, raw, average = last.iteration, last.x, last.average
        where = f"iterate {best_iteration}, the last"
    if average is not None:
        image, returned = average, f"output average at {where} (weight {cfg.average})"
    else:
        image, returned = raw, where
    return FitResult(
        image=image.float().cpu(),
        returned=returned,
        best_iteration=best_iteration,
        iterations=last.iteration,
        stop_reason=reason,
        rollbacks=last.rollbacks,
        seconds=seconds,
        final_loss=last.loss,
        losses=list(losses),
        statistics=list(statistics),
        loss_floor=None if detector is None else detector.loss_floor,
    )
