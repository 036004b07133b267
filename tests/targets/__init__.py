"""Tests of rollout/targets/ and rollout/providers/: any service as a target, the embedded one's folder, metric providers."""
