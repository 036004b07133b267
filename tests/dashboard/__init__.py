"""Tests of rollout/dashboard/: pages in a browser, pushed updates, its /metrics."""
