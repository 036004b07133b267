"""Tests of rollout/booking/: the product's cohort and phone rules."""
