"""What a run will cost, said before it starts: its layout, the memory it needs and has, and the time it should
take, from a few steps timed on this device and multiplied out over every fit's step cap.

The cap is an upper bound: a fit stopped automatically may end sooner. Time a step takes grows with the box's
area; boxes of other sizes than the timed one are scaled by their area.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from .config import Overrides, Task, grown, resolve_preset
from .layout import groups, needed_bytes
from .memory import GiB, available_bytes
from .pipeline import Plan, solve, solve_together
from .split import region_plan

# Above this, a run says at its start what it expects (README "Large photos").
WORTH_SAYING_SECONDS = 180


@dataclass(frozen=True)
class RunEstimate:
    image: tuple[int, int]  # width, height of the input
    output: tuple[int, int]  # of the restored image
    task: str
    preset: str
    device: str
    layout: dict  # Layout.record()
    needed_bytes: int
    free_bytes: int | None
    steps: int  # the cap of each fit
    fits: int
    seconds_per_step: float  # of the largest box (or the stack of boxes fitted at once)
    seconds: float  # every fit to its cap
    faster: tuple[str, ...]

    def line(self) -> str:
        layout = self.layout
        if layout["kind"] == "whole":
            how = "whole"
        else:
            (w, h), noun = layout["sizes"][0], "tiles" if layout["kind"] == "tiles" else "windows"
            how = f"in {layout['count']} {noun} of up to {w}x{h}"
            if layout["at_once"] > 1:
                how += f", {layout['at_once']} at once"
        free = "" if self.free_bytes is None else f" of {self.free_bytes / GiB:.1f} free"
        text = (
            f"{self.output[0]}x{self.output[1]} {self.task} with {self.preset} on {self.device}, {how}: "
            f"{self.needed_bytes / GiB:.1f} GiB{free}; at most {self.steps} steps a fit at "
            f"{self.seconds_per_step:.3g} s a step: about {duration(self.seconds)}"
        )
        return text + (f"; faster: {', '.join(self.faster)}" if self.faster else "")

    def record(self) -> dict:
        return {**dataclasses.asdict(self), "seconds": round(self.seconds, 1), "faster": list(self.faster)}


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(round(minutes), 60)
    return f"{hours} h {minutes:02d} min"


def time_step(plan: Plan, steps: int = 4, warmup: int = 2) -> float:
    """Seconds a step of the plan's largest box takes here (of the boxes fitted at once, together), timed over
    ``steps`` steps after ``warmup`` (allocation and the first kernels' set-up)."""
    layout = plan.layout
    largest = max(range(len(layout.boxes)), key=lambda index: layout.boxes[index].area)
    short = Overrides(iterations=warmup + steps, stop="off").apply(plan.preset)
    parts = [dataclasses.replace(region_plan(plan, layout.boxes[largest]), preset=short)] * layout.at_once
    stamps: list[float] = []

    def stamp(*_) -> None:
        stamps.append(time.perf_counter())

    if len(parts) == 1:
        solve(parts[0], observe=stamp)
    else:
        solve_together(parts, observe=lambda k, step: stamp() if k == 0 else None)
    return (stamps[-1] - stamps[warmup - 1]) / steps


def estimate_run(plan: Plan, seconds_per_step: float | None = None) -> RunEstimate:
    """The run's estimate; ``seconds_per_step`` of its largest box when already known (timed here otherwise)."""
    layout, operator = plan.layout, plan.observation.operator
    restored = plan.observation.restored_shape
    if seconds_per_step is None:
        seconds_per_step = time_step(plan)
    largest = max(box.area for box in layout.boxes)
    cap = plan.preset.fit.iterations
    every = list(range(len(layout.boxes)))
    seconds = sum(cap * seconds_per_step * layout.boxes[g[0]].area / largest for g in groups(layout, every))
    return RunEstimate(
        image=plan.picture.size,
        output=(restored[2], restored[1]),
        task=plan.task.value,
        preset=plan.preset.name,
        device=str(plan.device),
        layout=layout.record(operator.factor),
        needed_bytes=needed_bytes(layout, plan.preset, plan.device.type, restored, operator.factor),
        free_bytes=available_bytes(plan.device),
        steps=cap,
        fits=len(layout.boxes),
        seconds_per_step=seconds_per_step,
        seconds=seconds,
        faster=tuple(faster_choices(plan)),
    )


def faster_choices(plan: Plan) -> list[str]:
    """What would make this run sooner, in words a user can act on."""
    choices = []
    _, height, width = plan.observation.restored_shape
    if plan.device.type == "cpu":
        choices.append("a GPU")
    fast = resolve_preset("fast", plan.task, plan.device.type)
    if plan.preset.name != fast.name:
        choices.append(f"--preset fast ({grown(fast, height, width).stop.cap} steps at most)")
    choices.append("fewer steps (--iters N)")
    if not plan.layout.split and plan.device.type == "cpu" and plan.preset.net == fast.net:
        if height * width > 2 * 256**2:
            choices.append("--tile 256 (the light net's fastest size per pixel on a CPU)")
    if plan.task is not Task.inpaint or not plan.layout.split:
        choices.append("a smaller image (half the size: about a quarter of the time)")
    return choices
