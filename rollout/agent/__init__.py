"""The always-on agent: it drives, guards and bakes the environments of the projects it serves,
with failover and fencing through the state store (:mod:`rollout.agent.controller`)."""
