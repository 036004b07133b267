"""Human output with rich: step headers, check marks, verdict lines, progress bars.

Under ``--json`` a :class:`QuietReporter` is used instead and only the final JSON is printed.
Everything printed goes through the environment's redactor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status

from rollout.gates import FAIL, PASS, Verdict
from rollout.util.redact import Redactor

_STYLE = {PASS: "green", FAIL: "bold red"}


def make_console(stderr: bool = False) -> Console:
    """A console for people; piped output gets wide lines instead of squeezed tables."""
    console = Console(highlight=False, soft_wrap=True, stderr=stderr)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=200, stderr=stderr)
    return console


class ConsoleReporter:
    """Prints what the engine does for a person."""

    def __init__(self, console: Console | None = None, redactor: Redactor | None = None) -> None:
        self.console = console or make_console()
        self.redactor = redactor or Redactor()
        self._status: Status | None = None

    def waiting(self, text: str) -> None:
        """A live line while the engine waits (a hold, a breaker reset): replaced in place, gone when
        the wait ends. Only on a terminal: piped output and logs get the verdict lines alone."""
        if not self.console.is_terminal:
            return
        shown = self.redactor.text(text)
        if self._status is None:
            self._status = self.console.status(shown, spinner="dots")
            self._status.start()
        else:
            self._status.update(shown)

    def done_waiting(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _print(self, text: str, style: str = "") -> None:
        self.console.print(self.redactor.text(text), style=style or None, markup=False)

    def step(self, index: int, total: int, label: str, kind: str) -> None:
        self.console.print(f"[bold]step {index + 1}/{total}[/bold] [cyan]{kind}[/cyan] {self.redactor.text(label)}")

    def line(self, text: str, style: str = "") -> None:
        self._print(text, style)

    def check(self, name: str, ok: bool, detail: str) -> None:
        mark = "[green]✓[/green]" if ok else "[bold red]✗[/bold red]"
        self.console.print(f"  {mark} ", end="")
        self._print(f"{name}: {detail}")

    def verdict(self, label: str, verdict: Verdict) -> None:
        style = _STYLE.get(verdict.verdict, "yellow")
        self.console.print(f"  [{style}]{verdict.verdict.upper()}[/{style}] ", end="")
        self._print(f"{label}: {verdict.summary}")

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=not self.console.is_terminal) as bar:
            task = bar.add_task(self.redactor.text(description), total=total)
            yield lambda n: bar.advance(task, n)


class QuietReporter:
    """Says nothing; for --json."""

    redactor = Redactor()

    def step(self, *args: Any) -> None: ...
    def line(self, *args: Any) -> None: ...
    def waiting(self, *args: Any) -> None: ...
    def done_waiting(self) -> None: ...
    def check(self, *args: Any) -> None: ...
    def verdict(self, *args: Any) -> None: ...

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        yield lambda n: None
