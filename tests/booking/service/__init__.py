"""Tests of rollout/booking/service/: the booking service (API, sending, durability, settings, PostgreSQL)."""
