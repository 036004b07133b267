"""Tests of rollout/engine/: ramps, the kill path, state, drills, backtests, waves, windows, operator verbs."""
