"""The ``rollout`` command line: commands parse their options, call the library and print
(:mod:`rollout.cli.main`)."""

from __future__ import annotations

# each module below adds its commands to `cli`
from rollout.cli import agent, backtest, drill, init, schema, serve  # noqa: F401
from rollout.cli.main import cli, main

__all__ = ["cli", "main"]
