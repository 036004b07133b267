"""The ``rollout`` command line: commands parse their options, call the library and print
(:mod:`rollout.cli.main`)."""

from __future__ import annotations

# each module below adds its commands to `cli`
from rollout.cli import (
    agent,  # noqa: F401
    backtest,  # noqa: F401 - registers `rollout backtest`
)
from rollout.cli.main import cli, main

__all__ = ["cli", "main"]
