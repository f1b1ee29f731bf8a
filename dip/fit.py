"""The fit: one image or several fitted from a seed each, the step loop of ``dip.steps`` driven with plain hooks.

Stopping rules and observers (progress, snapshots) look at the Steps; none of them changes the optimisation.
``fit`` fits one image (with checkpoints and resume), ``fit_parallel`` several of one size at once on a device;
both run the same loop and the same per-step bookkeeping, so image k of a parallel fit is its single fit.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .config import FitConfig, NetConfig
from .errors import InputError, UsageError
from .nets import build_net, make_input
from .operators import Observation
from .parallel import stack_nets
from .steps import Diverged, Health, Member, Stack, Step, to_device
from .stopping import Detector

__all__ = ["Diverged", "FitResult", "Step", "fit", "fit_parallel", "iterate"]


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


@dataclass(eq=False)
class _Track:
    """What a fit keeps about one image's steps: its detector and observer see each, and it says what it returns."""

    detector: Detector | None
    observe: Callable[[Step], None] | None
    last: Step | None = None
    losses: list[float] = field(default_factory=list)
    statistics: list[float] = field(default_factory=list)
    result: FitResult | None = None

    def record(self, step: Step) -> bool:
        """Feeds the step to the detector and the observer; True when the detector fires."""
        self.last = step
        self.losses.append(step.loss)
        fired = self.detector is not None and self.detector.update(step)
        if self.detector is not None:
            self.statistics.append(self.detector.statistic)
        if self.observe is not None:
            seen = step if self.detector is None else dataclasses.replace(step, statistic=self.detector.statistic)
            self.observe(seen)
        return fired

    def end(self, cfg: FitConfig, reason: str, seconds: float) -> None:
        """The detector's pick (the output average at it, when the fit averages), or the last step when there is
        no detector or it picked nothing."""
        detector, last = self.detector, self.last
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
        self.result = FitResult(
            image=image.float().cpu(),
            returned=returned,
            best_iteration=best_iteration,
            iterations=last.iteration,
            stop_reason=reason,
            rollbacks=last.rollbacks,
            seconds=seconds,
            final_loss=last.loss,
            losses=list(self.losses),
            statistics=list(self.statistics),
            loss_floor=None if detector is None else detector.loss_floor,
        )


