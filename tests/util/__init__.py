"""Tests of rollout/util/: exit codes and statuses, bounded reads."""
