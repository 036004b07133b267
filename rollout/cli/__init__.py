"""The ``rollout`` command line: commands parse their options, call the library and print
(:mod:`rollout.cli.main`)."""

from __future__ import annotations

from rollout.cli import init as _init  # noqa: F401 - registers `rollout init`
from rollout.cli import schema as _schema  # noqa: F401 - registers `rollout schema`
from rollout.cli.main import cli, main

__all__ = ["cli", "main"]
