"""The terminal side of a run: progress bars on stderr, Ctrl-C and SIGTERM, and the table of failed images."""

from __future__ import annotations

import math

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Bars:
    """Rich progress bars on stderr, fed by the fit's observer hook. When stderr is not a terminal (a log file,
    nohup, a scheduler) there is no bar; ``lines`` is then set, and the subclasses write plain lines instead."""

    def __init__(self, *columns: str, enabled: bool, remaining: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn(columns[0]),
            BarColumn(),
            MofNCompleteColumn(),
            *(TextColumn(column) for column in columns[1:]),
            *([TimeRemainingColumn()] if remaining else []),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )
        self.lines = enabled and not console.is_terminal

    def say(self, line: str) -> None:
        self.progress.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


class FitProgress(_Bars):
    """One bar for one fit, with the loss and the speed; for an image fitted in tiles or windows, one bar over
    every fit's steps, with the box being fitted and the time left for the whole image.

    ``on_rate(seconds, area)`` is called once, when the first fit's seconds a step are known (after its warm-up),
    with the area of the box that fit draws: what the run's estimate is made from. Where stderr is not a terminal
    the same facts go out as plain lines (see ``_line``).
    """

    WARMUP, TIMED = 3, 7  # steps: the first ones set up kernels and memory and are not what the rest cost
    LINE_EVERY_SECONDS = 30  # in a log, a line at least this often, and at every tenth of the steps

    def __init__(self, steps: int, enabled: bool, *, areas=(1,), at_once: int = 1, noun: str = "", on_rate=None):
        """``areas``: of the boxes in the order they are fitted, ``at_once`` of one size at a time."""
        fits = len(areas)
        super().__init__(
            "[bold]{task.description}", "loss {task.fields[loss]}", "{task.fields[rate]}",
            enabled=enabled, remaining=fits == 1,
        )  # fmt: skip
        self.steps, self.areas, self.at_once, self.noun, self.on_rate = steps, list(areas), at_once, noun, on_rate
        self.task = self.progress.add_task("fitting", total=steps * fits, loss="-", rate="-")
        self.done = 0  # boxes whose fits have ended
        self.work_done = self.seconds_done = 0.0  # pixels x steps of those fits, and the seconds they took
        self.fit_started: float | None = None
        self.iteration = 0
        self.stamps: list[float] = []
        self.every = max(1, steps // 10)
        self.last_line = float("-inf")  # the first step gets a line: the fit has started

    def start_region(self, done: int, total: int, box) -> None:
        import time

        now = time.perf_counter()
        if self.fit_started is not None:
            self.work_done += self._group_area() * self.iteration
            self.seconds_done += now - self.fit_started
        self.fit_started, self.done, self.iteration = now, done, 0
        self.progress.update(self.task, description=f"{self.noun} {done + 1}/{total}", completed=done * self.steps)

    def _group_area(self) -> int:
        return sum(self.areas[self.done : self.done + self.at_once])

    def __call__(self, step) -> None:
        import time

        now = time.perf_counter()
        if self.fit_started is None:
            self.fit_started = now
        if len(self.stamps) <= self.WARMUP + self.TIMED:
            self.stamps.append(now)
            if len(self.stamps) == self.WARMUP + self.TIMED + 1 and self.on_rate is not None:
                self.on_rate((self.stamps[-1] - self.stamps[self.WARMUP]) / self.TIMED, self.areas[self.done])
        self.iteration = step.iteration
        speed = self.progress.tasks[0].speed
        rate = f"{speed:.1f} it/s" if speed else "- it/s"
        if len(self.areas) > 1:
            rate += f" · {self._left(now)} left"
        self.progress.update(self.task, completed=self.done * self.steps + step.iteration, loss=f"{step.loss:.2e}",
                             rate=rate)  # fmt: skip
        if self.lines and (step.iteration % self.every == 0 or now - self.last_line >= self.LINE_EVERY_SECONDS):
            self.last_line = now
            self.say(self._line(now, step))

    def _line(self, now: float, step) -> str:
        """``step 300/2000  loss 1.234e-03  statistic 5.67e-05  2.5 it/s  left 11 min``: one line of a log."""
        from ..estimates import duration

        seconds = now - self.fit_started
        parts = [f"step {step.iteration}/{self.steps}", f"loss {step.loss:.3e}"]
        if step.statistic is not None and math.isfinite(step.statistic):
            parts.append(f"statistic {step.statistic:.3e}")
        if seconds > 0:
            parts.append(f"{step.iteration / seconds:.2f} it/s")
        if len(self.areas) > 1:
            parts.insert(0, f"{self.noun} {self.done + 1}/{len(self.areas)}")
            parts.append(f"image left {self._left(now)}")
        elif seconds > 0:
            # to the cap: automatic stopping may end sooner
            parts.append(f"left {duration(seconds / step.iteration * (self.steps - step.iteration))} at most")
        return "  ".join(parts)

    def _left(self, now: float) -> str:
        """Time left for the image: the remaining fits to their caps at the speed per pixel and step so far."""
        from ..estimates import duration

        current = self._group_area()
        work = self.work_done + current * self.iteration
        seconds = self.seconds_done + now - self.fit_started
        if work <= 0 or seconds <= 0:
            return "-"
        remaining = current * (self.steps - self.iteration) + self.steps * sum(self.areas[self.done + self.at_once :])
        return duration(seconds / work * remaining)


class FolderProgress(_Bars):
    """Two bars: images of the folder (with ETA) and steps of the current image."""

    def __init__(self, total: int, enabled: bool) -> None:
        import time

        super().__init__("[bold]{task.description}", enabled=enabled)
        self.folder = self.progress.add_task("folder", total=total)
        self.image = self.progress.add_task("image", total=1, visible=False)
        self.total, self.done, self.name, self.started = total, 0, "", time.perf_counter()

    def start_image(self, name: str, steps: int) -> None:
        self.name = name
        self.progress.reset(self.image, total=steps, description=name[-40:], visible=True)

    def __call__(self, step) -> None:
        self.progress.update(self.image, completed=step.iteration)

    def finish_image(self, status: str = "done", name: str | None = None) -> None:
        """In a log: ``image 3/10 done: scans/a.png  4 min so far, 9 min left`` (or skipped, failed)."""
        import time

        from ..estimates import duration

        self.progress.advance(self.folder)
        self.done += 1
        if self.lines:
            seconds = time.perf_counter() - self.started
            left = seconds / self.done * (self.total - self.done)
            timing = f"{duration(seconds)} so far, {duration(left)} left"
            self.say(f"image {self.done}/{self.total} {status}: {name or self.name}  {timing}")


class Signals:
    """SIGINT (Ctrl-C) or SIGTERM ends the fit after the current step, so that the best image so far is written
    whole (and a checkpoint saved); the command then exits 130 or 143. A second Ctrl-C stops at once."""

    def __enter__(self) -> Signals:
        import signal
        import threading

        self.event, self.code = threading.Event(), None
        self._codes = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}
        self._previous = {}
        if threading.current_thread() is threading.main_thread():  # Python only delivers signals there
            for number in self._codes:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.code = self._codes[number]
        self.event.set()

    def __exit__(self, *exc) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)


def failure_table(failures: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(failures)} image(s) failed", title_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("error", overflow="fold")
    for record in failures:
        table.add_row(record["input"], record.get("error", ""))
    Console(stderr=True).print(table)
