"""The step loop, one for every fit: K images, one net each, stepped together, with the divergence guard.

A single fit is a stack of one image and one plain net; several images of one size are one stacked net (see
``dip.parallel``) whose nets share no weight, so each image's steps are those of its single fit up to rounding.
The loop yields every judged step; whoever drives it (``dip.fit``) decides when an image is finished.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .config import FitConfig
from .nets import crop_to
from .operators import Observation
from .parallel import StackedSkipNet, select_state, stack_inputs, unstack, unstack_output


@dataclass(frozen=True)
class Step:
    iteration: int  # steps taken so far, counting this one (1-based)
    loss: float  # data loss of ``x``, the output of the weights before this step's update
    x: torch.Tensor  # (1, C, H, W), detached
    average: torch.Tensor | None  # exponential average of the iterates up to this one, if configured
    lr: float
    rollbacks: int  # divergence rollbacks so far
    statistic: float | None = None  # the stopping detector's, once it has seen this step (what observers get)


class Diverged(RuntimeError):
    """The loss kept blowing up after ``max_rollbacks`` rollbacks with halved learning rates."""


class Health:
    """The divergence rule for one image: a loss that is not finite, or jumps far above its running average.

    The paper's reference code backtracks only when it can read a PSNR and copies the weights in a way that
    does nothing on the CPU; this works from the loss alone, on any device. The stack keeps the weights' copies;
    the losses are judged only when the host reads them, possibly several steps later.
    """

    def __init__(self, cfg: FitConfig) -> None:
        self.cfg = cfg
        self.loss_average: float | None = None
        self.rollbacks = 0

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

    def accept(self, loss: float) -> None:
        self.loss_average = loss if self.loss_average is None else 0.9 * self.loss_average + 0.1 * loss

    def count_rollback(self) -> None:
        self.rollbacks += 1
        if self.rollbacks > self.cfg.max_rollbacks:
            raise Diverged(f"the loss diverged {self.rollbacks} times despite halving the learning rate")


@dataclass(eq=False)
class Member:
    """One image of a stack: its observation, its net's input and jitter, its health and its output average."""

    index: int  # the image's place among those the fit was given
    observation: Observation
    z: torch.Tensor
    jitter: torch.Generator  # draws the per-step jitter of z; lives on z's device
    health: Health
    average: torch.Tensor | None = None
    finished: bool = False


def compute_forward(net: torch.nn.Module, z: torch.Tensor, cfg: FitConfig) -> Callable[[torch.Tensor], torch.Tensor]:
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


class Judged(NamedTuple):
    """The steps of one iteration, judged: each member's, or None for a member that diverged there."""

    iteration: int
    steps: list[tuple[Member, Step | None]]
    whole: bool  # the weights have reached this iteration: a state saved now resumes exactly


@dataclass
class _Queued:
    iteration: int
    losses: torch.Tensor  # (K,), not yet read by the host
    xs: list[torch.Tensor]
    averages: list[torch.Tensor | None]
    lr: float


