"""The whole plan on one machine (``rollout demo``): the sandbox and a service per environment on free
ports (:mod:`rollout.demo.stack`), simulated customers, dev -> staging -> production."""

from __future__ import annotations

from rollout.demo.run import DEMO_TIMINGS, Breach, Traffic, copy_shipped, make_git_repo, run_demo

__all__ = ["DEMO_TIMINGS", "Breach", "Traffic", "copy_shipped", "make_git_repo", "run_demo"]
