"""Tests of rollout/gates/forecast/: the forecasts, and `rollout plan` showing them."""
