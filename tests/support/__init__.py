"""Shared harnesses: the servers and helpers the tests start (moved here by scripts/arrange-tests)."""