class _Checkpoints:
    """Saves the whole state of a one-image fit every ``every`` steps, and once more when it is interrupted."""

    def __init__(self, save: Callable[[dict], None], every: int, stack: Stack, track: _Track) -> None:
        self.save, self.every, self.stack, self.track = save, every, stack, track
        self.due = (stack.iteration // every + 1) * every if every else 0

    def state(self, seconds: float) -> dict:
        track = self.track
        state = {
            "session": self.stack.state_dict(),
            "detector": None if track.detector is None else track.detector.state_dict(),
            "losses": track.losses,
            "statistics": track.statistics,
            "seconds": seconds,
            "last": None if track.last is None else dataclasses.asdict(track.last),
        }
        return to_device(state, torch.device("cpu"))

    def periodic(self, iteration: int, seconds: float) -> None:
        if self.every and iteration >= self.due:
            self.save(self.state(seconds))
            self.due = (iteration // self.every + 1) * self.every


def _drive(
    stack: Stack,
    tracks: list[_Track],
    cfg: FitConfig,
    *,
    stop: Callable[[Step], bool] | None = None,
    interrupt: threading.Event | None = None,
    checkpoints: _Checkpoints | None = None,
    earlier_seconds: float = 0.0,
) -> list[FitResult]:
    """Runs the stack's steps through each image's track until every image has ended; one result per image.

    An image ends when its detector fires, ``stop(step)`` says so, its loss diverged, or it reaches the cap.
    ``interrupt`` (checked where the weights and the steps seen agree, so that a saved state is whole) and Ctrl-C
    end every image still running, each with its best image so far.
    """
    started = time.perf_counter()

    def elapsed() -> float:
        return earlier_seconds + time.perf_counter() - started

    interrupted = False
    try:
        for judged in stack.steps():
            for member, step in judged.steps:
                _take(stack, member, step, tracks[member.index], cfg, stop, elapsed)
            # The weights may be a few queued steps ahead of the steps seen here (FitConfig.sync_every): a state is
            # saved, and an interrupt honoured, only where the two agree, so that a resumed fit is exact.
            if judged.whole and any(track.result is None for track in tracks):
                if interrupt is not None and interrupt.is_set():
                    interrupted = True
                    if checkpoints is not None:
                        checkpoints.save(checkpoints.state(elapsed()))
                    break
                if checkpoints is not None:
                    checkpoints.periodic(judged.iteration, elapsed())
            for member, step in judged.steps:  # an image at the cap ends now, not when the images alone end
                track = tracks[member.index]
                if step is not None and step.iteration == cfg.iterations and track.result is None:
                    stack.finish(member)
                    track.end(cfg, "cap", elapsed())
    except KeyboardInterrupt:
        if any(track.result is None and track.last is None for track in tracks):
            raise
        interrupted = True
    for track in tracks:
        if track.result is None:
            if track.last is None:  # resumed from a state that had already reached the cap
                raise RuntimeError("nothing to resume: the saved fit had taken no step")
            track.end(cfg, "interrupted" if interrupted else "cap", elapsed())
    return [track.result for track in tracks]


def _take(stack: Stack, member: Member, step: Step | None, track: _Track, cfg: FitConfig, stop, elapsed) -> None:
    """One image's step: its track records it, and the image ends if it diverged, its detector fired or ``stop``
    says so."""
    if step is None:
        if track.last is None:
            rollbacks = member.health.rollbacks
            raise Diverged(f"the loss diverged {rollbacks} times despite halving the learning rate")
        track.end(cfg, "diverged", elapsed())
        return
    reason = track.detector.reason if track.record(step) else None
    if reason is None and stop is not None and stop(step):
        reason = "stopped"
    if reason is not None:
        stack.finish(member)
        track.end(cfg, reason, elapsed())


def _stack_of(
    observations: Sequence[Observation], net_cfg: NetConfig, cfg: FitConfig, seeds: Sequence[int], device
) -> Stack:
    """The stack of these images, each net, input and jitter drawn from its seed exactly as a single fit draws it."""
    channels, height, width = observations[0].restored_shape
    out_channels = net_cfg.out_channels or channels
    nets = [build_net(net_cfg, out_channels, seed=seed) for seed in seeds]
    net = nets[0].to(device) if len(nets) == 1 else stack_nets(nets).to(device)
    members = [
        Member(
            index=k,
            observation=observation.to(device),
            z=make_input(net_cfg, height, width, generator=torch.Generator().manual_seed(seed)).to(device),
            jitter=torch.Generator(device=device).manual_seed(seed + 1),
            health=Health(cfg),
        )
        for k, (observation, seed) in enumerate(zip(observations, seeds, strict=True))
    ]
    return Stack(net, members, cfg)


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
    stack = _stack_of([observation], net_cfg, fit_cfg, [seed], device)
    track = _Track(detector, observe)
    earlier_seconds = 0.0
    if resume is not None:
        stack.load_state_dict(resume["session"])
        if detector is not None:
            detector.load_state_dict(to_device(resume["detector"], device))
        track.losses, track.statistics = list(resume["losses"]), list(resume["statistics"])
        earlier_seconds = resume["seconds"]
        if resume.get("last") is not None:
            track.last = Step(**to_device(resume["last"], device))
    checkpoints = None if save_checkpoint is None else _Checkpoints(save_checkpoint, checkpoint_every, stack, track)
    [result] = _drive(stack, [track], fit_cfg, stop=stop, interrupt=interrupt, checkpoints=checkpoints,
                      earlier_seconds=earlier_seconds)  # fmt: skip
    return result


def fit_parallel(
    observations: Sequence[Observation],
    net_cfg: NetConfig,
    fit_cfg: FitConfig,
    *,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    detectors: Sequence[Detector | None] | None = None,
    observe: Callable[[int, Step], None] | None = None,
    interrupt: threading.Event | None = None,
) -> list[FitResult]:
    """Fits one net per image, all at once on ``device``; returns one result per image, in the order given.

    Image k's result is what ``fit(observations[k], net_cfg, fit_cfg, seed=seeds[k], detector=detectors[k])``
    returns, up to rounding (grouped convolutions sum in another order): its net, z and per-step jitter are drawn
    as that fit draws them, its loss and so its gradient are its own, and Adam works elementwise.

    An image whose detector fires is finished and leaves the stack, so that the others run faster. An image whose
    loss blows up leaves it too and is finished alone afterwards, from its own last healthy state with a halved
    learning rate, as its single fit's guard does it; the other images are not rolled back. ``observe(k, step)``
    sees every step of image k. ``interrupt`` or Ctrl-C ends every unfinished image with its best image so far.
    ``seconds`` in a result is the time from the start of the whole run to that image's end.
    """
    count = len(observations)
    detectors = [None] * count if detectors is None else list(detectors)
    if count == 0 or len(seeds) != count or len(detectors) != count:
        raise UsageError(
            f"fit_parallel needs one seed and one detector (or None) per image, but got {count} images, "
            f"{len(seeds)} seeds and {len(detectors)} detectors"
        )
    shapes = sorted({(tuple(o.y.shape[-3:]), o.restored_shape) for o in observations})
    if len(shapes) > 1:
        sizes = ", ".join(f"{w}x{h} with {c} channels" for (c, h, w), _ in shapes)
        raise InputError(f"images fitted together must have one size and channel count, but these have {sizes}")
    stack = _stack_of(observations, net_cfg, fit_cfg, seeds, torch.device(device))

    def observer(k: int) -> Callable[[Step], None] | None:
        return None if observe is None else (lambda step: observe(k, step))

    tracks = [_Track(detector, observer(k)) for k, detector in enumerate(detectors)]
    return _drive(stack, tracks, fit_cfg, interrupt=interrupt)


def iterate(
    observation: Observation, net: torch.nn.Module, z: torch.Tensor, cfg: FitConfig, *, generator: torch.Generator
) -> Iterator[Step]:
    """Fits ``net`` so that ``A(net(z))`` matches the observation; yields after every step, up to ``cfg.iterations``.

    ``generator`` draws the per-step jitter of ``z`` and must live on ``z``'s device. The loop of :func:`fit`,
    without a detector, checkpoints or a result: for benchmarks that watch every step themselves.
    """
    stack = Stack(net, [Member(0, observation, z, generator, Health(cfg))], cfg)
    for judged in stack.steps():
        [(_, step)] = judged.steps
        if step is None:
            raise Diverged(f"the loss diverged {cfg.max_rollbacks + 1} times despite halving the learning rate")
        yield step
