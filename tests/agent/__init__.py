"""Tests of rollout/agent/: the always-on agent, its deployment files and its verdict API."""
