"""rollout: a risky feature launch as code.

The package holds the rollout engine (playbooks, gates, ramps, the kill switch) and, as its
embedded target, a booking-notification service with a local sandbox of its message provider
(:mod:`rollout.booking`, seen from the tool through :mod:`rollout.targets.embedded`).
"""

__version__ = "0.1.0"
