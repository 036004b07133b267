"""Tests of rollout/flags/: the flag backends (Unleash, PostgreSQL fleet, HTTP, command) and their trust."""
