"""Tests of rollout/demo/: the demo's shipped files, from a wheel."""
