"""Tests of rollout/cli/: the commands as people and CI run them."""
