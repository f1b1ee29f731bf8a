"""The terminal side of a run: progress bars on stderr, Ctrl-C and SIGTERM, and the table of failed images."""

from __future__ import annotations

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Bars:
    """Rich progress bars on stderr, fed by the fit's observer hook; silent when stderr is not a terminal."""

    def __init__(self, *columns: str, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn(columns[0]),
            BarColumn(),
            MofNCompleteColumn(),
            *(TextColumn(column) for column in columns[1:]),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


class FitProgress(_Bars):
    """One bar for one fit, with the loss and the speed."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__("[bold]fitting", "loss {task.fields[loss]}", "{task.fields[rate]} it/s", enabled=enabled)
        self.task = self.progress.add_task("fit", total=total, loss="-", rate="-")

    def __call__(self, step) -> None:
        speed = self.progress.tasks[0].speed
        self.progress.update(
            self.task,
            completed=step.iteration,
            loss=f"{step.loss:.2e}",
            rate=f"{speed:.1f}" if speed else "-",
        )


class FolderProgress(_Bars):
    """Two bars: images of the folder (with ETA) and steps of the current image."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__("[bold]{task.description}", enabled=enabled)
        self.folder = self.progress.add_task("folder", total=total)
        self.image = self.progress.add_task("image", total=1, visible=False)

    def start_image(self, name: str, steps: int) -> None:
        self.progress.reset(self.image, total=steps, description=name[-40:], visible=True)

    def __call__(self, step) -> None:
        self.progress.update(self.image, completed=step.iteration)

    def finish_image(self) -> None:
        self.progress.advance(self.folder)


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
