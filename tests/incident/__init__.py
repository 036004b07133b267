"""Tests of rollout/incident/: reports, their charts, audit words."""
