"""Tests of rollout/gates/: verdicts, judges (compare, rank, latency), metric roles, health actions, alerts."""
