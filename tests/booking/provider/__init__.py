"""Tests of rollout/booking/provider/: the provider client, its answers' outcomes, the breaker."""
