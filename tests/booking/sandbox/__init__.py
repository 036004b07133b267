"""Tests of rollout/booking/sandbox/: the wpbox sandbox."""
