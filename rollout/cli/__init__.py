"""The ``rollout`` command line: commands parse their options, call the library and print
(:mod:`rollout.cli.main`)."""

from __future__ import annotations

from rollout.cli import drill  # noqa: F401 - registers `rollout drill`
from rollout.cli.main import cli, main

__all__ = ["cli", "main"]