class Stack:
    """The net of the images fitted together, its Adam, the step count, and the guard's last healthy copy.

    Every image in it has taken the same steps with the same learning rate: an image of several leaves at its
    first rollback and goes on alone, so the stack shares Adam's step counter and learning rate, and one copy
    serves every image's guard. A stack of one image rolls back in place.
    """

    def __init__(self, net: torch.nn.Module, members: list[Member], cfg: FitConfig) -> None:
        self.cfg = cfg
        self.iteration = 0  # steps taken; the weights have reached it
        self.departed: list[Stack] = []  # images that left at a rollback, each continuing alone
        self.gone: list[Member] = []  # their members, until the stack is narrowed to those that stay
        self.lr_scale = 1.0  # the guard's halvings, applied on top of a schedule
        self._build(net, members)

    def _build(self, net: torch.nn.Module, members: list[Member]) -> None:
        self.net, self.members = net.train(), members
        self.z = stack_inputs([member.z for member in members])
        fused = {"fused": True} if self.cfg.fused_adam else {}
        self.optimizer = torch.optim.Adam(net.parameters(), lr=self.cfg.lr, **fused)
        # Precision, memory layout and compilation as configured; a smaller stack compiles anew.
        self.forward = compute_forward(net, self.z, self.cfg)
        if self.cfg.channels_last:
            self.z = self.z.contiguous(memory_format=torch.channels_last)
        self.healthy = self._copy()

    def _copy(self) -> tuple[dict, dict]:
        weights = {name: v.detach().clone() for name, v in self.net.state_dict().items()}
        return weights, copy.deepcopy(self.optimizer.state_dict())

    def finish(self, member: Member) -> None:
        """The member takes no further step (its detector fired, or it was stopped)."""
        member.finished = True

    def steps(self) -> Iterator[Judged]:
        """Every iteration's judged steps, in order, up to ``cfg.iterations``; then those of the members that
        left at a rollback, each alone."""
        while self.iteration < self.cfg.iterations:
            staying = [k for k, m in enumerate(self.members) if not m.finished and m not in self.gone]
            if not staying:
                break
            if len(staying) < len(self.members):
                self._narrow(staying)
            count = min(self.cfg.sync_interval(self.z.device.type), self.cfg.iterations - self.iteration)
            yield from self._block(count)
        for solo in self.departed:
            yield from solo.steps()

    def _queue(self, count: int) -> tuple[list[_Queued], dict[int, tuple[dict, dict]]]:
        """Up to ``count`` steps of every member, queued back to back without the host waiting for any of them;
        with the copies of the state taken before the updates the guard asks for."""
        cfg, members = self.cfg, self.members
        _, height, width = members[0].observation.restored_shape
        queued, staged = [], {}
        for _ in range(count):
            iteration = self.iteration = self.iteration + 1
            net_input = self.z
            if cfg.reg_noise_std > 0:
                # Each image's own generator makes the draw its single fit makes at this step; drawn in z's shape
                # whatever the memory layout, so that every variant sees the same noise.
                draws = [
                    torch.randn(m.z.shape, generator=m.jitter, device=self.z.device, dtype=self.z.dtype)
                    for m in members
                ]
                net_input = self.z + cfg.reg_noise_std * stack_inputs(draws)
            if cfg.lr_schedule != "constant":
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * self.lr_scale * cfg.lr_factor(iteration)
            self.optimizer.zero_grad(set_to_none=True)
            output = crop_to(self.forward(net_input), height, width).float()
            xs = [output] if len(members) == 1 else list(unstack_output(output, len(members)))
            xs = [x.contiguous() for x in xs]
            losses = [member.observation.loss(x, cfg.loss) for member, x in zip(members, xs, strict=True)]
            if iteration % cfg.guard_every == 0:
                staged[iteration] = self._copy()  # before the update: the state that gave these losses
            lr = self.optimizer.param_groups[0]["lr"]
            # Net k's weights get image k's gradient alone: the nets share no weight, a sum passes gradients as
            # they are, and a grouped convolution never mixes its groups, so a NaN loss spoils its own net only.
            (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
            self.optimizer.step()
            xs = [x.detach() for x in xs]
            for member, x in zip(members, xs, strict=True):
                if cfg.average is not None:
                    average = member.average
                    member.average = x if average is None else average * cfg.average + x * (1 - cfg.average)
            queued.append(_Queued(iteration, torch.stack(losses).detach(), xs, [m.average for m in members], lr))
        return queued, staged

    def _block(self, count: int) -> Iterator[Judged]:
        """Queues a block of steps, then judges them in order once their losses are read.

        An unhealthy loss drops that member's later steps in the block: a stack of one rolls back and numbers
        its next step as if they had never been queued; a member of several leaves and goes on alone from the
        copy it last judged healthy. The nets share no weight, so neither changes the other members' steps.
        """
        members = list(self.members)
        averages_before = [member.average for member in members]
        queued, staged = self._queue(count)
        values = torch.stack([entry.losses for entry in queued]).tolist()  # the block's one wait for the device
        judging = [member for member in members if not member.finished]
        for position, entry in enumerate(queued):
            steps = []
            for k, member in enumerate(members):
                if member not in judging:
                    continue
                if member.finished:  # by the driver, at an earlier step of this block
                    judging.remove(member)
                    continue
                value = values[position][k]
                if member.health.healthy(entry.iteration, value):
                    member.health.accept(value)
                    steps.append((member, Step(entry.iteration, value, entry.xs[k], entry.averages[k], entry.lr,
                                               member.health.rollbacks)))  # fmt: skip
                    continue
                judging.remove(member)
                member.average = queued[position - 1].averages[k] if position else averages_before[k]
                earlier = [i for i in staged if i < entry.iteration]
                healthy = staged[max(earlier)] if earlier else self.healthy
                try:
                    if len(members) == 1:
                        self._roll_back(member, entry.iteration, healthy)
                        return
                    self._depart(k, entry.iteration, healthy)
                except Diverged:
                    member.finished = True
                    steps.append((member, None))
            if entry.iteration in staged:  # every member still here judged this step, and those before, healthy
                self.healthy = staged[entry.iteration]
            if steps:
                yield Judged(entry.iteration, steps, whole=entry.iteration == self.iteration)

    def _roll_back(self, member: Member, iteration: int, healthy: tuple[dict, dict]) -> None:
        """Back to ``healthy`` with a halved learning rate; the next step is numbered ``iteration + 1``."""
        member.health.count_rollback()
        self.lr_scale /= 2
        lr = self.optimizer.param_groups[0]["lr"] / 2
        weights, optimizer_state = healthy
        self.net.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer_state)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.healthy, self.iteration = healthy, iteration

    def _depart(self, k: int, iteration: int, healthy: tuple[dict, dict]) -> None:
        """Member ``k`` leaves for a stack of its own, rolled back as a single fit's guard rolls back."""
        member, count = self.members[k], len(self.members)
        solo = Stack(unstack(self.net, [k])[0], [member], self.cfg)
        solo.lr_scale = self.lr_scale
        solo._roll_back(member, iteration, tuple(select_state(part, count, [k]) for part in healthy))
        self.departed.append(solo)
        self.gone.append(member)

    def _narrow(self, staying: list[int]) -> None:
        """The stack of the members at ``staying`` alone, each carrying on exactly where it was."""
        count, weight, net = len(self.members), next(self.net.parameters()), self.net
        narrow = StackedSkipNet(net.cfg, net.out_channels, len(staying), device=weight.device, dtype=weight.dtype)
        narrow.load_state_dict(select_state(net.state_dict(), count, staying))
        optimizer_state = select_state(self.optimizer.state_dict(), count, staying)
        healthy = tuple(select_state(part, count, staying) for part in self.healthy)
        self._build(narrow, [self.members[k] for k in staying])
        self.optimizer.load_state_dict(optimizer_state)
        self.healthy, self.gone = healthy, []

    def state_dict(self) -> dict:
        """The whole state of a stack of one: with it a resumed fit continues exactly where it stopped."""
        (member,) = self.members
        weights, optimizer_state = self.healthy
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "guard": {
                "weights": weights,
                "optimizer": optimizer_state,
                "loss_average": member.health.loss_average,
                "rollbacks": member.health.rollbacks,
            },
            "generator": member.jitter.get_state(),
            "average": member.average,
            "iteration": self.iteration,
            "lr_scale": self.lr_scale,
        }

    def load_state_dict(self, state: dict) -> None:
        (member,) = self.members
        device = next(self.net.parameters()).device
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        guard = to_device(state["guard"], device)
        self.healthy = guard["weights"], guard["optimizer"]
        member.health.loss_average, member.health.rollbacks = guard["loss_average"], guard["rollbacks"]
        member.jitter.set_state(state["generator"])
        member.average = None if state["average"] is None else state["average"].to(device)
        self.iteration = state["iteration"]
        self.lr_scale = state.get("lr_scale", 1.0)  # checkpoints from before schedules: never scaled


def to_device(value, device: torch.device):
    """``value`` with every tensor inside it moved to ``device`` (dicts and lists followed)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value
